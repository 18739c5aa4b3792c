"""Fixtures for the local-instance tests: a sandbox runner in each mode."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.instances.sandbox import SandboxMode, SandboxRunner
from tests.policies.instances.sandbox_helpers import require_bwrap


@pytest.fixture(scope="session")
def unsandboxed_tmp() -> Iterator[Path]:
    """Where mode ``none`` puts the instances' /tmp in these tests (not the host's
    shared /var/tmp/execgate-instances); removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="execgate-instances-", dir="/var/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(
    params=[
        pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
        pytest.param("subprocess", id="subprocess"),
    ]
)
async def runner(request: pytest.FixtureRequest, unsandboxed_tmp: Path) -> SandboxRunner:
    """A probed runner: real bubblewrap, then the unsandboxed fallback."""
    mode: SandboxMode = request.param
    if mode == "bwrap":
        require_bwrap()
    sandbox_runner = SandboxRunner(mode, unsandboxed_tmp=unsandboxed_tmp)
    await sandbox_runner.probe()
    return sandbox_runner


@pytest.fixture
async def bwrap_runner() -> SandboxRunner:
    """A probed bubblewrap runner, for what only a sandbox guarantees."""
    require_bwrap()
    sandbox_runner = SandboxRunner("bwrap")
    await sandbox_runner.probe()
    return sandbox_runner
