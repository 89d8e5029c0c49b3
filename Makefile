# One entry point for set-up, tests and the dataset build. Every target creates the
# environment first if it is missing, so a fresh clone needs nothing but Python.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
DEEPSPEED := deepspeed==0.19.8
DATA   ?= build/demo

.PHONY: venv test lint build-dataset pretrain bench clean

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
	# DeepSpeed compiles its CPU shared-memory collective op on first use (~45 s); do it once here, not in a test.
	DS_ACCELERATOR=cpu $(BIN)/python -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hyper400k specaware pipelines tests benchmarks

build-dataset: $(STAMP)
	$(BIN)/hyper400k demo $(DATA)

# A short `tiny` MAE pretraining on the demo corpus (CPU, a few minutes); builds the corpus first if needed.
pretrain: $(STAMP)
	test -f $(DATA)/build/catalog.json || $(MAKE) build-dataset
	$(BIN)/specaware pretrain --config pipelines/configs/pretrain_tiny.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks.read --quick
	$(BIN)/python -m benchmarks.etl --quick
	$(BIN)/python -m benchmarks.compression --quick
	$(BIN)/python -m benchmarks.loader --quick
	$(BIN)/python -m benchmarks.build_scale --quick

clean:
	rm -rf build .pytest_cache
