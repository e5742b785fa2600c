# Two entry points, each creating its own virtual environment from pyproject.toml:
#   make run   – index, recommend and evaluate on the bundled demo data, then start the chat page
#   make test  – the whole test suite (offline, CPU only)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= embed,llm,ui,ray,dev

.PHONY: run test lint bench results results-chat results-conversations redial-data clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/fewrec datasets
	$(BIN)/fewrec index
	$(BIN)/fewrec recommend --user 42 --k 10 --rerank
	$(BIN)/fewrec eval --stages retrieval
	$(BIN)/fewrec chat

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The paper's protocol (ties by item id), the same with ties at random (SASRec, retrained for
# the new order, only as a source there), and the leak-free temporal protocol with weights
# chosen on its own validation targets (configs/temporal.toml).
results: $(STAMP)
	$(BIN)/fewrec eval --stages retrieval --history-cut 1,3,5 --out docs/results --readme README.md
	$(BIN)/fewrec eval --stages retrieval --history-cut '' --ties random \
	    --baselines random,popularity,item-knn,ease,als,bpr,markov --out docs/results-ties-random --readme README.md
	$(BIN)/fewrec eval --stages retrieval --history-cut '' --protocol temporal --config configs/temporal.toml \
	    --out docs/results-temporal --readme README.md

# The chat against the API it wraps, over the phrasing families of fewrec/eval/chat_phrasings.toml
# (query weights chosen on validation targets first).
results-chat: $(STAMP)
	$(BIN)/fewrec eval --chat --users 200 --out docs/results-chat --readme README.md

# The chat on real dialogues (ReDial's validation subset, kept outside the repository in
# ../shared; anything chosen on its train subset): fewrec/eval/conversation_eval.py.
# The data is checked before the environment is built: no five-minute install for nothing.
REDIAL ?= ../shared/datasets/redial
redial-data:
	@test -f $(REDIAL)/valid_data.jsonl || { echo "results-conversations: $(REDIAL)/valid_data.jsonl is absent here (the ReDial dialogues live outside the repository); nothing done"; exit 1; }

results-conversations: redial-data $(STAMP)
	$(BIN)/fewrec eval --conversations $(REDIAL)/valid_data.jsonl --out docs/results-conversations --readme README.md

bench: $(STAMP)
	$(BIN)/fewrec bench

clean:
	rm -rf $(VENV) .fewrec runs
