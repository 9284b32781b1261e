# openmm-hybrid: the two commands of the README, and helpers.
#   make demo   set up .venv/, build, run the main job (a short ML/MM simulation)
#   make test   set up .venv/, build, run the C++ (ctest) and Python (pytest) tests, then again on
#               torch's scalar CPU kernels
#   make lock   refresh requirements.lock (every package pinned) from requirements.in
#   make jnk1   set up .venv/, build, prepare a protein PDB + ligand SDF (JNK1) and run it
#   make bench  set up .venv/, build, run the CPU benchmarks
#   make gpu    on a machine with an NVIDIA GPU and a CUDA torch: build, GPU tests, GPU benchmark (.ci/gpu)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
# Every package the environment holds, pinned (requirements.lock, made from requirements.in by
# `make lock`).  The plugin is ABI-bound to the OpenMM and torch pinned there: change them in
# requirements.in, then `make clean lock test`.
LOCK := requirements.lock

.PHONY: demo test test-cpu-default bench build clean lock free-energy mts-drift embedding gpu jnk1

# --no-deps: the lock already holds every package, and two of them declare dependencies this
# environment excludes on purpose (requirements.in says which and why).
$(VENV)/.deps-installed: $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r $(LOCK)
	touch $@

# Refresh requirements.lock: the newest versions requirements.in allows, in a fresh environment
# (the local version label, e.g. torch's +cpu, is dropped so that any build of that version fits).
# Then run `make test` and commit the lock with the code it passed with.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.in
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	{ echo "# Made by 'make lock' from requirements.in on $$(date -u +%Y-%m-%d) (Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())')): do not edit."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude pip --disable-pip-version-check | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv

# The build, then the weights that no package of the lock ships: ANI-1ccx ('ani1ccx'), extracted
# from the torchani 2.0 wheel into .venv/share/openmmhybrid/weights (or $OPENMMHYBRID_WEIGHTS);
# a 22 MB download the first time, nothing once it is there (python/fetch_ani_weights.py).
build: $(VENV)/.deps-installed
	OPENMMHYBRID_BUILD_DIR=$(BUILD) OPENMMHYBRID_BUILD_TESTS=ON \
	    $(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps .
	$(PY) python/fetch_ani_weights.py

# The tests twice: on the kernels torch picks for this CPU, then on its scalar kernels
# (ATEN_CPU_CAPABILITY=default), so that a tolerance that holds on one processor only fails here.
test: build
	cd $(BUILD) && $(CURDIR)/$(VENV)/bin/ctest --output-on-failure
	$(PY) -m pytest tests/python
	$(MAKE) --no-print-directory test-cpu-default

test-cpu-default: build
	@echo "== the tests again, torch on its scalar CPU kernels (ATEN_CPU_CAPABILITY=default) =="
	cd $(BUILD) && ATEN_CPU_CAPABILITY=default $(CURDIR)/$(VENV)/bin/ctest --output-on-failure
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest tests/python

# The main job: ANI-1x p-xylene in T4 lysozyme L99A in water (about 6 min on 2 cores after the build)
demo: build
	$(VENV)/bin/openmm-hybrid run examples/configs/t4l_pxylene.toml

# From a protein PDB and a ligand SDF: prepare JNK1 + ligand 18624-1 (PDBFixer, GAFF2/AM1-BCC,
# water, equilibration) into prepared-system/, then run it with the ligand in ANI-1x (jnk1-output/)
jnk1: build
	$(VENV)/bin/openmm-hybrid run examples/configs/jnk1_ligand.toml

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

# MM -> ML/MM (ANI-1x) correction to the binding free energy of p-xylene to T4L L99A, MBAR, with
# the quick protocol (NOT converged; about 4 min on 2 cores; docs/free_energy.md) -> fe-t4l-pxylene-binding/
free-energy: build
	$(VENV)/bin/openmm-hybrid fe examples/configs/fe_t4l_pxylene_binding.toml --quick

# The CUDA platform's tests and benchmark; uses the machine's own python3 and torch, not .venv/
# (see docs/gpu.md).
gpu:
	.ci/gpu

clean:
	rm -rf $(BUILD) *.egg-info
