# Two commands do all the set-up on a fresh machine:
#   make demo   export the model, encode and compare a few texts (.venv with the export extra)
#   make test   run the test suite, every tier (what .ci/run runs; .venv with every extra)
# Both create .venv on first use. torch==2.13.0 goes in first: on the project's machines it is a
# CPU build on local disk, and the export extra's torch range then pulls nothing more.

PYTHON ?= python3
VENV ?= .venv
# Where torch comes from: PyPI by default. On Linux PyPI's torch is the CUDA build (several GB):
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU build from PyTorch's index.
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: setup demo test lint clean browser

# The JavaScript tiers: Node's packages from tests/js's lockfile (onnxruntime-node's CUDA download
# skipped: its CPU binaries ship in the package), and Chromium with its driver for the browser
# test, from Debian's packages where apt-get can install them. Where they cannot be had, those
# tests say so and are skipped.
browser:
	@if command -v npm >/dev/null; then ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --prefix tests/js --no-audit --no-fund --silent; else echo "npm not found: the Node.js tests will be skipped"; fi
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		(command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null) \
		|| echo "chromium not installed: the browser test will be skipped"; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(TORCH_FROM)
	$(PY) -m pip install --quiet -e '.[export,server,files,pandas,ray,langchain,llama-index,chroma,otel,openvino,docs,dev]'
	touch $(STAMP) $(DEMO_STAMP)

# The demo needs only the export extra and the stand-in weights (~1.5 GB with torch, a few minutes
# the first time); `make test` adds every other extra to the same .venv.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(TORCH_FROM)
	$(PY) -m pip install --quiet -e '.[export,stand-in]'
	touch $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(PY) export/demo.py

test: $(STAMP) browser
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check gist_onnx export tests benchmarks
	$(VENV)/bin/ruff format --check gist_onnx export tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .ruff_cache
