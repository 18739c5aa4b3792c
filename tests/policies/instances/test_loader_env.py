"""A function's environment reaches its commands, never the host-side processes that
start or enter the instance as ExecGate's user: loader variables there (LD_PRELOAD,
LD_LIBRARY_PATH, LD_DEBUG_OUTPUT, GLIBC_TUNABLES...) name host paths and would run
code or write files on the host."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest

from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxMode, SandboxRunner
from policies.types import Limits
from tests.policies.instances.sandbox_helpers import Output, require_bwrap
from tests.support.fchost import FakeClock

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)


@pytest.mark.parametrize(
    "mode", [pytest.param("bwrap", marks=pytest.mark.bwrap), "none"], ids=["bwrap", "none"]
)
async def test_loader_variables_of_a_function_touch_no_host_side_process(
    mode: SandboxMode, tmp_path: Path, unsandboxed_tmp: Path
) -> None:
    if mode == "bwrap":
        require_bwrap()
    # Only ExecGate's user can write here: a file appearing means a process running as
    # that user on the host obeyed the function's loader variables.
    host_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    host_dir.chmod(0o700)
    env = {"LD_DEBUG": "files", "LD_DEBUG_OUTPUT": str(host_dir / "ld"), "APP_ENV": "demo"}
    command = ("sleep", "infinity") if mode == "bwrap" else ()
    fn = LocalFunction("svc", env=env, provisioned=1, command=command, listens=False)
    runner = SandboxRunner(mode, unsandboxed_tmp=unsandboxed_tmp)
    manager = InstanceManager([fn], runner, tmp_path / "data", clock=FakeClock())
    await manager.start()
    try:
        out = Output()
        with anyio.fail_after(30):
            result = await manager.exec(
                "svc", manager.list("svc")[0].instance_id, ["env"], limits=LIMITS, on_output=out
            )
    finally:
        await manager.aclose()
    assert result.exit_code == 0, out.text("stderr")
    seen = out.text("stdout").splitlines()
    # The command itself still has the function's variables, loader ones included.
    assert "APP_ENV=demo" in seen and f"LD_DEBUG_OUTPUT={host_dir / 'ld'}" in seen
    assert list(host_dir.iterdir()) == []
