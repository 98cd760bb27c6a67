# The two commands a fresh clone needs: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out
SAMPLES := tests/data/warc/resiliparse-warcfile.warc.gz tests/data/warc/dolma-sample-0000.warc.gz \
           tests/data/warc/dolma-sample-0001.warc.gz tests/data/warc/aut-example.warc.gz \
           tests/data/warc/derived/cc2008-arc-sample-1213893279526_0.converted.warc.gz \
           tests/data/warc/jeffharwell-filter_test_1.wet.gz

.PHONY: setup run chat-demo test test-fast lint bench bench-scale clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml infra/setup.sh
	bash infra/setup.sh $(VENV)
	touch $@

run: setup
	$(BIN)/tokenmill run $(SAMPLES) -o $(OUT) --dump sample --keep-removed

# From base model to assistant on a CPU (~5 min): the tiny GPT pretrained on `make run`'s tokens, fine-tuned
# on 1,200 conversations about lines of tiny shakespeare (tests/chat_data.py), then one chat reply. A
# 2-layer model learns the format (a short answer, then <|end|>), not the answers.
chat-demo: run
	$(BIN)/tokenmill train --data $(OUT)/tokens/gpt2 --config tiny --max-steps 300 --out $(OUT)/train
	$(BIN)/python -m tests.chat_data $(OUT)/conversations.jsonl
	$(BIN)/tokenmill sft --from $(OUT)/train --data $(OUT)/conversations.jsonl --out $(OUT)/sft \
	  --max-steps 200 --lr 3e-3 --batch-size 8
	$(BIN)/tokenmill chat --checkpoint $(OUT)/sft --prompt "Repeat after me: And keep their teeth clean."

test: setup
	$(BIN)/python -m pytest -q tests

# The unit tests alone: no Spark, S3 server, cluster, browser or training run (well under a minute).
test-fast: setup
	$(BIN)/python -m pytest -q tests -m "not (spark or cluster or s3 or browser or slow)"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Every bench prints its figures beside the anchor measured in the same run and writes JSON under bench/work/;
# inputs are built from bench/data and tests/data. crawl_cost.py projects one crawl from the stages' figures.
bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/extraction.py
	$(BIN)/python bench/dedup.py signatures
	$(BIN)/python bench/dedup.py quality
	$(BIN)/python bench/dedup.py speedups
	$(BIN)/python bench/tokens.py
	$(BIN)/python bench/packing.py --json bench/work/packing_results.json
	$(BIN)/python bench/train.py --json bench/work/train_results.json
	$(BIN)/python bench/crawl_cost.py

# dedup at 300k and 1M documents (~15 min on 2 cores): wall, peak memory, growth exponent.
bench-scale: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/dedup.py scale --sizes 300000,1000000
	$(BIN)/python bench/crawl_cost.py

clean:
	rm -rf $(OUT) $(VENV)
