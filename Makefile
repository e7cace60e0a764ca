# Two commands for a fresh machine: `make demo` (train on embedded data) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo demo-numpy demo-sweep baselines test test-quick notebooks bench tensorboard clean

# The installer: uv (below) or pip (`make INSTALLER=pip test`).
INSTALLER ?= uv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv, pip-installed into the venv, installs the same packages as `pip install -e '.[dev]'`, faster: it unpacks
# torch's ~5 GB of wheels and byte-compiles in parallel (a fresh clone on the 2-core machine, 2026-11-30: uv 54 s
# with byte-compiling, 19-25 s without; pip 67 s without byte-compiling). It is given the package settings pip has on this machine
# (`pip config list`: index, find-links and constraint lines from pip's config files and PIP_* variables), so
# both take the same releases from the same places. Byte-compiling at install matters where
# PYTHONDONTWRITEBYTECODE is set (as on the development VM): without .pyc files every process compiles torch and
# Lightning again when it imports them (measured: `import lightning_lab.cli` 15-19 s instead of 10-12 s).
define PIP_SETTINGS_AS_UV_OPTIONS
import re, subprocess, sys
flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint"}
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
pairs = re.findall(r"^\S*?\.([a-z-]+)='(.*)'$$", listed, re.M)
options = [f"{flags[key]} {value}" for key, values in pairs if key in flags for value in values.split()]
print(" ".join(dict.fromkeys(options)))  # a setting in a file and in a PIP_* variable: once
endef
export PIP_SETTINGS_AS_UV_OPTIONS

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
ifeq ($(INSTALLER),uv)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match --compile-bytecode \
		$$($(BIN)/python -c "$$PIP_SETTINGS_AS_UV_OPTIONS") -e '.[dev]'
else
	$(BIN)/python -m pip install -q -e '.[dev]'
endif
	touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/python -m lightning_lab fit --config configs/digits.yaml

demo-numpy: venv
	$(BIN)/python -m numpy_core train --dataset moons --model perceptron --epochs 30 --out out/numpy_moons_perceptron
	$(BIN)/python -m numpy_core train --dataset moons --model mlp --hidden 16 16 --epochs 200 --out out/numpy_moons_mlp
	$(BIN)/python -m numpy_core train --dataset digits --model mlp --hidden 64 --epochs 40 --out out/numpy_digits_mlp

# The tiny grid on a local Ray (127.0.0.1 only, one core per run side by side); again = resumes, skips what is done.
demo-sweep: venv
	$(BIN)/python -m lightning_lab sweep --config configs/digits.yaml --grid configs/grids/digits_tiny.yaml
	$(BIN)/python -m lightning_lab report

# The lab's digits config beside logistic regression, an RBF SVC and Keras' mnist_cnn, on one split, the two
# networks once per seed: one table, also written to results/baselines/digits.csv and .md.
baselines: venv
	$(BIN)/python -m lightning_lab baselines --config configs/digits.yaml --seeds 0 1 2 3 4 5 6 7

# Two pytest workers, one test file per worker at a time (a file's shared fixtures are built once), files in the
# order tests/conftest.py gives them (long ones first); xdist's own reorder would sort them by test count.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The tests not marked slow, on two workers too (36-48 s here, 2026-11-30).
test-quick: venv
	$(BIN)/python -m pytest -m "not slow" -n 2

# Re-run the notebooks in place (their outputs are committed) and strip execution counts and timing metadata.
notebooks: venv
	$(BIN)/python notebooks/execute.py

bench: venv
	$(BIN)/python benchmarks/numpy_vs_torch.py
	$(BIN)/python benchmarks/lightning_overhead.py
	$(BIN)/python benchmarks/throughput.py

tensorboard: venv
	$(BIN)/tensorboard --logdir lightning_logs

clean:
	rm -rf lightning_logs results out .pytest_cache
	find checkpoints -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
