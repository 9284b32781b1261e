# openmm-hybrid: the two commands of the README, and helpers.
#   make demo   set up .venv/, build, run the main job (a short ML/MM simulation)
#   make test   set up .venv/, build, run the C++ (ctest) and Python (pytest) tests
#   make bench  set up .venv/, build, run the CPU benchmarks
#   make gpu    on a machine with an NVIDIA GPU and a CUDA torch: build, GPU tests, GPU benchmark (.ci/gpu)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
# The plugin is ABI-bound to these: change them together and rebuild (make clean).
DEPS := "torch==2.13.0" "openmm==8.6.*" "numpy" "pybind11>=2.12" "swig>=4.4" "cmake>=3.21" "ninja" \
        "setuptools>=64,<81" "wheel" "pytest" \
        "torchani==2.2.4" "importlib_metadata" "lark" "mdtraj" "parmed" "pymbar>=4" "openmmml==1.8" "matplotlib"
# torchani 2.2.4 carries the ANI-1x weights (the 'ani1x' model); it needs setuptools<81, importlib_metadata
# and lark.  mdtraj: selection strings.  parmed, openmmml: independent references in the tests.
# pymbar, matplotlib: the free-energy example.

.PHONY: demo test bench build clean free-energy mts-drift embedding gpu

$(VENV)/.deps-installed: Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(DEPS)
	touch $@

build: $(VENV)/.deps-installed
	OPENMMHYBRID_BUILD_DIR=$(BUILD) OPENMMHYBRID_BUILD_TESTS=ON \
	    $(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps .

test: build
	cd $(BUILD) && $(CURDIR)/$(VENV)/bin/ctest --output-on-failure
	$(PY) -m pytest tests/python

# The main job: ANI-1x p-xylene in T4 lysozyme L99A in water (about 6 min on 2 cores after the build)
demo: build
	$(VENV)/bin/openmm-hybrid run examples/configs/t4l_pxylene.toml

bench: build
	$(PY) benchmarks/bench_mlforce_overhead.py
	$(PY) benchmarks/bench_ani1x.py
	$(PY) benchmarks/bench_mts.py
	$(PY) benchmarks/bench_embedding.py

# NVE energy drift against the outer step, with a figure (about 10 min, 2 cores)
mts-drift: build
	$(PY) benchmarks/bench_mts_drift.py --plot docs/mts_drift.png

# p-xylene with ANI-1x and electrostatic embedding in water and in the T4L pocket (about 3 min)
embedding: build
	$(PY) examples/embedding_pxylene.py --steps 500 --interval 25 --out embedding-output \
	    --markdown docs/embedding_demo.md --plot docs/embedding.png

# MM -> ML/MM (ANI-1x) correction to p-xylene's hydration free energy, MBAR (about 20 min, 2 cores)
free-energy: build
	$(PY) examples/free_energy_pxylene.py --out fe-output

# The CUDA platform's tests and benchmark; uses the machine's own python3 and torch, not .venv/
# (see docs/gpu.md).
gpu:
	.ci/gpu

clean:
	rm -rf $(BUILD) *.egg-info
