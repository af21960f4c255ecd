# Two commands for a new user: `make demo` and `make test` (each sets everything up first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR := /usr/share/datasets/fashion-mnist
WORKDIR ?= workdirs/demo
# The demo's config: ANT-Nash-MTL; `make demo CONFIG=configs/fashion_mnist.py:vanilla` for k = 1.
CONFIG ?= configs/fashion_mnist.py
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# glibc's malloc on 2 MiB pages: XLA:CPU allocates and frees its buffers at every step, and with
# 4 KiB pages each step takes a page fault per page touched (DiT-S/2: 1.3 million; its step ran
# 2.3x faster with it; README, Efficiency). Read when a process starts; a value of yours is kept.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: setup data demo test test-fast lint bench aot

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# The TPU and GPU compilers for dry runs without the hardware (--topology, docs/scaling.md): the
# extras tpu-dryrun and gpu-dryrun of pyproject.toml (400 MB of wheels, 1.2 GB installed), kept
# out of the venv's site-packages so that only the processes that ask for them load them.
AOT := $(VENV)/aot
$(AOT)/.installed: pyproject.toml | $(VENV)/.installed
	$(PY) -c "import subprocess, sys, tomllib; \
	  extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; \
	  wanted = extras['tpu-dryrun'] + extras['gpu-dryrun']; \
	  subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q', '--target', '$(AOT)', *wanted])"
	touch $@

aot: $(AOT)/.installed

$(DATA_DIR)/train-images-idx3-ubyte.gz:
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q dataset-fashion-mnist

data: $(DATA_DIR)/train-images-idx3-ubyte.gz

setup: $(VENV)/.installed data

demo: setup
	$(PY) main.py --config=$(CONFIG) --workdir=$(WORKDIR)
	@echo "Watch or revisit the run with: $(VENV)/bin/tensorboard --logdir $(WORKDIR)"

# Two workers, one test file each at a time: XLA compiles on one core, so the 2-core CI machine
# runs the suite in about half the time; a file's module fixtures are built once.
PYTEST = $(PY) -m pytest -q -n 2 --dist loadfile --durations=25

test: setup
	$(PYTEST) tests

test-fast: setup
	$(PYTEST) -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.sampling
