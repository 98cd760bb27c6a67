#!/usr/bin/env bash
# The trainer's checks on a GPU, about 6 minutes on one H100/H200, after `make setup`:
#
#   bash infra/gpu_check.sh
#
# One summary line per check, in $W/summary.txt too (W, the work directory, default /tmp/tm_gpu_check):
#   ENV       torch and CUDA versions, the GPU, its peak from trainer/mfu.py, Python.h and a C compiler
#   TOKENIZE  tiny shakespeare, one document per speech, through the real `tokenmill tokenize`
#   BENCH     gpt2-124m tokens/s and MFU, tokenmill against the nanoGPT-style baseline (bench/train.py)
#   RESUME    --stop-after 4 then --resume to 8, against 8 straight and 8 under torchrun (nccl, DDP)
#   SAMPLE    `tokenmill sample` twice with the same seed gives the same text
#   KVCACHE   greedy generation with and without the KV cache, and a seeded repeat, over 600 tokens
#   TIME      the whole check
#
# A dry run of the script itself on a CPU (tiny model, no compile):
#   DEV=cpu BENCH_ARGS="--seq 16 --steps 4" \
#     EXTRA_CFG='"compile": false, "model": {"n_layer": 1, "n_head": 2, "n_embd": 64, "block_size": 64, "dropout": 0.1},' \
#     bash infra/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$PWD/.venv/bin/python
TM=$PWD/.venv/bin/tokenmill
export DEV=${DEV:-cuda}
W=${W:-/tmp/tm_gpu_check}
rm -rf "$W" && mkdir -p "$W"
TOKENS=$W/root/tokens/gpt2
START=$SECONDS

say() { printf '%-9s %s\n' "$1" "$2" | tee -a "$W/summary.txt"; }
# Python read from stdin, with the work directory as its argument; its errors go to py.err.
pyq() { "$PY" - "$W" 2>>"$W/py.err"; }
# A command with its output in $W/<log>.log, stopped after TMO seconds (default 300).
run() { local log=$1; shift; timeout "${TMO:-300}" "$@" >"$W/$log.log" 2>&1; }

say ENV "$(pyq <<'EOF'
import os, shutil, sysconfig, torch
from tokenmill.trainer.mfu import peak_flops
header = os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))  # Triton compiles against it
if torch.cuda.is_available():
    gpu = torch.device("cuda")
    name = f"{torch.cuda.get_device_name(gpu)} peak={peak_flops(gpu)} bf16={torch.cuda.is_bf16_supported()}"
else:
    name = "NO CUDA"
compiler = bool(shutil.which("gcc") or shutil.which("clang"))
print(f"torch {torch.__version__} cuda {torch.version.cuda} | {name} | Python.h={header} cc={compiler}")
EOF
)"

# 1. Tiny shakespeare, one document per speech -> Parquet (id, text) -> `tokenmill tokenize`.
pyq <<'EOF'
import re, sys
import pyarrow as pa, pyarrow.parquet as pq
text = open("tests/data/text/tinyshakespeare_input.txt").read()
speeches = [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
ids = [f"s{i:05d}" for i in range(len(speeches))]
pq.write_table(pa.table({"id": ids, "text": speeches}), sys.argv[1] + "/speeches.parquet")
EOF
run tokenize "$TM" tokenize -o "$W/root" --encoding gpt2 --input "$W/speeches.parquet" \
  --shard-tokens 100000 --val-tokens 20000 --master 'local[8]'
say TOKENIZE "$(pyq <<'EOF' || echo "FAIL: see $W/tokenize.log"
import json, sys
manifest = json.load(open(sys.argv[1] + "/root/tokens/gpt2/manifest.json"))
tokens = sum(shard["tokens"] for shard in manifest["shards"])
print(f"OK {len(manifest['shards'])} shards, {tokens:,} tokens, dtype {manifest['dtype']}")
EOF
)"

# 2. gpt2-124m tokens/s and MFU, tokenmill's loop against the nanoGPT-style baseline.
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
TMO=420 run bench "$PY" bench/train.py --device "$DEV" ${BENCH_ARGS:---steps 50} --json "$W/bench.json"
say BENCH "$(pyq <<'EOF' || echo "FAIL: see $W/bench.log"
import json, sys
result = json.load(open(sys.argv[1] + "/bench.json"))
ours, baseline = result["tokenmill"], result["nanoGPT-style baseline"]
share = lambda mfu: "n/a" if mfu is None else f"{100 * mfu:.1f}%"
print(f"{result['device']} seq {result['seq']} B {result['batch']} compile {result['compile']}: "
      f"tokenmill {ours['tokens_per_s']:,.0f} tok/s MFU {share(ours['mfu'])} | "
      f"nanoGPT-style {baseline['tokens_per_s']:,.0f} tok/s MFU {share(baseline['mfu'])} | "
      f"ratio {result['ratio']:.3f} (README target MFU >= 45%)")
EOF
)"

# 3. An 8-step run (2 layers, dropout, 2 micro-batches per step; compile, bf16 and fused AdamW on CUDA):
# stopped after step 4 and resumed to 8, against 8 straight, and 8 under torchrun (nccl, DDP, no_sync).
cat >"$W/run.json" <<EOF
{"base": "gpt2-124m", "model": {"n_layer": 2, "block_size": 256, "dropout": 0.1}, ${EXTRA_CFG:-}
 "lr": 0.01, "min_lr": 0.001, "warmup_steps": 2, "max_steps": 8, "batch_size": 16, "micro_batch_size": 8,
 "val_every": 0, "val_windows": 32, "checkpoint_every": 0, "log_every": 1}
EOF
TRAIN=(--data "$TOKENS" --config "$W/run.json" --device "$DEV" --out)
run half "$TM" train "${TRAIN[@]}" "$W/resumed" --stop-after 4  # alone first: it fills the compile caches
run resume "$TM" train "${TRAIN[@]}" "$W/resumed" --resume &
run straight "$TM" train "${TRAIN[@]}" "$W/straight" &
run ddp "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 jobs/train.py "${TRAIN[@]}" "$W/ddp" &
wait
say RESUME "$(pyq <<'EOF' || echo "FAIL: see $W/{half,resume,straight,ddp}.log"
import json, sys
read = lambda run: [json.loads(line) for line in open(f"{sys.argv[1]}/{run}/metrics.jsonl")]
straight, resumed, ddp = read("straight"), read("resumed"), read("ddp")
assert len(straight) == len(resumed) == len(ddp) == 8, (len(straight), len(resumed), len(ddp))
for name, other, tolerance in (("resumed", resumed, 5e-3), ("DDP(nccl,W=1)", ddp, 5e-2)):
    gaps = [abs(a["loss"] - b["loss"]) for a, b in zip(straight, other)]
    gaps.append(abs(straight[-1]["val_loss"] - other[-1]["val_loss"]))
    verdict = "OK" if max(gaps) < tolerance else "FAIL"
    print(f"{verdict} {name} vs straight: max |dloss| {max(gaps):.1e} (tol {tolerance:g}, step 1 {gaps[0]:.0e})", end=" | ")
print(f"loss {straight[0]['loss']:.2f} -> {straight[-1]['loss']:.2f}; "
      "GPU atomics give ~1e-4, a wrong data/RNG/optimizer restore >1e-2")
EOF
)"

# 4. The same seed twice gives the same text.
SAMPLE=("$TM" sample --checkpoint "$W/resumed" --prompt "ROMEO:" --max-new-tokens 300 --top-k 200 --top-p 0.95
  --seed 7 --device "$DEV")
"${SAMPLE[@]}" >"$W/sample1.txt" 2>"$W/sample.err"
"${SAMPLE[@]}" >"$W/sample2.txt" 2>>"$W/sample.err"
if cmp -s "$W/sample1.txt" "$W/sample2.txt" && [ -s "$W/sample1.txt" ]; then
  say SAMPLE "OK seed 7 twice: identical ($(wc -c <"$W/sample1.txt") bytes)"
else
  say SAMPLE "FAIL: differ or empty, see $W/sample.err"
fi

# 5. The KV cache: 600 new tokens cross block_size at least twice (the window restarts).
say KVCACHE "$(pyq <<'EOF' || echo "FAIL: see $W/py.err"
import os, sys, torch
from tokenmill.trainer.sample import generate, load_model
device = os.environ["DEV"]
model, _ = load_model(sys.argv[1] + "/resumed", device)
prompt = torch.tensor([[50256]], device=device)
tokens = lambda **options: generate(model, prompt, 600, **options)[0].tolist()
seeded = lambda: torch.Generator(device=device).manual_seed(7)
first_difference = lambda a, b: next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
greedy = first_difference(tokens(temperature=0), tokens(temperature=0, use_cache=False))
repeat = first_difference(tokens(generator=seeded(), top_p=0.9), tokens(generator=seeded(), top_p=0.9))
print(f"greedy cached==uncached: {'yes' if greedy is None else f'no, first diff at {greedy} (fp near-tie?)'}; "
      f"seeded repeat: {'identical' if repeat is None else f'DIFFERS at {repeat}'}")
EOF
)"
say TIME "$((SECONDS - START)) s in all; logs and summary.txt in $W"
