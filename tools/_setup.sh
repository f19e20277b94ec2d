#!/usr/bin/env bash
# Shared set-up for tools/test.sh and tools/demo.sh: system packages (when root), .venv, the package itself.
# Idempotent: a second run does nothing but check a stamp.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOCK="${AVGEN_LOCK:-base}"

install_system_packages() {
  # Debian packages the tests read real media from, and ffprobe to check our mp4s from the outside.
  # Optional: tests that need them skip with a reason when they are missing. chromium: the browser test of avgen-app.
  local want=(ffmpeg python3-imageio espeak-ng pocketsphinx-testdata sound-theme-freedesktop chromium)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "[setup] not root or no apt-get: skipping system packages (${missing[*]}); some tests will skip" >&2
    return 0
  fi
  echo "[setup] apt-get install ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
    >/tmp/avgen_apt.log 2>&1 || echo "[setup] apt-get failed (see /tmp/avgen_apt.log); continuing" >&2
}

setup_venv() {
  # Install exactly what locks/$LOCK.txt pins (hash-checked), then avgen itself without dependencies, then a smoke
  # import of the compiled stack. LOCK: dev-app for tools/test.sh, base for tools/demo.sh (see tools/lock.py).
  local lock="locks/${LOCK}.txt"
  [ -f "$lock" ] || { echo "error: $lock not found (AVGEN_LOCK=$LOCK); expected one of: $(ls locks)" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
  fi
  local stamp=".venv/.avgen-lock-${LOCK}"
  local want
  want="$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing $lock into .venv (first time: a few minutes, torch is large)"
    # (this machine's pip config lists local index folders; its "Location ... is ignored" lines are noise)
    .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r "$lock" \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    .venv/bin/python tools/smoke_import.py
    echo "$want" >"$stamp"
  fi
}

install_system_packages
setup_venv
