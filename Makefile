# Two entry points, each creating its own virtual environment from pyproject.toml:
#   make run   – index, recommend and a quick evaluation on the bundled demo data, then the chat page
#   make test  – the whole test suite (offline, CPU only)
# The figures the README shows live in docs/RESULTS.md: the results targets below rewrite its
# marked blocks (`--readme docs/RESULTS.md`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= embed,llm,ui,ray,dev

.PHONY: run test lint bench results results-chat results-llm results-conversations redial-data verify-results verify-chat clean venv

# llama.cpp is compiled for AVX2, not for this processor: built natively on Sapphire Rapids and
# newer it uses Intel AMX kernels that crash on the first token (fewrec/llm/selfcheck.py). A
# natively built wheel may already sit in pip's cache: then the check fails once, the wheel is
# dropped from the cache and llama-cpp-python is built again with these flags (about 5 minutes).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/python -m fewrec.llm.selfcheck || { \
	    $(BIN)/python -m pip cache remove 'llama_cpp_python*' ; \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q --force-reinstall --no-deps \
	        "llama-cpp-python==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')" \
	    && $(BIN)/python -m fewrec.llm.selfcheck ; }
	touch $(STAMP)

venv: $(STAMP)

# The quick evaluation: the fused retriever against three cheap baselines at the points `make
# results` chose on validation (configs/quick.toml), nothing tuned, no history-cut slices.
# `make results` is the full set (seven tuned baselines, three protocols).
run: $(STAMP)
	$(BIN)/fewrec datasets
	$(BIN)/fewrec index
	$(BIN)/fewrec recommend --user 42 --k 10 --rerank
	$(BIN)/fewrec eval --stages retrieval --config configs/quick.toml --baselines popularity,item-knn,ease \
	    --history-cut '' --out runs/quick
	@echo 'quick evaluation: 3 of 7 baselines, each at the one grid point `make results` chose on validation; `make results` runs the full set (docs/RESULTS.md)'
	$(BIN)/fewrec chat

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The paper's protocol (ties by item id), the same with ties at random (SASRec, retrained for
# the new order, only as a source there), and the leak-free temporal protocol with weights
# chosen on its own validation targets. Only weights committed in configs/ are used, never a
# per-machine tuned file; the docs/RESULTS.md blocks are rewritten only from a complete run of
# committed code (`RESULTS=dir README_ARG=` writes elsewhere and leaves docs/RESULTS.md alone).
RESULTS    ?= docs
README_ARG ?= --readme docs/RESULTS.md
results: $(STAMP)
	$(BIN)/fewrec eval --stages retrieval --history-cut 1,3,5 --config configs/loo.toml \
	    --out $(RESULTS)/results $(README_ARG)
	$(BIN)/fewrec eval --stages retrieval --history-cut '' --ties random --config configs/loo.toml \
	    --baselines random,popularity,item-knn,ease,als,bpr,markov --out $(RESULTS)/results-ties-random $(README_ARG)
	$(BIN)/fewrec eval --stages retrieval --history-cut '' --protocol temporal --config configs/temporal.toml \
	    --out $(RESULTS)/results-temporal $(README_ARG)

# Reruns `make results` from scratch (its own data folder: no cached split, index or model) into
# runs/verify and compares every figure with the committed docs/results*/results.json to the
# last printed digit; exits 1 on any difference.
verify-results: $(STAMP)
	rm -rf runs/verify
	FEWREC_DATA_DIR=$(CURDIR)/runs/verify/data $(MAKE) results RESULTS=runs/verify README_ARG=
	$(BIN)/fewrec compare-results docs runs/verify

# The chat's and the conversations' figures the same way (about 25 min; needs the ReDial files).
verify-chat: redial-data $(STAMP)
	rm -rf runs/verify-chat
	FEWREC_DATA_DIR=$(CURDIR)/runs/verify-chat/data $(BIN)/fewrec eval-chat --users 200 \
	    --out runs/verify-chat/results-chat
	FEWREC_DATA_DIR=$(CURDIR)/runs/verify-chat/data $(BIN)/fewrec eval-conversations \
	    $(REDIAL)/valid_data.jsonl --cv-folds 5 --cv-data $(REDIAL)/train_data.jsonl \
	    --out runs/verify-chat/results-conversations
	$(BIN)/fewrec compare-results docs runs/verify-chat

# The chat against the API it wraps, over the phrasing families of fewrec/eval/chat_phrasings.toml
# (query weights chosen on validation targets first).
results-chat: $(STAMP)
	$(BIN)/fewrec eval-chat --users 200 --out docs/results-chat --readme docs/RESULTS.md

# The embedded LLM's rerank on the test split, zero- and 3-shot, next to retrieval (about 30 min on
# 2 cores); alpha 0 was chosen on validation (docs/RESULTS.md, "The LLM step").
results-llm: $(STAMP)
	$(BIN)/fewrec eval --stages retrieval,rerank,fused --k-shot 0,3 --alpha 0.0 --baselines none \
	    --history-cut '' --config configs/loo.toml --out docs/results-llm --readme docs/RESULTS.md \
	    --readme-block results-llm

# The chat on real dialogues (ReDial's validation subset, kept outside the repository in
# ../shared; anything chosen on its train subset): fewrec/eval/conversation_eval.py.
# The data is checked before the environment is built: no five-minute install for nothing.
REDIAL ?= ../shared/datasets/redial
redial-data:
	@for f in valid_data.jsonl train_data.jsonl; do test -f $(REDIAL)/$$f || { echo "results-conversations: $(REDIAL)/$$f is absent here (the ReDial dialogues live outside the repository); nothing done"; exit 1; }; done

results-conversations: redial-data $(STAMP)
	$(BIN)/fewrec eval-conversations $(REDIAL)/valid_data.jsonl --cv-folds 5 --cv-data $(REDIAL)/train_data.jsonl \
	    --out docs/results-conversations --readme docs/RESULTS.md

bench: $(STAMP)
	$(BIN)/fewrec bench --out docs/bench.json --readme docs/RESULTS.md

clean:
	rm -rf $(VENV) .fewrec runs
