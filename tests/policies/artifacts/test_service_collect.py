"""ExecService.collect and large output, end to end in-process: real sandboxed instances,
the real audit store, the local artifact store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policies.errors import ArtifactError
from policies.ports import ExecStatus
from policies.service.core import ExecService
from policies.types import AuditId, Effect, ExecRequest, Surface
from tests.policies.artifacts.service_rig import ALICE, BOB, CollectRig, collect_rig
from tests.policies.artifacts.support import sha256

__all__ = ["collect_rig"]


def _touch(path: Path) -> Path:
    path.touch()
    return path


async def test_collect_stores_the_file_and_records_its_digest(collect_rig: CollectRig) -> None:
    data = os.urandom(3 * 1024 * 100 + 5)
    (collect_rig.tmp / "trace.cap").write_bytes(data)
    result = await collect_rig.service.collect(
        ALICE, Surface.CLI, collect_rig.target, "/tmp/trace.cap", reason="latency spike"
    )
    assert result.ok, result.error
    assert (result.effect, result.rule, result.status) == (
        Effect.ALLOW,
        "demo-files",
        ExecStatus.COMPLETED,
    )
    assert result.artifact is not None and result.link is not None
    assert (result.artifact.size, result.artifact.sha256) == (len(data), sha256(data))
    assert collect_rig.fetch(result.link) == data
    assert result.audit_id is not None
    record = await collect_rig.audit.get_exec(result.audit_id)
    assert record.intent.argv == ("execgate-collect", "/tmp/trace.cap")
    assert record.intent.reason == "latency spike"
    assert record.outcome is not None
    assert record.outcome.artifacts == (result.artifact,)
    assert record.outcome.artifact_keys == (result.artifact.key,)
    assert result.artifact.key.endswith(f"/{result.audit_id}/files/trace.cap")


async def test_a_symlink_inside_the_allowed_tree_is_followed(collect_rig: CollectRig) -> None:
    (collect_rig.tmp / "caps").mkdir()
    (collect_rig.tmp / "caps" / "real.bin").write_bytes(b"capture bytes")
    (collect_rig.tmp / "latest.cap").symlink_to("/tmp/caps/real.bin")
    result = await collect_rig.service.collect(
        ALICE, Surface.CLI, collect_rig.target, "/tmp/latest.cap"
    )
    assert result.ok, result.error
    assert result.resolved_path == "/tmp/caps/real.bin"
    assert result.link is not None and collect_rig.fetch(result.link) == b"capture bytes"


@pytest.mark.parametrize(
    ("setup", "path", "code"),
    [
        pytest.param(
            lambda t: (t / "etc.cap").symlink_to("/etc/hostname"),
            "/tmp/etc.cap",
            "symlink_escape",
            id="symlink-out-of-tree",
        ),
        pytest.param(
            lambda t: (t / "dump.cap").symlink_to("/tmp/x.hprof"),
            "/tmp/dump.cap",
            "symlink_escape",
            id="symlink-to-a-file-of-another-rule",
        ),
        pytest.param(
            lambda t: os.mkfifo(t / "pipe.cap"), "/tmp/pipe.cap", "not_regular", id="fifo"
        ),
        pytest.param(
            lambda t: (t / "dir.cap").mkdir(), "/tmp/dir.cap", "not_regular", id="directory"
        ),
        pytest.param(lambda t: None, "/tmp/missing.cap", "not_found", id="missing"),
        pytest.param(
            lambda t: os.truncate(_touch(t / "big.cap"), 2 << 20),
            "/tmp/big.cap",
            "too_large",
            id="over-the-cap",
        ),
    ],
)
async def test_refusals_on_the_instance_store_nothing(
    collect_rig: CollectRig, setup: object, path: str, code: str
) -> None:
    (collect_rig.tmp / "x.hprof").write_bytes(b"heap")
    assert callable(setup)
    setup(collect_rig.tmp)
    result = await collect_rig.service.collect(ALICE, Surface.CLI, collect_rig.target, path)
    assert result.error_code == code
    assert result.link is None and result.artifact is None
    assert collect_rig.stored_objects() == []
    assert result.audit_id is not None
    outcome = (await collect_rig.audit.get_exec(result.audit_id)).outcome
    assert outcome is not None and outcome.error == code and outcome.artifacts == ()


@pytest.mark.parametrize(
    ("path", "code", "rule"),
    [
        pytest.param("/tmp/../etc/shadow", "path_traversal", "collect-path", id="traversal"),
        pytest.param("tmp/x.cap", "bad_path", "collect-path", id="relative"),
        pytest.param("/etc/passwd", "denied", None, id="no-rule"),
        pytest.param("/tmp/secret/key.pem", "denied", "no-secrets", id="deny-rule"),
    ],
)
async def test_denied_paths_are_recorded_and_nothing_runs(
    collect_rig: CollectRig, path: str, code: str, rule: str | None
) -> None:
    result = await collect_rig.service.collect(ALICE, Surface.MCP, collect_rig.target, path)
    assert (result.effect, result.error_code, result.rule) == (Effect.DENY, code, rule)
    assert result.audit_id is not None
    record = await collect_rig.audit.get_exec(result.audit_id)
    assert record.intent.status is ExecStatus.DENIED
    assert record.intent.surface == "mcp"


async def test_an_approved_collect_runs_on_the_vote_and_links_the_file(
    collect_rig: CollectRig,
) -> None:
    (collect_rig.tmp / "heap.hprof").write_bytes(b"heap dump")
    asked = await collect_rig.service.collect(
        ALICE,
        Surface.SLACK,
        collect_rig.target,
        "/tmp/heap.hprof",
        context=(("channel", "C1"),),
    )
    assert (asked.effect, asked.rule) == (Effect.APPROVE, "dumps")
    assert asked.approval_id is not None and asked.link is None
    approval = await collect_rig.service.get_approval(asked.approval_id, ALICE)
    assert approval.argv == ("execgate-collect", "/tmp/heap.hprof")
    assert approval.context == {"channel": "C1"}
    vote = await collect_rig.service.vote(asked.approval_id, BOB, approve=True)
    assert vote.result is not None
    assert vote.result.exit_code == 0
    assert collect_rig.fetch(vote.result.links["artifact"]) == b"heap dump"
    _, later = await collect_rig.service.approval_result(asked.approval_id, ALICE)
    assert later is not None and collect_rig.fetch(later.links["artifact"]) == b"heap dump"
    record = await collect_rig.audit.get_exec(asked.audit_id or AuditId(""))
    assert record.outcome is not None and record.outcome.approvers == ("local:bob",)
    assert record.outcome.artifacts[0].sha256 == sha256(b"heap dump")


async def test_a_policy_change_before_the_vote_fetches_nothing(collect_rig: CollectRig) -> None:
    (collect_rig.tmp / "heap.hprof").write_bytes(b"heap dump")
    asked = await collect_rig.service.collect(
        ALICE, Surface.CLI, collect_rig.target, "/tmp/heap.hprof"
    )
    assert asked.approval_id is not None
    text = collect_rig.policy_path.read_text().replace('collect: ["/tmp/*.hprof"]', "")
    collect_rig.policy_path.write_text(text)
    assert collect_rig.holder.reload()
    vote = await collect_rig.service.vote(asked.approval_id, BOB, approve=True)
    assert vote.result is not None
    assert (vote.result.effect, vote.result.error_code) == (Effect.DENY, "policy_changed")
    assert collect_rig.stored_objects() == []


async def test_collect_without_a_store_is_refused_before_anything_is_recorded(
    collect_rig: CollectRig,
) -> None:
    bare = ExecService(
        policies=collect_rig.holder,
        audit=collect_rig.audit,
        providers={},
        default_provider="local",
    )
    with pytest.raises(ArtifactError):
        await bare.collect(ALICE, Surface.CLI, collect_rig.target, "/tmp/x.cap")


async def test_large_output_is_truncated_inline_and_linked_whole_and_scrubbed(
    collect_rig: CollectRig,
) -> None:
    line = "row {:06d} DB_PASSWORD=hunter2-demo-password " + "y" * 60 + "\n"
    (collect_rig.tmp / "big.log").write_text("".join(line.format(i) for i in range(8000)))
    request = ExecRequest(
        ALICE, Surface.CLI, collect_rig.target, argv=("head", "-n", "8000", "/tmp/big.log")
    )
    result = await collect_rig.service.exec(request, inline_limit=2000)
    assert result.exit_code == 0 and result.truncated
    assert len(result.stdout) <= 2000
    full = collect_rig.fetch(result.links["stdout"]).decode()
    assert full.count("\n") == 8000
    assert "hunter2" not in full and "DB_PASSWORD=[REDACTED" in full
    assert "stderr" not in result.links
    assert result.audit_id is not None
    outcome = (await collect_rig.audit.get_exec(result.audit_id)).outcome
    assert outcome is not None and len(outcome.artifacts) == 1
    info = outcome.artifacts[0]
    assert (info.content_type, info.sha256) == ("text/plain; charset=utf-8", sha256(full.encode()))
    assert not any(Path(collect_rig.spill_dir).rglob("*.txt"))


async def test_small_output_makes_no_artifact(collect_rig: CollectRig) -> None:
    (collect_rig.tmp / "small.log").write_text("one line\n")
    request = ExecRequest(
        ALICE, Surface.CLI, collect_rig.target, argv=("head", "-n", "5", "/tmp/small.log")
    )
    result = await collect_rig.service.exec(request)
    assert result.links == {} and result.stdout == "one line\n"
    assert collect_rig.stored_objects() == []
