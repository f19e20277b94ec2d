#!/usr/bin/env bash
# avgen's main job, from a fresh clone: set up .venv, then generate a clip with synchronized sound.
# Usage: tools/demo.sh ["a prompt"]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/_setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PROMPT="${1:-a small red circle bounces off the walls with wooden knocks}"
mkdir -p outputs
if [ -f assets/default/dit/model.safetensors ]; then
  .venv/bin/avgen-generate prompt="$PROMPT" out=outputs/demo.mp4
else
  echo "[demo] Generation is not there yet: no trained joint model ships in assets/default/dit."
  echo "[demo] Rendering one clip of the procedural audio-visual world (avworld) instead."
  .venv/bin/python tools/render_avworld.py --out outputs/avworld_demo.mp4
fi
