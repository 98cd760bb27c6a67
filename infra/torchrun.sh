#!/usr/bin/env bash
# Launch the trainer (jobs/train.py) on GPU nodes with torchrun: one process per GPU.
#
#   DATA=ROOT/tokens/gpt2 infra/torchrun.sh [jobs/train.py options...]                     one node
#   DATA=... NNODES=4 NODE_RANK=0 MASTER_ADDR=10.0.0.5 infra/torchrun.sh ...   on every node, its rank
#
# Environment:
#   DATA         token set directory (ROOT/tokens/<tokenizer>, local or as the trainer reads it); required
#   CONFIG       tiny | gpt2-124m | FILE (default gpt2-124m)
#   OUT          checkpoints, config and metrics.jsonl (default out/train; shared storage for several nodes)
#   GPUS         processes per node (default: the GPUs nvidia-smi lists)
#   NNODES       number of nodes (default 1: torchrun --standalone, no rendezvous server)
#   NODE_RANK    this node's rank, 0 .. NNODES-1 (several nodes)
#   MASTER_ADDR  the rendezvous host, reachable from every node (several nodes)
#   MASTER_PORT  the rendezvous port (default 29500)
#   RDZV_ID      a job id all nodes share (default tokenmill-train)
#   TORCHRUN     the torchrun executable (default: .venv/bin/torchrun if present, else torchrun on PATH)
# Every run passes --resume (a restarted node or job continues from OUT's checkpoint) and --device cuda:
# a node whose torch cannot use its GPUs stops with an error instead of training on its CPUs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
: "${DATA:?set DATA to a token set directory (ROOT/tokens/<tokenizer>)}"
config=${CONFIG:-gpt2-124m}
out=${OUT:-out/train}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
[ "${gpus:-0}" -ge 1 ] || { echo "torchrun.sh: no GPU found; set GPUS" >&2; exit 2; }
nnodes=${NNODES:-1}
torchrun=${TORCHRUN:-}
[ -n "$torchrun" ] || { [ -x "$repo/.venv/bin/torchrun" ] && torchrun=$repo/.venv/bin/torchrun || torchrun=torchrun; }

if [ "$nnodes" -eq 1 ]; then
  layout=(--standalone --nnodes=1 --nproc_per_node="$gpus")
else
  : "${NODE_RANK:?set NODE_RANK (0 .. NNODES-1) on each node}"
  : "${MASTER_ADDR:?set MASTER_ADDR to the rendezvous host}"
  layout=(--nnodes="$nnodes" --node_rank="$NODE_RANK" --nproc_per_node="$gpus"
    --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:${MASTER_PORT:-29500}" --rdzv_id="${RDZV_ID:-tokenmill-train}")
fi
exec "$torchrun" "${layout[@]}" "$repo/jobs/train.py" --data "$DATA" --config "$config" --out "$out" --resume --device cuda "$@"
