# Two commands for a fresh machine with only Python 3.10+: `make serve` and `make test`.
# Both create .venv and install what they need on first use: `make serve` the server only,
# `make test` also the test tools and the Python client (and Debian packages, see below).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip's "new version available" notice is noise here.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Options for `advantage-service serve`: make serve ARGS="--port 50052 --rest-port 0".
ARGS ?=
# One stamp per layer, so the server's set-up never installs the test dependencies.
TORCH_STAMP := $(VENV)/.installed-torch
SERVER_STAMP := $(VENV)/.installed-server
DEV_STAMP := $(VENV)/.installed-dev
# torch first and pinned: a bare or open-ended torch requirement pulls a multi-GB CUDA build.
# scripts/install_torch.py keeps a torch already in pyproject's range; otherwise it runs this
# command for the build that fits the machine: CPU without an NVIDIA GPU, CUDA with one, or the
# index in TORCH_INDEX=URL if set. `make torch-plan` prints its choice.
TORCH_INSTALL := $(BIN)/pip install -q torch==2.13.0
# Debian packages the tests need: chromium + chromedriver drive the /debug page test (no browser
# download at test time); the gRPC C++ toolchain builds clients/cpp for its test.
SYSTEM_STAMP := $(VENV)/.system-packages
SYSTEM_PACKAGES := chromium chromium-driver cmake g++ pkg-config libgrpc++-dev libprotobuf-dev \
	protobuf-compiler protobuf-compiler-grpc
# The Go and Java clients' toolchains and Debian's gRPC packages (clients/go, clients/java; their
# tests build them offline from these). golang-github-golang-protobuf-1-5-dev is named because
# golang-google-grpc-dev accepts the old 1-3 API too, which cannot encode today's generated code.
POLYGLOT_STAMP := $(VENV)/.system-packages-polyglot
POLYGLOT_PACKAGES := golang-go golang-google-grpc-dev golang-google-protobuf-dev \
	golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc protobuf-compiler \
	default-jdk-headless libgrpc-java libprotobuf-java protobuf-compiler-grpc-java-plugin \
	libnetty-java libperfmark-java libgoogle-gson-java libgeronimo-annotation-1.3-spec-java \
	libnetty-tcnative-java libnetty-tcnative-jni
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

TS_CLIENT := clients/typescript
# buf from npm (@bufbuild/buf ships the binary), pinned by tools/buf/package-lock.json.
BUF_TOOLS := tools/buf
BUF := $(BUF_TOOLS)/node_modules/.bin/buf

.PHONY: install install-server torch-plan serve test test-python test-typescript lint format \
	proto bench system-packages buf golden

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TORCH_STAMP): scripts/install_torch.py pyproject.toml | $(BIN)/python
	$(BIN)/python scripts/install_torch.py -- $(TORCH_INSTALL)
	touch $@

# The server and its runtime dependencies only.
$(SERVER_STAMP): $(TORCH_STAMP) pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# Everything `make test` needs: the dev/test extras (TorchRL, pytest, ruff, ...), the examples'
# (gymnasium, matplotlib, tqdm) and the client with its TorchRL drop-in.
$(DEV_STAMP): $(SERVER_STAMP) pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install -q -e '.[dev,examples]' -e 'clients/python[torch,torchrl]'
	touch $@

$(SYSTEM_STAMP): | $(BIN)/python
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi
	touch $@

$(POLYGLOT_STAMP): | $(BIN)/python
	@if ! dpkg -s $(POLYGLOT_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(POLYGLOT_PACKAGES); \
	fi
	touch $@

install-server: $(SERVER_STAMP)

install: $(DEV_STAMP)

torch-plan: | $(BIN)/python
	$(BIN)/python scripts/install_torch.py --dry-run -- $(TORCH_INSTALL)

system-packages: $(SYSTEM_STAMP) $(POLYGLOT_STAMP)

# `make serve` also serves the off-policy demo models (demo_sac, demo_ddpg, demo_discrete_sac,
# demo_dqn) and the DreamerV3 one (dreamer-demo); ARGS or the environment can turn them off.
serve: export ADVANTAGE_OFFPOLICY_DEMOS ?= true
serve: export ADVANTAGE_DREAMER_DEMO ?= true
serve: $(SERVER_STAMP)
	$(BIN)/advantage-service serve $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/gen_proto.py --check

test: lint buf test-python test-typescript

$(BUF): $(BUF_TOOLS)/package.json $(BUF_TOOLS)/package-lock.json
	cd $(BUF_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The contract: buf's lint rules (buf.yaml) and no breaking change against the released proto.
buf: $(BUF)
	$(BUF) lint
	$(BUF) breaking --against $(BUF_TOOLS)/released

# Regenerate the golden vectors (proto/testdata/) after a deliberate change; tests/test_golden.py
# fails while they are stale.
golden: $(DEV_STAMP)
	$(BIN)/python -m tests.support.golden

test-python: $(DEV_STAMP) $(SYSTEM_STAMP) $(POLYGLOT_STAMP)
	$(BIN)/python -m pytest

# The TypeScript client's tests start the Python server from .venv (real toolchains on both ends).
test-typescript: $(SERVER_STAMP)
	cd $(TS_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm test

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(DEV_STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/estimators.py
	$(BIN)/python benchmarks/estimators.py --contended
	$(BIN)/python benchmarks/estimators.py --warm
	$(BIN)/python benchmarks/service.py
	$(BIN)/python benchmarks/replicas.py
