"""Fixtures for the local-instance tests: a sandbox runner in each mode."""

from __future__ import annotations

import pytest

from policies.instances.sandbox import SandboxMode, SandboxRunner
from tests.policies.instances.sandbox_helpers import bwrap_unusable_reason


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
        reason = bwrap_unusable_reason()
        if reason is not None:
            pytest.skip(reason)
    sandbox_runner = SandboxRunner(mode)
    await sandbox_runner.probe()
    return sandbox_runner


@pytest.fixture
async def bwrap_runner() -> SandboxRunner:
    """A probed bubblewrap runner, for what only a sandbox guarantees."""
    reason = bwrap_unusable_reason()
    if reason is not None:
        pytest.skip(reason)
    sandbox_runner = SandboxRunner("bwrap")
    await sandbox_runner.probe()
    return sandbox_runner
