#!/usr/bin/env bash
# Submit a tokenmill job to a Spark cluster with the packed environment and code.
#
#   infra/submit.sh --master URL [--deploy-mode client|cluster] [spark-submit options...] JOB [ARGS...]
#   infra/submit.sh --master spark://10.0.0.5:7077 run s3://commoncrawl/crawl-data/CC-MAIN-2024-22/warc.paths.gz \
#       -o s3://my-bucket/tokenmill/CC-MAIN-2024-22
#
# JOB is a tokenmill command (run, ingest, dedup, scrub, train-tokenizer, tokenize), run through its
# entry script jobs/<job>.py (tokenize's is jobs/tokens.py: no script may shadow the stdlib). The
# environment archive and code zip come from infra/pack.py (built into $TOKENMILL_BUILD, default build/,
# when missing; TOKENMILL_REPACK=1 rebuilds them). Executors run ./environment/bin/python from the
# archive; in client mode the driver runs $PYSPARK_DRIVER_PYTHON (default: this checkout's .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${TOKENMILL_BUILD:-$repo/build}
python=${PYSPARK_DRIVER_PYTHON:-$repo/.venv/bin/python}
spark_submit=${SPARK_HOME:+$SPARK_HOME/bin/}spark-submit
command -v "$spark_submit" >/dev/null 2>&1 || spark_submit=$repo/.venv/bin/spark-submit

options=()
mode=client
while [ $# -gt 0 ] && [[ $1 == --* ]]; do
  case $1 in
    --deploy-mode) mode=$2; options+=("$1" "$2"); shift 2 ;;
    --*=*) options+=("$1"); shift ;;
    *) options+=("$1" "$2"); shift 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: infra/submit.sh --master URL [spark-submit options] JOB [ARGS...]" >&2; exit 2; }
job=${1//-/_}; shift
[ "$job" = tokenize ] && job=tokens
[ -f "$repo/jobs/$job.py" ] || { echo "submit: no job jobs/$job.py; JOB is a tokenmill command such as run" >&2; exit 2; }

if [ "${TOKENMILL_REPACK:-0}" = 1 ] || [ ! -f "$build/tokenmill-env.tar.gz" ] || [ ! -f "$build/tokenmill-code.zip" ]; then
  "$python" "$repo/infra/pack.py" --out "$build"
fi

driver_python=$python
[ "$mode" = cluster ] && driver_python=./environment/bin/python
exec "$spark_submit" "${options[@]}" \
  --archives "$build/tokenmill-env.tar.gz#environment" \
  --py-files "$build/tokenmill-code.zip" \
  --conf spark.pyspark.python=./environment/bin/python \
  --conf spark.pyspark.driver.python="$driver_python" \
  "$repo/jobs/$job.py" "$@"
