"""Block Kit messages for results, refusals and look-ups. Pure: values in, (text, blocks) out.

Every piece of text that came from a person or an instance goes through ``bot.text``
escaping, so output cannot mention, link or break out of its code block. ``text`` is the
notification fallback: a summary, never command output.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from bot.outbox import Blocks
from bot.text import (
    code_block,
    escape,
    fit_mrkdwn,
    inline_code,
    mention,
    output_block,
    shown_command,
)
from policies.errors import ExecGateError
from policies.ports import ExecRecord, ExecStatus
from policies.service.results import CollectResult, ExecResult, Explanation
from policies.types import Effect, InstanceInfo, join_argv

Message = tuple[str, Blocks]
# A Slack message holds at most 50 blocks; list look-ups stay well under it.
_SECTION_LINES_LIMIT = 2900


def section(text: str) -> dict[str, Any]:
    """A section block; text over Slack's limit is cut so the message is still shown."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit_mrkdwn(text)}}


def context(*parts: str) -> dict[str, Any]:
    text = " · ".join(p for p in parts if p)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit_mrkdwn(text or " ")}]}


def slack_date(when: dt.datetime | str) -> str:
    """A date Slack shows in the reader's time zone (with a UTC fallback)."""
    moment = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    fallback = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _audit(audit_id: str | None) -> str:
    return f"audit `{escape(audit_id)}`" if audit_id else ""


def _rule(rule: str | None) -> str:
    return f"rule `{escape(rule)}`" if rule else "no rule matched"


def result_message(result: ExecResult, *, who: str, command: str) -> Message:
    """A command that ran: who, what, where, exit code, duration, output, links, audit id."""
    command = shown_command(command)
    headline = f"{mention(who)} ran {inline_code(command)} on {inline_code(result.target)}"
    status = f"exit {result.exit_code}" if result.exit_code is not None else "no exit code"
    if result.status is not ExecStatus.COMPLETED:
        status = f"*{escape(result.status.value)}*"
    blocks: Blocks = [section(headline)]
    facts = [status]
    if result.duration_ms is not None:
        facts.append(f"{result.duration_ms} ms")
    facts += [_rule(result.rule), _audit(result.audit_id)]
    if result.approval_id:
        facts.append(f"approval `{escape(result.approval_id)}`")
    if result.approvers:
        facts.append("approved by " + ", ".join(mention(p) for p in result.approvers))
    blocks.append(context(*facts))
    if result.error:
        blocks.append(section(f":warning: {escape(result.error)}"))
    omitted: dict[str, int] = {}
    for name, text, count in (
        ("stdout", result.stdout, result.stdout_omitted),
        ("stderr", result.stderr, result.stderr_omitted),
    ):
        if not text:
            continue
        fitted = output_block(text, count)
        omitted[name] = fitted.omitted
        if name == "stderr":
            blocks.append(context("stderr"))
        blocks.append(section(fitted.block))
    if not result.stdout and not result.stderr and result.status is ExecStatus.COMPLETED:
        blocks.append(context("(no output)"))
    notes = [f"{count:,} characters of {name} omitted" for name, count in omitted.items() if count]
    if result.dropped_bytes:
        notes.append(dropped_note(result.dropped_bytes))
    links = [f"<{url}|{escape(name)}>" for name, url in sorted(result.links.items())]
    if notes or links:
        blocks.append(context(*notes, *(["links: " + ", ".join(links)] if links else [])))
    text = f"{mention(who)} ran {escape(command)} on {escape(result.target)}: {status.strip('*')}"
    return text, blocks


def dropped_note(dropped: int) -> str:
    """What was lost past the rule's output limit: never kept, so not in any link."""
    noun = "byte" if dropped == 1 else "bytes"
    return f"{dropped:,} {noun} past the rule's max_output were not kept"


def refusal_message(result: ExecResult | CollectResult) -> Message:
    """A denial, for the requester only: the reason and the rule that decided."""
    lines = [f":no_entry: *Refused:* {escape(result.error or result.reason)}"]
    blocks: Blocks = [
        section(lines[0]),
        context(
            _rule(result.rule),
            f"target `{escape(result.target)}`",
            f"code `{escape(result.error_code or 'denied')}`",
            _audit(result.audit_id),
        ),
    ]
    return f"Refused: {result.error or result.reason}", blocks


def pending_message(result: ExecResult | CollectResult, *, card_channel: str | None) -> Message:
    """A request now waiting for approval, for the requester."""
    where = f" in <#{escape(card_channel)}>" if card_channel else ""
    expires = slack_date(result.approval_expires_at) if result.approval_expires_at else "soon"
    text = (
        f":hourglass_flowing_sand: Your command needs approval ({_rule(result.rule)}). "
        f"An approval card was posted{where}; it expires {expires}. "
        "The result will be posted here once it is approved."
    )
    blocks = [
        section(text),
        context(f"approval `{escape(result.approval_id or '')}`", _audit(result.audit_id)),
    ]
    return "Your command is waiting for approval", blocks


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def collected_message(result: CollectResult, *, who: str) -> Message:
    """A file fetched from an instance: where it is, how big, its digest, its link."""
    assert result.artifact is not None and result.link is not None
    info = result.artifact
    name = (result.resolved_path or result.path).rsplit("/", 1)[-1] or "file"
    expires = (
        f" (link expires {slack_date(result.link_expires_at)})" if result.link_expires_at else ""
    )
    blocks: Blocks = [
        section(
            f"{mention(who)} collected {inline_code(result.path)} from {inline_code(result.target)}"
        ),
        section(f"<{result.link}|Download {escape(name)}>{expires}"),
        context(
            _size(info.size),
            f"sha256 `{escape(info.sha256[:16])}…`",
            escape(info.content_type),
            _rule(result.rule),
            _audit(result.audit_id),
        ),
    ]
    return f"{mention(who)} collected {escape(result.path)} from {escape(result.target)}", blocks


def error_message(exc: ExecGateError) -> Message:
    """An ExecGate error as its safe message and code."""
    blocks: Blocks = [
        section(f":warning: {escape(exc.safe_message)}"),
        context(f"code `{escape(exc.code)}`", _audit(exc.audit_id)),
    ]
    return exc.safe_message, blocks


def internal_error_message(audit_id: str | None) -> Message:
    text = "ExecGate hit an internal error; the details are in its log"
    if audit_id:
        text += f" (audit id {audit_id})"
    return text, [section(f":boom: {escape(text)}")]


def notice(text: str) -> Message:
    """A one-line message; ``text`` is mrkdwn written by ExecGate itself."""
    return text, [section(text)]


def explanation_message(explanation: Explanation, *, command: str) -> Message:
    decision = explanation.decision
    command = shown_command(command)
    icon = {Effect.ALLOW: ":white_check_mark:", Effect.APPROVE: ":raised_hand:"}.get(
        decision.effect, ":no_entry:"
    )
    verdict = {
        Effect.ALLOW: "would run at once",
        Effect.APPROVE: "would wait for approval",
        Effect.DENY: "would be refused",
    }[decision.effect]
    blocks: Blocks = [
        section(f"{icon} {inline_code(command)} on {inline_code(explanation.target)} {verdict}"),
        section(escape(decision.reason)),
        context(_rule(decision.rule_id), "dry run: nothing ran and nothing was recorded"),
    ]
    if len(explanation.stages) > 1:
        stages = "\n".join(" ".join(stage) for stage in explanation.stages)
        blocks.insert(2, section(code_block(stages)))
    return f"{command} {verdict}", blocks


def instances_message(function: str, instances: Sequence[InstanceInfo]) -> Message:
    if not instances:
        return notice(f"No live instances of {inline_code(function)}.")
    lines = []
    for info in instances:
        since = f" since {slack_date(_ms(info.created_ms))}" if info.created_ms else ""
        sandbox = "" if info.sandboxed else " · :warning: unsandboxed"
        version = f" · version {escape(info.version_id)}" if info.version_id else ""
        target = f"{info.function}/{info.instance_id}"
        lines.append(f"• {inline_code(target)} {escape(info.status)}{since}{version}{sandbox}")
    head = f"*{len(instances)} live instance(s) of {inline_code(function)}*"
    blocks: Blocks = [section(head), section(_fit(lines))]
    return f"{len(instances)} live instance(s) of {function}", blocks


def _ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def _fit(lines: Sequence[str]) -> str:
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 > _SECTION_LINES_LIMIT:
            out.append(f"… and {len(lines) - index} more")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def audit_message(records: Sequence[ExecRecord], *, narrowed_to: str | None = None) -> Message:
    """Audit records; ``narrowed_to``: the search was narrowed to the asker's own."""
    narrowed = (
        f":information_source: You may see only your own records, so the search was "
        f"narrowed to {mention(narrowed_to)}."
        if narrowed_to
        else ""
    )
    if not records:
        text, empty = notice("No audit records match.")
        return text, ([context(narrowed)] if narrowed else []) + empty
    lines = []
    for record in records:
        intent, outcome = record.intent, record.outcome
        state = (outcome.status if outcome else intent.status).value
        if outcome is not None and outcome.exit_code is not None:
            state += f" exit {outcome.exit_code}"
        command = shown_command(intent.command_text or join_argv(intent.argv))
        lines.append(
            f"• {slack_date(record.created_at)} {mention(intent.principal)} "
            f"{inline_code(command, 80)} on {inline_code(intent.target)} · "
            f"{escape(intent.effect)} · {escape(state)} · `{escape(record.audit_id)}`"
        )
    blocks: Blocks = [section(f"*{len(records)} audit record(s)*"), section(_fit(lines))]
    if narrowed:
        blocks.insert(0, context(narrowed))
    return f"{len(records)} audit record(s)", blocks


_HELP = (
    "*ExecGate* runs commands inside live function instances, behind policy, approvals and audit.",
    "• `/exec <target> <command>` run a command, e.g. `/exec demo-api/c-1a2b env`",
    '• `/exec --reason "INC-42 timeouts" <target> <command>` give approvers a reason',
    "• `/exec instances <function>` list live instances",
    "• `/exec explain <target> <command>` the decision, without running anything",
    "• `/exec session <target>` open a session in a thread: each reply is a command "
    "(`cd` and `export` are kept), `end` ends it",
    "• `/exec audit [user=me target=… function=… effect=deny status=… since=2h limit=20]` "
    "recent records you may see",
)
_COLLECT_HELP = "• `/exec collect <target> <path>` fetch a file from the instance"
_HELP_END = (
    "Targets are written `[provider:]function[@qualifier]/instance`. Output is scrubbed of secrets."
)


def help_message(*, collect: bool = False) -> Message:
    lines = [*_HELP, *([_COLLECT_HELP] if collect else []), _HELP_END]
    return "ExecGate help", [section("\n".join(lines))]
