"""How the CLI prints things. Data goes to stdout; ExecGate's own remarks about an exec
go to stderr so a command's stdout stays clean for pipes."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from policies.ports import ApprovalRecord, ExecRecord, ExecStatus, VerifyReport
from policies.service.results import ExecResult, Explanation, VoteResult
from policies.types import Effect, InstanceInfo, join_argv

if TYPE_CHECKING:
    from policies.rules.policytest import CaseResult


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _dump(value: Any) -> None:
    print(json.dumps(_jsonable(value), indent=2, default=str))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    data = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in data) for i in range(len(headers))]
    for row in data:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def exec_summary(result: ExecResult, *, streamed: bool = False) -> None:
    """What ExecGate says about an exec, on stderr. ``streamed``: the output was written
    as it came (all of it), so nothing was left out for this reader."""
    audit = f"audit id {result.audit_id}"
    if result.effect is Effect.DENY:
        _err(f"execgate: refused ({result.rule or 'no rule'}): {result.reason}")
        _err(f"  nothing ran; {audit}")
        return
    if result.status is ExecStatus.PENDING_APPROVAL and result.approval_id:
        _err(f"execgate: needs approval under rule {result.rule}: {result.reason}")
        _err(f"  approval id {result.approval_id}, expires {result.approval_expires_at}")
        _err(f"  an approver runs: execgate approvals approve {result.approval_id}")
        _err(f"  {audit}")
        return
    if result.truncated and not streamed:
        omitted = result.stdout_omitted + result.stderr_omitted
        link = f"; full output: {result.links.get('stdout', '')}" if result.links else ""
        _err(f"execgate: output truncated, {omitted} characters omitted{link}")
    if result.error:
        _err(f"execgate: {result.error}")
    code = "none" if result.exit_code is None else str(result.exit_code)
    took = f"{result.duration_ms} ms" if result.duration_ms is not None else "-"
    _err(f"[execgate] exit {code} · {took} · {audit}")


def exec_result_from_dict(data: dict[str, Any]) -> ExecResult:
    """An ExecResult back from its ``to_dict`` (as `execgate serve` relays it)."""
    error = data.get("error") or {}
    omitted = data.get("omitted") or {}
    sizes = data.get("bytes") or {}
    return ExecResult(
        effect=Effect(data["effect"]),
        rule=data.get("rule"),
        reason=data.get("reason") or "",
        audit_id=data.get("audit_id"),
        status=ExecStatus(data["status"]),
        target=data.get("target") or "",
        argv=tuple(data.get("argv") or ()),
        exit_code=data.get("exit_code"),
        stdout=data.get("stdout") or "",
        stderr=data.get("stderr") or "",
        truncated=bool(data.get("truncated")),
        stdout_omitted=int(omitted.get("stdout", 0)),
        stderr_omitted=int(omitted.get("stderr", 0)),
        stdout_bytes=int(sizes.get("stdout", 0)),
        stderr_bytes=int(sizes.get("stderr", 0)),
        duration_ms=data.get("duration_ms"),
        approval_id=data.get("approval_id"),
        approval_expires_at=data.get("approval_expires_at"),
        links=dict(data.get("links") or {}),
        error_code=error.get("code"),
        error=error.get("message"),
    )


def exec_error_dict(
    error: dict[str, Any], audit_id: str | None, target: str, argv: Sequence[str] | None
) -> dict[str, Any]:
    """`exec --json` for an exec an error stopped: the keys of a result (taken from an
    empty result, so the two never drift apart), with ``error`` and ``status: error``."""
    empty = ExecResult(
        effect=Effect.DENY, rule=None, reason="", audit_id=None, status=ExecStatus.FAILED, target=""
    ).to_dict()
    return empty | {
        "effect": None,
        "reason": None,
        "status": "error",
        "target": target,
        "argv": list(argv or ()),
        "audit_id": audit_id,
        "error": error,
    }


def explanation(expl: Explanation, *, as_json: bool) -> None:
    if as_json:
        _dump(expl.to_dict())
        return
    d = expl.decision
    print(f"effect: {d.effect.value}")
    print(f"rule:   {d.rule_id or '-'}")
    print(f"reason: {d.reason}")
    print(f"target: {expl.target}")
    if expl.stages:
        print("runs:   " + " | ".join(join_argv(s) for s in expl.stages))
    if d.approval is not None:
        roles = ", ".join(d.approval.approver_roles)
        print(f"approval: {d.approval.threshold} of [{roles}], ttl {d.approval.ttl_seconds:g}s")


def policy_tests(rows: Sequence[CaseResult], *, as_json: bool) -> None:
    if as_json:
        _dump(list(rows))
        return
    for row in rows:
        mark = "ok  " if row.ok else "FAIL"
        print(f"{mark} {row.id}: expected {row.expected}, got {row.actual} ({row.rule or '-'})")
        if not row.ok and row.message:
            print(f"     {row.message}")
    failed = sum(1 for r in rows if not r.ok)
    print(f"{len(rows) - failed} passed, {failed} failed")


def _age(created_ms: int | None) -> str:
    if created_ms is None:
        return "-"
    secs = max(0, int(dt.datetime.now(dt.UTC).timestamp() - created_ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def instances(rows: Sequence[InstanceInfo], *, as_json: bool) -> None:
    if as_json:
        _dump(list(rows))
        return
    if not rows:
        print("no live instances")
        return
    _table(
        ["INSTANCE", "FUNCTION", "STATUS", "AGE", "VERSION", "PROVIDER", "SANDBOX"],
        [
            [
                r.instance_id,
                r.function,
                r.status,
                _age(r.created_ms),
                r.version_id or r.qualifier or "-",
                r.provider,
                _isolation(r),
            ]
            for r in rows
        ],
    )
    if any(not r.sandboxed for r in rows):
        _err("WARNING: some instances run without a sandbox (bubblewrap unavailable)")


def _isolation(row: InstanceInfo) -> str:
    """The SANDBOX column: the local host's isolation mode, else whether it is sandboxed."""
    if not row.sandboxed:
        return f"UNSANDBOXED ({row.isolation})" if row.isolation else "UNSANDBOXED"
    return row.isolation or "yes"


def approvals(records: Sequence[ApprovalRecord], *, as_json: bool) -> None:
    if as_json:
        _dump(list(records))
        return
    if not records:
        print("no approval requests")
        return
    _table(
        ["APPROVAL", "STATE", "REQUESTER", "TARGET", "COMMAND", "VOTES", "EXPIRES", "REASON"],
        [
            [
                r.approval_id,
                r.state.value,
                r.requester,
                r.target,
                join_argv(r.argv),
                f"{len(r.approvals)}/{r.threshold}",
                r.expires_at.isoformat(timespec="seconds"),
                r.reason or "-",
            ]
            for r in records
        ],
    )


def vote(result: VoteResult, *, as_json: bool) -> None:
    record = result.approval
    if as_json:
        _dump(
            {
                "approval": record,
                "result": result.result.to_dict() if result.result else None,
            }
        )
        return
    if result.result is not None:
        exec_summary(result.result, streamed=True)
        artifact = result.result.links.get("artifact")
        if artifact:
            # A collect that ran: its link is the data (as `execgate collect` prints it).
            print(artifact)
        return
    votes = f"{len(record.approvals)}/{record.threshold}"
    _err(f"execgate: approval {record.approval_id} is {record.state.value} ({votes} approvals)")


def verify(report: VerifyReport) -> None:
    if report.ok:
        print(f"OK: {report.rows_checked} audit rows verified")
        if report.detail:
            print(f"  {report.detail}")
        return
    print(f"FAILED at row {report.first_bad_seq}: {report.problem}")
    if report.detail:
        print(f"  {report.detail}")


def _record_dict(record: ExecRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"audit_id": record.audit_id, "created_at": record.created_at}
    out.update(_jsonable(record.intent))
    out["outcome"] = _jsonable(record.outcome) if record.outcome else None
    return _jsonable(out)  # type: ignore[no-any-return]


def audit_record(record: ExecRecord, *, as_json: bool, approval_id: str | None = None) -> None:
    """One exec session. ``approval_id``: the approval request that held it, when the
    intent was written before the request existed."""
    data = _record_dict(record)
    if approval_id and not data.get("approval_id"):
        data["approval_id"] = approval_id
    if as_json:
        _dump(data)
        return
    outcome = data.pop("outcome") or {}
    if outcome:
        data.pop("status", None)  # the outcome's status is the current one
    for key, value in [*data.items(), *outcome.items()]:
        print(f"{key:16} {_field(value)}")


def _field(value: Any) -> str:
    """One line per field: multi-line text (captured output) is shown quoted."""
    if value is None:
        return "-"
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return json.dumps(value)
    return str(value)


def audit_list(records: Sequence[ExecRecord], *, as_json: bool) -> None:
    if as_json:
        _dump([_record_dict(r) for r in records])
        return
    if not records:
        print("no matching exec sessions")
        return
    _table(
        ["AUDIT ID", "TIME", "PRINCIPAL", "TARGET", "EFFECT", "STATUS", "EXIT", "COMMAND"],
        [
            [
                r.audit_id,
                r.created_at.isoformat(timespec="seconds"),
                r.intent.principal,
                r.intent.target,
                r.intent.effect,
                (r.outcome.status if r.outcome else r.intent.status).value,
                "-" if not r.outcome or r.outcome.exit_code is None else str(r.outcome.exit_code),
                (r.intent.command_text or join_argv(r.intent.argv))[:60],
            ]
            for r in records
        ],
    )


def audit_export(records: Sequence[ExecRecord], fmt: str) -> None:
    rows = [_record_dict(r) for r in records]
    if fmt == "jsonl":
        for row in rows:
            print(json.dumps(row, separators=(",", ":")))
        return
    flat = []
    for row in rows:
        outcome = row.pop("outcome") or {}
        row.update({f"outcome_{k}": v for k, v in outcome.items()})
        flat.append({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})
    fields = sorted({k for row in flat for k in row})
    writer = csv.DictWriter(sys.stdout, fieldnames=fields)
    writer.writeheader()
    writer.writerows(flat)
