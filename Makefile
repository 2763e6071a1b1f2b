# atom-fabric: `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
ATOM_BIN := $(CURDIR)/target/debug/atom
export CARGO_TERM_COLOR := never

.PHONY: demo test test-rust test-python python-dev lint fmt venv bench bench-quick build clean

## demo: build the CLI and run the demo scenario.
demo:
	$(CARGO) build --release -p atom-examples --bin atom
	./target/release/atom demo

# Suites with their own setup (C++, PostgreSQL) live in mk/*.mk and add themselves to EXTRA_TESTS.
EXTRA_TESTS :=
-include $(sort $(wildcard mk/*.mk))

## test: formatting, lints, Rust tests, the Python tests, then the suites of mk/*.mk.
test: lint test-rust test-python $(EXTRA_TESTS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -q --workspace --no-deps

# The Python extension is a cdylib for CPython: it is built and tested by maturin and pytest below.
test-rust:
	$(CARGO) test --workspace --exclude atom-fabric-py

# The test venv holds the independent reference implementations the interop tests compare with.
$(VENV)/.installed: requirements-test.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -q --upgrade pip
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -q -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

# The package is built into the test venv by maturin (debug profile, sharing target/ with cargo).
python-dev: venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/maturin develop -q -m bindings-python/Cargo.toml

test-python: venv python-dev
	$(CARGO) build -p atom-examples --bin atom
	ATOM_BIN=$(ATOM_BIN) $(VPY) -m pytest -q tests/interop tests/infra bindings-python/tests
	# The documents name these files test_H.2_end2end.py: importable only in importlib mode.
	ATOM_BIN=$(ATOM_BIN) $(VPY) -m pytest -q --import-mode=importlib tests/integration
	cd bindings-python && ../$(VPY) -m mypy.stubtest atom_fabric --allowlist stubtest-allowlist.txt --mypy-config-file mypy.ini
	# `pip install ./bindings-python` as a user runs it (PEP 517: maturin in an isolated build env)
	# into a fresh venv, then used from there. The dev profile reuses the debug build above; a plain
	# `pip install` builds the same package in release.
	rm -rf target/pip-venv && $(PYTHON) -m venv target/pip-venv
	MATURIN_PEP517_ARGS="--profile dev" target/pip-venv/bin/pip install --disable-pip-version-check --progress-bar off -q ./bindings-python
	cd target && pip-venv/bin/python -c "import atom_fabric, numpy as np; from atom_fabric import quantum; \
	  sv = quantum.simulate(quantum.Circuit(2).h(0).cx(0, 1)).statevector; \
	  assert atom_fabric.__file__.startswith('$(CURDIR)/target/pip-venv/'), atom_fabric.__file__; \
	  assert np.allclose(np.abs(sv) ** 2, [0.5, 0, 0, 0.5]), sv"

## bench: every benchmark (criterion, one-shot benches, side by side with peers) -> docs/benchmarks.md.
bench:
	$(PYTHON) benches/report.py

## bench-quick: the same pipeline with shortened runs (does not make publishable figures).
bench-quick:
	$(PYTHON) benches/report.py --quick

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
