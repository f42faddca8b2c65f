# DenseCLIP for Detectron2: set-up, demo and tests.
# `make setup` is idempotent: it rebuilds .venv only when this Makefile or the package metadata change.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Users with network access may point this at upstream, e.g. git+https://github.com/facebookresearch/detectron2.git
DETECTRON2_SOURCE ?= sal-detectron2==0.7.2
STAMP := $(VENV)/.setup-done
DEMO_DIR ?= output/demo

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): Makefile pyproject.toml setup.cfg tools/install_detectron2.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet "numpy<2" "setuptools<81" installer fvcore "iopath<0.1.10" \
		"omegaconf>=2.1,<2.4" hydra-core pycocotools opencv-python-headless termcolor yacs \
		tabulate cloudpickle tqdm matplotlib tensorboard packaging black openai-clip \
		"timm>=1.0,<2" pytest pytest-timeout nbclient nbformat ipykernel \
		onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2
	DETECTRON2_SOURCE="$(DETECTRON2_SOURCE)" bash tools/install_detectron2.sh $(PY)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) tools/run_demo.py --output-dir $(DEMO_DIR)

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m black --check --line-length 100 projects tools tests configs train_net.py

clean:
	rm -rf $(VENV) output
