# Two commands do all set-up on a fresh machine:
#   make demo   - CT reconstruction of a sample sinogram with NestNet (PSNR against FBP, PNG)
#   make test   - ruff + the whole test suite (GUI tests under Xvfb)
# Both create or reuse .venv and install what they need.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install system-deps bench bench-speed clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU wheel that lies on this machine's disk: an open range would pull
# a multi-GB CUDA build. Users on GPUs install their own CUDA torch before `pip install`.
$(STAMP): $(PY) pyproject.toml napari.yaml scripts/hatch_build.py
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	$(PY) -m reconstruct.cli demo --out demo_output

test: install system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

# The quick-protocol tables of benchmarks/RESULTS.md (~40 min on 2 cores); bench-speed: the speed and
# memory section (~30 min). Each writes its JSON under benchmarks/results and regenerates the report.
bench: install
	$(PY) benchmarks/run.py --protocol quick --task all --seeds 3 --sweep-lr --ablation all --jobs 2

bench-speed: install
	$(PY) benchmarks/bench_activation.py --device cpu
	$(PY) benchmarks/bench_models.py --threads 2
	$(PY) benchmarks/bench_scaling.py
	$(PY) benchmarks/run.py --report

clean:
	rm -rf $(VENV) build dist *.egg-info demo_output
