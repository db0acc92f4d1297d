# Two commands: `make run` (demo) and `make test`. The install step re-runs only when
# pyproject.toml changes (the stamp file tracks it). `make run SEEDS=0,1,2` runs several seeds
# (the table then shows mean ± std and the paired AU test).
PYTHON ?= python3
SEEDS  ?= 0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install run test perf clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/bench run --methods all --datasets synthetic --profile demo --seeds $(SEEDS)
	$(BIN)/bench table

test: install
	$(BIN)/python -m pytest -q

perf: install
	$(BIN)/bench perf --profile demo

# Outputs only: run folders under results/ (the folder and its .gitkeep stay), the venv and caches.
# Nothing tracked lives in results/ (the paper's numbers ship inside the package).
clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
	[ ! -d results ] || find results -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
