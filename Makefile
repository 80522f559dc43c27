# The two commands a newcomer runs: `make demo` and `make test`. Both set everything up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test setup lint bench install check-aarch64 clean

demo: setup
	$(VENV)/bin/edged demo

test: setup lint
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check edged tests benchmarks scripts
	$(VENV)/bin/ruff format --check edged tests benchmarks scripts

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	scripts/setup-system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,plot]'
	touch $@

bench: setup
	$(PY) benchmarks/frame_loop.py

# edged as a system service (user, /opt/edged, /etc/edged, the unit); see the README
install:
	scripts/install.sh

# every runtime dependency has a binary wheel for Pi OS 64-bit (aarch64, glibc 2.36, cp311)
check-aarch64: setup
	scripts/check-aarch64-wheels.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
