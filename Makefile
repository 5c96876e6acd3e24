# audioexp: `make demo` and `make test` are all a new user needs.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every transitive dependency, pinned with hashes (see "Refreshing the lock" in the README).
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9

.PHONY: install test demo bench lock smoke voxceleb-mini clean

install: $(STAMP)

# A new venv whenever the lock or the project's metadata changes: nothing of an older
# resolution survives. pip installs exactly the locked files (hash-checked, no resolver),
# then the package itself (editable, built offline with the locked setuptools).
$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m audioexp.smoke
	touch $(STAMP)

# Imports every compiled dependency and builds the filterbank kernel; fails with the culprit.
smoke: install
	$(BIN)/python -m audioexp.smoke

# two workers (pytest-xdist), each test module on one worker in order (the README's commands
# depend on each other's order)
test: install
	WANDB_MODE=offline $(BIN)/python -m pytest -n 2 --dist loadfile

# the demo's data config writes the miniature FM corpus on first use (data/minicorpus/fm_broadcast)
demo: install
	$(BIN)/python -m audioexp +experiment=demo

# Re-resolve every dependency from pyproject.toml (a deliberate change: commit the new
# lock only after `make clean test` passes on it).
lock:
	$(PY) -m venv /tmp/audioexp-uv && /tmp/audioexp-uv/bin/python -m pip install --quiet uv==$(UV_VERSION)
	/tmp/audioexp-uv/bin/uv pip compile pyproject.toml --extra dev --extra build --extra export \
	    --generate-hashes --universal --python-version 3.11 --upgrade -o $(LOCK)

bench: install
	$(BIN)/python bench/bench_manifest.py
	$(BIN)/python bench/bench_header_scan.py --files 100000
	$(BIN)/python bench/bench_spectrogram.py
	$(BIN)/python bench/bench_training_throughput.py --width 0.5 --batch 8 --steps 10
	$(BIN)/python bench/bench_sd_filterbank.py --seconds 4
	$(BIN)/python bench/bench_gmm.py --components 64 512
	$(BIN)/python bench/bench_replay_frontend.py --threads 1
	$(BIN)/python bench/bench_predict.py --files 16
	$(BIN)/python bench/bench_probe_grid.py
	$(BIN)/python bench/bench_data_loading.py

# The three VoxCeleb recipes (and a shuffled-label control) on the generated miniature
# VoxCeleb1, scaled for a CPU (a narrower VGG with lighter dropout, shorter crops): 10-25
# minutes each on 2 cores. lambda is the recipe's 5, the paper's, with the center term averaged
# over the bottleneck's dimensions (experiments/voxceleb.md, lambda study); set VOXMINI_LAMBDA
# (e.g. model.center_loss_weight=1) to try another.
VOXMINI := data=voxceleb1_mini model.backbone.width=0.125 data.crop_seconds=1.5 model.backbone.dropout=0.1 trainer.max_epochs=60 logger=csv
VOXMINI_LAMBDA :=
voxceleb-mini: install
	$(BIN)/python -m audioexp +experiment=voxceleb_centerloss $(VOXMINI) $(VOXMINI_LAMBDA)
	$(BIN)/python -m audioexp +experiment=voxceleb_softmax $(VOXMINI)
	$(BIN)/python -m audioexp +experiment=voxceleb_centerloss_verification $(VOXMINI) $(VOXMINI_LAMBDA)
	$(BIN)/python -m audioexp +experiment=voxceleb_centerloss $(VOXMINI) $(VOXMINI_LAMBDA) trainer.max_epochs=40 data.shuffle_labels=true name=voxceleb_centerloss_shuffled

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
