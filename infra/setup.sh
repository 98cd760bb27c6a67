#!/usr/bin/env bash
# Create the virtual environment and install tokenmill with its test tools. Installs Java 17 (Spark
# needs it) when it is missing and we are root; otherwise stops with a clear message.
#
# On a machine with NVIDIA GPUs (nvidia-smi lists one) it also makes training there work: torch must be
# a CUDA build (a CPU build already in the venv is replaced), and torch.compile, on by default for
# gpt2-124m, builds kernels at run time with a C compiler and the Python headers, which it installs
# (root with apt-get) or asks for. Without GPUs, torch is the pinned CPU build and nothing else changes.
#
# Sourcing this file (tests do) defines its functions and runs nothing.
set -euo pipefail

# Whether the NVIDIA driver lists a GPU here, whatever torch makes of it.
# grep reads the whole list: `grep -q` would stop at the first GPU and, under pipefail, nvidia-smi's
# SIGPIPE on the next line would read as "no GPU" on a machine with several.
has_nvidia_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep '^GPU ' >/dev/null
}

can_apt() {
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1
}

apt_install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

# The CUDA version the venv's torch was built for; "None" for a CPU build, nothing without torch.
torch_cuda() {
  "$1/bin/python" -c 'import torch; print(torch.version.cuda)' 2>/dev/null || true
}

# Where the venv's Python keeps Python.h, which Triton's kernel launchers compile against.
python_header() {
  "$1/bin/python" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["include"], "Python.h"))'
}

has_c_compiler() {
  command -v "${CC:-gcc}" >/dev/null 2>&1 || command -v clang >/dev/null 2>&1
}

# torch.compile's needs on a GPU machine: a C compiler and the headers of the venv's Python.
install_compile_needs() {
  local venv=$1 version
  version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if has_c_compiler && [ -f "$(python_header "$venv")" ]; then
    return
  fi
  if can_apt; then
    echo "setup: installing a C compiler and the Python $version headers (torch.compile builds GPU kernels)"
    apt_install build-essential "python$version-dev" || true
  fi
  if ! has_c_compiler || [ ! -f "$(python_header "$venv")" ]; then
    echo "setup: torch.compile (on by default for gpt2-124m) needs a C compiler and $(python_header "$venv")." >&2
    echo "       Install them (for example 'sudo apt-get install build-essential python$version-dev') and" >&2
    echo "       rerun, or train with \"compile\": false in the config." >&2
    exit 1
  fi
}

main() {
  local venv=${1:-.venv}
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
    if can_apt; then
      echo "setup: installing Java 17 (openjdk-17-jre-headless) for Spark"
      apt_install openjdk-17-jre-headless
    else
      echo "setup: Spark needs Java 17 or newer and none was found. Install it (for example" >&2
      echo "       'sudo apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') and rerun." >&2
      exit 1
    fi
  fi

  # Chromium renders the run report in its test (headless); only the test suite needs it.
  if [ "${TOKENMILL_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 && can_apt; then
    echo "setup: installing chromium (the report's browser test)"
    apt_install chromium || echo "setup: chromium could not be installed; the report's browser test will be skipped" >&2
  fi

  local python=${PYTHON:-python3}
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "setup: Python 3.10+ is required" >&2; exit 1; }
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch goes in before the project, so pyproject's loose range installs nothing more: with an NVIDIA
  # GPU a CUDA build (pip's default index serves CUDA wheels on Linux); without one the pinned 2.13.0
  # CPU build. TORCH_INDEX_URL points pip at another wheel index (for example PyTorch's CPU-only one,
  # or one for another CUDA version).
  local index=() gpu=0
  [ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
  has_nvidia_gpu && gpu=1
  if [ "$gpu" = 1 ] && [ "$(torch_cuda "$venv")" = None ]; then
    echo "setup: this machine has NVIDIA GPUs and the venv's torch is a CPU build: replacing it with a CUDA build"
    "$venv/bin/python" -m pip uninstall -q -y torch
  fi
  if [ -z "$(torch_cuda "$venv")" ]; then
    if [ "$gpu" = 1 ]; then
      "$venv/bin/python" -m pip install -q "${index[@]}" 'torch>=2.5'
    else
      "$venv/bin/python" -m pip install -q "${index[@]}" 'torch==2.13.0'
    fi
  fi
  if [ "$gpu" = 1 ]; then
    [ "$(torch_cuda "$venv")" != None ] \
      || echo "setup: torch is still a CPU build (TORCH_INDEX_URL=${TORCH_INDEX_URL:-}); training on the GPUs will refuse to start" >&2
    install_compile_needs "$venv"
  fi
  "$venv/bin/python" -m pip install -q -e '.[dev,train]'
  local cuda
  cuda=$(torch_cuda "$venv")
  echo "setup: ready ($("$venv/bin/python" --version), $(java -version 2>&1 | head -1), torch $([ "$cuda" = None ] && echo "CPU build" || echo "for CUDA $cuda"))"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
