#!/usr/bin/env bash
# Run avgen's checks: set up .venv when missing, then ruff (lint + format) and pytest.
# Usage: tools/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
export AVGEN_LOCK="${AVGEN_LOCK:-dev-app}"  # locks/dev-app.txt: dev tools, Gradio + Playwright (tests/test_app.py), diffusers
bash tools/_setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[test] lock"
.venv/bin/python tools/lock.py --check
echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] pytest"
.venv/bin/python -m pytest -q "$@"
echo "[test] done in $(( $(date +%s) - start )) s"
