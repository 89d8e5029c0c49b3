# One entry point for set-up, tests and the dataset build. Every target creates the
# environment first if it is missing, so a fresh clone needs nothing but Python.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
DEEPSPEED := deepspeed==0.19.8
PRESET ?= demo
DATA   ?= build/$(PRESET)
MANIFEST ?= $(DATA)/manifest.yaml

.PHONY: venv test lint build-dataset pretrain bench docs clean

venv: $(STAMP)

# torch goes in first, from the local CPU build, so nothing later can pull the CUDA build;
# DeepSpeed is built without ops and without build isolation so its build sees that torch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH)
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation $(DEEPSPEED)
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') and torch.version.cuda is None else f'pip replaced torch: {v} cuda={torch.version.cuda}')"
	# DeepSpeed compiles its CPU shared-memory collective op on first use; do it once here, not in a test.
	DS_ACCELERATOR=cpu $(BIN)/python -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check hyper400k specaware pipelines tests benchmarks

# PRESET=demo (default): the built-in demo, no network. PRESET=hyper400k: the published list ->
# manifest -> plan -> download + build, resumable (re-run to continue); Earthdata products need
# $$EARTHDATA_TOKEN or a ~/.netrc entry for urs.earthdata.nasa.gov. MANIFEST_ARGS narrows the list
# (e.g. MANIFEST_ARGS="--sensor aviris-ng --years 2019"); BUILD_ARGS goes to `hyper400k build`.
build-dataset: $(STAMP)
ifeq ($(PRESET),demo)
	$(BIN)/hyper400k demo $(DATA)
else
	test -f $(MANIFEST) || $(BIN)/hyper400k manifest $(MANIFEST) --preset $(PRESET) $(MANIFEST_ARGS)
	$(BIN)/hyper400k plan $(MANIFEST)
	$(BIN)/hyper400k build $(MANIFEST) $(DATA)/build $(BUILD_ARGS)
endif

# A 150-step `tiny` MAE pretraining on the demo corpus (CPU); builds the corpus first if needed.
pretrain: $(STAMP)
	test -f $(DATA)/build/catalog.json || $(MAKE) build-dataset
	$(BIN)/specaware pretrain --config pipelines/configs/pretrain_tiny.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks.read --quick
	$(BIN)/python -m benchmarks.etl --quick
	$(BIN)/python -m benchmarks.compression --quick
	$(BIN)/python -m benchmarks.loader --quick
	$(BIN)/python -m benchmarks.build_scale --quick

# The documentation site (user guide + API reference from the docstrings) into site/, strict as in the tests.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf build site .pytest_cache
