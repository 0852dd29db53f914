# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench clean

# torchattacks (adversarial detection) with --no-deps: 3.5.1 pins requests~=2.25.1 without
# importing it, and the modules it does import all come with pellucid. Quantus and
# pytorch-grad-cam (the cross-check against them) also --no-deps: between them they require
# opencv-python and opencv-python-headless, two builds of one cv2 module; the headless one
# is installed, with the two small modules they add (ttach, cachetools). TorchRay (the
# benchmark's extremal perturbations and RISE, benchmarks/torchray_peers.py) also --no-deps:
# it lists pycocotools and others that only its dataset code imports; it is CC-BY-NC 4.0, so
# only the benchmarks and their tests use it, never the library
CROSSCHECK := quantus==0.6.0 grad-cam==1.5.7 ttach==0.0.3 cachetools==8.0.2 \
	opencv-python-headless==5.1.0.95 torchray==1.0.0.2
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps torchattacks==3.5.1 $(CROSSCHECK)
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pellucid demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/shapes_difficulty.py
	$(PY) benchmarks/mnist_resnet8.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info benchmarks/.run-cache
