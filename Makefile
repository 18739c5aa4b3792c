# ExecGate. `make run` starts it with embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
SYNC_STAMP := $(VENV)/.synced

OIDC_TEST_DIR := tests/console/oidc

.PHONY: run test check lint typecheck bench clean tools test-deps haproxy compile

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(SYNC_STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(SYNC_STAMP)

# Every installed module compiled to bytecode once. Where PYTHONDONTWRITEBYTECODE is set
# (CI images often set it) nothing is cached otherwise, and each `execgate` process
# compiles every module it imports again: two thirds of the time `execgate serve`
# takes to start, and of what an end-to-end test spends in the CLIs it runs.
COMPILED_STAMP := $(VENV)/.compiled

$(COMPILED_STAMP): $(SYNC_STAMP)
	-$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib >/dev/null
	@touch $(COMPILED_STAMP)

# ExecGate's own modules, again whenever they may have changed.
compile: $(COMPILED_STAMP)
	@$(VENV)/bin/python -m compileall -q -j 0 server policies bot migrations bench tests >/dev/null

# bubblewrap, tcpdump and py-spy for local instances: installed when root or sudo can,
# otherwise `make` stops with the command to run.
tools: $(SYNC_STAMP)
	@.ci/tools $(VENV)

run: tools compile
	$(VENV)/bin/execgate serve

# The multi-replica tests run two replicas behind a real haproxy.
haproxy:
	@command -v haproxy >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; \
	  else echo "haproxy is missing; run: sudo apt-get install -y haproxy" >&2; exit 1; fi; }

# The console's browser tests drive the system's Chromium (never Playwright's download)
# and sign in through a real OpenID provider from npm. As root, install what is missing;
# otherwise stop with the command that does.
test-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Chromium is missing: run \`sudo apt-get install -y chromium\`" >&2; exit 1; fi; \
	fi
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else echo "Node.js is missing: run \`sudo apt-get install -y nodejs npm\`" >&2; exit 1; fi; \
	fi
	@[ -d $(OIDC_TEST_DIR)/node_modules/oidc-provider ] || npm ci --prefix $(OIDC_TEST_DIR) --no-audit --no-fund

# Test processes run in parallel (pytest-xdist), a module per worker so module-scoped
# servers start once; `make test PYTEST_WORKERS=0` runs in one process. Three on two
# cores: much of a worker's time is spent waiting (server starts, grace periods, flushes).
PYTEST_WORKERS ?= 3

test: tools test-deps haproxy compile
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadscope

lint: $(SYNC_STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(SYNC_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: tools compile
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .uv .execgate .mypy_cache .ruff_cache .pytest_cache
