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

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "setup: Python 3.10+ is required" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[dev]'
echo "setup: ready ($("$venv/bin/python" --version), $(java -version 2>&1 | head -1))"
