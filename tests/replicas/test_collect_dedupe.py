"""A Slack delivery of `/exec collect` retried onto another replica (another ExecService
on the same database) fetches nothing a second time."""

from __future__ import annotations

from policies.audit import SqlAuditStore
from policies.errors import ErrorCode
from policies.ports import AuditFilter, ExecStatus
from policies.service.core import ExecService
from policies.types import Surface
from tests.policies.artifacts.service_rig import ALICE, CollectRig, collect_rig

__all__ = ["collect_rig"]

KEY = "slack:cmd:trigger-1234"


async def test_a_collect_retried_on_another_replica_fetches_nothing_again(
    collect_rig: CollectRig, other_store: SqlAuditStore
) -> None:
    (collect_rig.tmp / "trace.cap").write_bytes(b"capture")
    other_replica = ExecService(
        policies=collect_rig.holder,
        audit=other_store,
        providers={"local": collect_rig.service._pipeline.provider("local")},
        default_provider="local",
        spill_dir=collect_rig.spill_dir,
        artifacts=collect_rig.store,
    )

    first = await collect_rig.service.collect(
        ALICE, Surface.SLACK, collect_rig.target, "/tmp/trace.cap", request_key=KEY
    )
    retried = await other_replica.collect(
        ALICE, Surface.SLACK, collect_rig.target, "/tmp/trace.cap", request_key=KEY
    )

    assert first.ok and first.status is ExecStatus.COMPLETED
    assert retried.error_code == ErrorCode.DUPLICATE
    assert retried.audit_id == first.audit_id
    assert retried.link is None
    assert len(collect_rig.stored_objects()) == 1
    records = await other_store.list_execs(AuditFilter(principal=str(ALICE)))
    assert [r.audit_id for r in records] == [first.audit_id]
