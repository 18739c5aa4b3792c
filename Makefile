# ExecGate. `make run` starts it with embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
SYNC_STAMP := $(VENV)/.synced

.PHONY: run test check lint typecheck bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(SYNC_STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(SYNC_STAMP)

run: $(SYNC_STAMP)
	$(VENV)/bin/execgate serve

# Test processes run in parallel (pytest-xdist), a module per worker so module-scoped
# servers start once; `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2

test: $(SYNC_STAMP)
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadscope

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
