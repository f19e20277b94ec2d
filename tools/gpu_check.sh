#!/usr/bin/env bash
# The GPU paths, end to end, whenever a CUDA machine is at hand: both tiny AEs for a few steps, cache latents, train
# the tiny DiT a few hundred steps on CUDA with bf16 autocast (single process, then 2-rank NCCL DDP if there are 2+
# GPUs), sample from the export on CUDA, and check that the loss fell and the mp4 has both streams. The scale-out
# paths too: data-loader workers feeding CUDA, the latent cache encoded by 2 ranks (same shards as one process), and
# with 2+ GPUs AE DDP and FSDP2 with the sharded EMA.
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
AES=(--video-ae assets/default/video_ae --audio-ae assets/default/audio_ae)
NGPU="$($PY -c 'import torch; print(torch.cuda.device_count())')"
$PY tools/cache_latents.py "${AES[@]}" --out "$WORK/latents" --count 512 --device cuda
# distributed caching: 2 ranks (one GPU each, or both on the CPU with one GPU) write the shards of one process
DEV=cpu; [ "$NGPU" -ge 2 ] && DEV=cuda
$PY tools/cache_latents.py "${AES[@]}" --out "$WORK/lat1" --count 96 --shard-size 32 --device "$DEV"
.venv/bin/torchrun --standalone --nproc_per_node 2 tools/cache_latents.py "${AES[@]}" --out "$WORK/lat2" \
  --count 96 --shard-size 32 --device "$DEV"
$PY - "$WORK" "$DEV" <<'PY'
import json, sys
from pathlib import Path
from safetensors import safe_open
work, dev = Path(sys.argv[1]), sys.argv[2]
tol = 0.0 if dev == "cpu" else 1e-4  # two GPUs may pick other convolution algorithms
for a in sorted((work / "lat1").glob("shard_*.safetensors")):
    b = work / "lat2" / a.name
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        ma, mb = fa.metadata(), fb.metadata()
        assert {k: json.loads(v) if k in ("captions", "meta") else v for k, v in ma.items()} == \
            {k: json.loads(v) if k in ("captions", "meta") else v for k, v in mb.items()}, a.name
        for key in ("video", "audio"):
            d = float((fa.get_tensor(key) - fb.get_tensor(key)).abs().max())
            assert d <= tol, f"{a.name} {key}: max |diff| {d}"
print(f"[gpu_check] 2-rank cache ({dev}) equals the one-process cache")
PY
# the AE trainer's CUDA path (bf16 autocast from the one helper): a few steps of each tiny preset
for ae in video_tiny audio_tiny; do
  .venv/bin/avgen-train-ae ae="$ae" debug=ae_cpu trainer.device=cuda trainer.steps=20 trainer.workers=1 \
    out_dir="$WORK/ae_$ae"
  if [ "$NGPU" -ge 2 ]; then  # AE DDP over 2 GPUs
    .venv/bin/torchrun --standalone --nproc_per_node 2 -m avgen.cli.train_ae ae="$ae" debug=ae_cpu \
      trainer.device=cuda trainer.steps=20 trainer.batch_size=4 out_dir="$WORK/ae_ddp_$ae"
  fi
done
start=$(date +%s)
.venv/bin/avgen-train latents="$WORK/latents" out_dir="$WORK/run" trainer.device=cuda trainer.steps="$STEPS" \
  trainer.warmup=50 trainer.ckpt_every=100 trainer.log_every=10 trainer.val_every="$STEPS" trainer.progress=false \
  trainer.workers=2
echo "[gpu_check] single-GPU training: $(( $(date +%s) - start )) s for $STEPS steps"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  .venv/bin/torchrun --standalone --nproc_per_node 2 -m avgen.cli.train latents="$WORK/latents" \
    out_dir="$WORK/ddp" trainer.device=cuda trainer.steps=50 trainer.warmup=10 trainer.progress=false
  # FSDP2 with the sharded EMA (validation and export gather it), then a resume from its sharded checkpoint
  for steps in 30 40; do
    .venv/bin/torchrun --standalone --nproc_per_node 2 -m avgen.cli.train latents="$WORK/latents" \
      out_dir="$WORK/fsdp" trainer.device=cuda trainer.fsdp=true trainer.steps=$steps trainer.warmup=10 \
      trainer.ckpt_every=10 trainer.val_every=20 trainer.progress=false
  done
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
