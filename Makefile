# Two commands for a fresh machine with only Python 3.10+: `make serve` and `make test`.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests need: chromium + chromedriver drive the /debug page test (no browser
# download at test time); the gRPC C++ toolchain builds clients/cpp for its test.
SYSTEM_STAMP := $(VENV)/.system-packages
SYSTEM_PACKAGES := chromium chromium-driver cmake g++ pkg-config libgrpc++-dev libprotobuf-dev \
	protobuf-compiler protobuf-compiler-grpc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

TS_CLIENT := clients/typescript

.PHONY: install serve test test-python test-typescript lint format proto bench system-packages

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare or open-ended torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]' -e 'clients/python[torch]'
	touch $@

$(SYSTEM_STAMP): | $(STAMP)
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi
	touch $@

install: $(STAMP)

system-packages: $(SYSTEM_STAMP)

serve: $(STAMP)
	$(BIN)/advantage-service serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/gen_proto.py --check

test: lint test-python test-typescript

test-python: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/python -m pytest

# The TypeScript client's tests start the Python server from .venv (real toolchains on both ends).
test-typescript: $(STAMP)
	cd $(TS_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm test

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: $(STAMP)
	$(BIN)/python benchmarks/estimators.py
	$(BIN)/python benchmarks/service.py
