# ExecGate. `make run` starts it with embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
SYNC_STAMP := $(VENV)/.synced

.PHONY: run test check lint typecheck bench clean haproxy

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(SYNC_STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(SYNC_STAMP)

run: $(SYNC_STAMP)
	$(VENV)/bin/execgate serve

# The multi-replica tests run two replicas behind a real haproxy.
haproxy:
	@command -v haproxy >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; \
	  else echo "haproxy is missing; run: sudo apt-get install -y haproxy" >&2; exit 1; fi; }

test: $(SYNC_STAMP) haproxy
	$(VENV)/bin/pytest -q

lint: $(SYNC_STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(SYNC_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(SYNC_STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .uv .execgate .mypy_cache .ruff_cache .pytest_cache
