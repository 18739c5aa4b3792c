"""An in-process ExecService with a local artifact store, over real local instances."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from policies.artifacts.local import LocalArtifactStore
from policies.audit import SqlAuditStore
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.instances.sandbox_provider import SandboxProvider
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from policies.types import Principal, Target

POLICY = """
version: 1
roles:
  ops: { local_users: [alice, bob] }
  approvers: { local_users: [bob] }
targets:
  demo: { functions: ["demo-*"] }
defaults: { timeout: 30s, idle_timeout: 30s, max_output: 1MiB, rate: 1000/min }
rules:
  - id: no-secrets
    effect: deny
    who: ["*"]
    where: ["*"]
    commands: [[cat, "{f:path(/tmp/secret/**)}"]]
  - id: demo-files
    effect: allow
    who: [ops]
    where: [demo]
    commands:
      - [head, -n, "{n:int(1..100000)}", "{f:path(/tmp/**)}"]
    limits: { max_output: 1MiB }
    collect: ["/tmp/*.cap", "/tmp/caps/**", "/tmp/secret/**"]
  - id: dumps
    effect: approve
    who: [ops]
    where: [demo]
    commands: [[stat, "{f:path(/tmp/*.hprof)}"]]
    approval: { approvers: [approvers], threshold: 1, ttl: 15m }
    collect: ["/tmp/*.hprof"]
"""


@dataclass
class CollectRig:
    service: ExecService
    store: LocalArtifactStore
    audit: SqlAuditStore
    holder: PolicyHolder
    policy_path: Path
    target: Target
    tmp: Path  # the instance's /tmp on the host
    spill_dir: Path

    def fetch(self, link: str) -> bytes:
        return self.store.resolve(link.rsplit("/", 1)[1]).path.read_bytes()

    def stored_objects(self) -> list[Path]:
        root = self.store.root / "objects"
        return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


ALICE = Principal.parse("local:alice")
BOB = Principal.parse("local:bob")


@pytest.fixture
async def collect_rig(tmp_path: Path, audit_store: SqlAuditStore) -> AsyncIterator[CollectRig]:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(POLICY)
    holder = PolicyHolder(policy_path)
    data = tmp_path / "data"
    manager = InstanceManager(
        [LocalFunction("demo-api", {"APP_ENV": "test"}, provisioned=1)],
        SandboxRunner("auto"),
        data,
    )
    await manager.start()
    store = LocalArtifactStore(
        tmp_path / "artifacts", signing_key=b"s" * 32, base_url=lambda: "http://127.0.0.1:1"
    )
    spill = tmp_path / "spill"
    service = ExecService(
        policies=holder,
        audit=audit_store,
        providers={"local": SandboxProvider("local", manager)},
        default_provider="local",
        spill_dir=spill,
        artifacts=store,
    )
    instance = manager.list("demo-api")[0].instance_id
    try:
        yield CollectRig(
            service,
            store,
            audit_store,
            holder,
            policy_path,
            Target("demo-api", instance),
            data / "instances" / "demo-api" / instance / "tmp",
            spill,
        )
    finally:
        await manager.aclose()
