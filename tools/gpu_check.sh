#!/usr/bin/env bash
# The GPU paths, end to end, whenever a CUDA machine is at hand: both tiny AEs for a few steps, cache latents, train
# the tiny DiT a few hundred steps on CUDA with bf16 autocast (single process, then 2-rank NCCL DDP if there are 2+
# GPUs), sample from the export on CUDA, and check that the loss fell and the mp4 has both streams.
# Usage: tools/gpu_check.sh [steps]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/_setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
STEPS="${1:-300}"
WORK="${AVGEN_GPU_CHECK_DIR:-$(mktemp -d)}"
PY=.venv/bin/python
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
$PY -c "import torch; print('[gpu_check]', torch.cuda.get_device_name(0), 'bf16:', torch.cuda.is_bf16_supported())"
$PY tools/cache_latents.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae \
  --out "$WORK/latents" --count 512
# the AE trainer's CUDA path (bf16 autocast from the one helper): a few steps of each tiny preset
for ae in video_tiny audio_tiny; do
  .venv/bin/avgen-train-ae ae="$ae" debug=ae_cpu trainer.device=cuda trainer.steps=20 out_dir="$WORK/ae_$ae"
done
start=$(date +%s)
.venv/bin/avgen-train latents="$WORK/latents" out_dir="$WORK/run" trainer.device=cuda trainer.steps="$STEPS" \
  trainer.warmup=50 trainer.ckpt_every=100 trainer.log_every=10 trainer.val_every="$STEPS" trainer.progress=false
echo "[gpu_check] single-GPU training: $(( $(date +%s) - start )) s for $STEPS steps"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  .venv/bin/torchrun --standalone --nproc_per_node 2 -m avgen.cli.train latents="$WORK/latents" \
    out_dir="$WORK/ddp" trainer.device=cuda trainer.steps=50 trainer.warmup=10 trainer.progress=false
fi
.venv/bin/avgen-generate model="$WORK/run/export" device=cuda prompt="a small red circle bounces around" \
  out="$WORK/sample.mp4"
$PY - "$WORK" <<'PY'
import json, sys
from pathlib import Path
from avgen.media import read_clip
work = Path(sys.argv[1])
losses = [json.loads(x)["loss"] for x in (work / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
clip = read_clip(work / "sample.mp4")
print(f"[gpu_check] loss {losses[0]:.3f} -> {losses[-1]:.3f}; sample {tuple(clip.video.shape)} / {tuple(clip.audio.shape)}")
assert losses[-1] < 0.8 * losses[0], "the loss did not fall by 20 %"
assert clip.video.shape[0] > 0 and clip.audio.shape[1] > 0
print("[gpu_check] OK")
PY
