# audioexp: `make demo` and `make test` are all a new user needs.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

test: install
	WANDB_MODE=offline $(BIN)/python -m pytest

demo: install
	$(BIN)/python -m audioexp.data.minicorpus fm_broadcast data/minicorpus/fm_broadcast
	$(BIN)/python -m audioexp +experiment=demo

bench: install
	$(BIN)/python bench/bench_manifest.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
