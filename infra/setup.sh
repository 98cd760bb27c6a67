#!/usr/bin/env bash
# Create the virtual environment and install tokenmill with its test tools. Installs Java 17 (Spark
# needs it) when it is missing and we are root; otherwise stops with a clear message.
set -euo pipefail
venv=${1:-.venv}

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Java 17 (openjdk-17-jre-headless) for Spark"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "setup: Spark needs Java 17 or newer and none was found. Install it (for example" >&2
    echo "       'sudo apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') and rerun." >&2
    exit 1
  fi
fi

# Chromium renders the run report in its test (headless); only the test suite needs it.
if [ "${TOKENMILL_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
  && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing chromium (the report's browser test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "setup: chromium could not be installed; the report's browser test will be skipped" >&2
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "setup: Python 3.10+ is required" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch goes in before the project, so pyproject's loose range installs nothing more: with an NVIDIA GPU
# the CUDA build pip picks; without one the pinned 2.13.0 CPU build. TORCH_INDEX_URL points pip at
# another wheel index (for example PyTorch's CPU-only one) when the default would be a CUDA build.
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  index=()
  [ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install -q "${index[@]}" 'torch>=2.5'
  else
    "$venv/bin/python" -m pip install -q "${index[@]}" 'torch==2.13.0'
  fi
fi
"$venv/bin/python" -m pip install -q -e '.[dev,train]'
echo "setup: ready ($("$venv/bin/python" --version), $(java -version 2>&1 | head -1))"
