"""An in-process ExecService on real parts: the audit store on the test database, the
sandbox provider over real local instances, and a policy file."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from policies.audit import SqlAuditStore
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.instances.sandbox_provider import SandboxProvider
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from policies.tracing import NO_TRACING, Tracing
from policies.types import ExecRequest, Principal, PrincipalKind, Surface, Target
from tests.support.fchost import FakeClock

HERE = Path(__file__).resolve().parent


@dataclass
class Rig:
    service: ExecService
    store: SqlAuditStore
    manager: InstanceManager
    holder: PolicyHolder
    policy_path: Path
    target: Target
    data_dir: Path
    clock: FakeClock

    def state_tmp(self) -> Path:
        return self.data_dir / "instances" / self.target.function / self.target.instance / "tmp"

    def request(
        self,
        command: str | None = None,
        *,
        argv: tuple[str, ...] | None = None,
        who: str = "local:alice",
        **extra: object,
    ) -> ExecRequest:
        return ExecRequest(
            principal=Principal.parse(who),
            surface=Surface.CLI,
            target=self.target,
            argv=argv,
            command_text=command,
            **extra,  # type: ignore[arg-type]
        )


def local(name: str) -> Principal:
    return Principal(PrincipalKind.LOCAL, name)


@pytest.fixture
def tracing() -> Tracing:
    """The service's tracing (off; a module traces by overriding this fixture)."""
    return NO_TRACING


@pytest.fixture
async def rig(tmp_path: Path, audit_store: SqlAuditStore, tracing: Tracing) -> AsyncIterator[Rig]:
    policy_path = tmp_path / "policy.yaml"
    shutil.copy(HERE / "policy.yaml", policy_path)
    holder = PolicyHolder(policy_path)
    clock = FakeClock()
    manager = InstanceManager(
        [
            LocalFunction("demo-api", {"APP_ENV": "test"}, provisioned=1),
            LocalFunction("demo-worker", {}, provisioned=0, idle_release_seconds=60.0),
            # Not covered by any target of the policy.
            LocalFunction("billing-api", {}, provisioned=1),
        ],
        SandboxRunner("auto"),
        tmp_path / "data",
        clock=clock,
    )
    await manager.start()
    service = ExecService(
        policies=holder,
        audit=audit_store,
        providers={"local": SandboxProvider("local", manager)},
        default_provider="local",
        tracing=tracing,
    )
    instance = manager.list("demo-api")[0].instance_id
    try:
        yield Rig(
            service,
            audit_store,
            manager,
            holder,
            policy_path,
            Target("demo-api", instance),
            tmp_path / "data",
            clock,
        )
    finally:
        await manager.aclose()
