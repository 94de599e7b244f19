# Two commands do everything on a fresh machine: `make run` (the app) and `make test` (the tests).
# Both create .venv on first use. torch is pinned: a bare `torch` pulls a multi-GB CUDA build on
# machines without a GPU; on a machine with one, PyPI serves the CUDA build of the same version.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: run test lint bench clean bundle bundle-test

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/bvae-desktop

test: $(VENV)/.installed
	$(VENV)/bin/ruff check bvae_desktop tests benchmarks
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# The Linux app (dist/bvae-desktop/) and its installable tarball (dist/bvae-desktop-VERSION-linux-ARCH.tar.gz);
# Windows and macOS: packaging/README.md. bundle-test installs the tarball in a temp prefix, runs the installed
# app's --self-test and uninstalls it.
$(VENV)/.bundle-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bundle]'
	touch $@

bundle: $(VENV)/.bundle-installed
	PY=$(PY) bash packaging/linux/build.sh

bundle-test:
	bash packaging/linux/test_install.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
