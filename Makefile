# ExecGate. `make run` starts it with embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
SYNC_STAMP := $(VENV)/.synced

.PHONY: run test check lint typecheck bench clean tools

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(SYNC_STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(SYNC_STAMP)

# bubblewrap, tcpdump and py-spy for local instances: installed when root or sudo can,
# otherwise `make` stops with the command to run.
tools: $(SYNC_STAMP)
	@.ci/tools $(VENV)

run: tools
	$(VENV)/bin/execgate serve

test: tools
	$(VENV)/bin/pytest -q

lint: $(SYNC_STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(SYNC_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: tools
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .uv .execgate .mypy_cache .ruff_cache .pytest_cache
