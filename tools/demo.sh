#!/usr/bin/env bash
# avgen's main job, from a fresh clone: set up .venv, then generate a clip with synchronized sound from the shipped
# model (assets/default). Usage: tools/demo.sh ["a prompt"]   (any avgen-generate key=value may follow the prompt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/_setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PROMPT="${1:-a small red circle bounces off the walls with wooden knocks}"
shift || true
if [ ! -f assets/default/dit/model.safetensors ]; then
  echo "[demo] no trained joint model in assets/default/dit: rendering one avworld clip instead" >&2
  .venv/bin/python tools/render_avworld.py --out outputs/avworld_demo.mp4
  exit 0
fi
start=$(date +%s%N)
.venv/bin/avgen-generate prompt="$PROMPT" out=outputs/demo.mp4 "$@"
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
printf '[demo] outputs/demo.mp4 in %d.%01d s wall (python start, model load, sampling, decoding, mp4)\n' \
  $((ms / 1000)) $((ms % 1000 / 100))
