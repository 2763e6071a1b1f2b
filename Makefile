# atom-fabric: `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
ATOM_BIN := $(CURDIR)/target/debug/atom
export CARGO_TERM_COLOR := never

.PHONY: demo test test-rust test-python python-dev lint fmt venv bench build clean

## demo: build the CLI and run the demo scenario.
demo:
	$(CARGO) build --release -p atom-examples --bin atom
	./target/release/atom demo

## test: formatting, lints, Rust tests, then the Python interop tests.
test: lint test-rust test-python

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

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
	ATOM_BIN=$(ATOM_BIN) $(VPY) -m pytest -q tests/interop bindings-python/tests
	cd bindings-python && ../$(VPY) -m mypy.stubtest atom_fabric --allowlist stubtest-allowlist.txt --mypy-config-file mypy.ini

## bench: criterion benches (short) and the side-by-side scripts.
bench:
	$(CARGO) bench -p atom-benches

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
