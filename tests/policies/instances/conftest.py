"""Fixtures for the local-instance tests: a sandbox runner in each mode."""

from __future__ import annotations

import pytest

from policies.instances.sandbox import SandboxMode, SandboxRunner
from tests.policies.instances.sandbox_helpers import require_bwrap


@pytest.fixture(
    params=[
        pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
        pytest.param("subprocess", id="subprocess"),
    ]
)
async def runner(request: pytest.FixtureRequest) -> SandboxRunner:
    """A probed runner: real bubblewrap, then the unsandboxed fallback."""
    mode: SandboxMode = request.param
    if mode == "bwrap":
        require_bwrap()
    sandbox_runner = SandboxRunner(mode)
    await sandbox_runner.probe()
    return sandbox_runner


@pytest.fixture
async def bwrap_runner() -> SandboxRunner:
    """A probed bubblewrap runner, for what only a sandbox guarantees."""
    require_bwrap()
    sandbox_runner = SandboxRunner("bwrap")
    await sandbox_runner.probe()
    return sandbox_runner
