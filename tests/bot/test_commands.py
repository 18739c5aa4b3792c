"""The `/exec` command line, parsed: pure, no Slack."""

from __future__ import annotations

import datetime as dt

import pytest

from bot import commands
from bot.commands import Audit, Collect, Exec, Explain, Help, Instances, Session, parse
from policies.errors import CommandRejected, TargetError
from policies.types import Target

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
T = Target.parse("demo-api/c-1")


def _parse(text: str) -> commands.Command:
    return parse(text, user_id="UALICE", now=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("help", Help()),
        ("demo-api/c-1 env", Exec(T, "env")),
        ("demo-api/c-1   ls -la /tmp ", Exec(T, "ls -la /tmp")),
        (
            '--reason "INC-7 loss" demo-api/c-1 tcpdump -c 10',
            Exec(T, "tcpdump -c 10", "INC-7 loss"),
        ),
        ("-r why demo-api/c-1 id", Exec(T, "id", "why")),
        ("--reason=why demo-api/c-1 id", Exec(T, "id", "why")),
        ("demo-api/c-1 `ps aux`", Exec(T, "ps aux")),
        ("demo-api/c-1 ```df -h```", Exec(T, "df -h")),
        ("demo-api/c-1 grep &quot;x&quot; &lt; /tmp/a", Exec(T, "grep &quot;x&quot; < /tmp/a")),
        ("demo-api/c-1 curl <http://example.com|example.com>", Exec(T, "curl example.com")),
        ("demo-api/c-1 echo “quoted”", Exec(T, 'echo "quoted"')),
        ("instances demo-api", Instances("demo-api")),
        ("instances fc-prod:orders@LATEST", Instances("orders", "fc-prod", "LATEST")),
        ("explain demo-api/c-1 env", Explain(T, "env")),
        ("session demo-api/c-1 disk is full", Session(T, "disk is full")),
        ('session --reason "disk" demo-api/c-1', Session(T, "disk")),
        ("collect demo-api/c-1 /tmp/x.pcap", Collect(T, "/tmp/x.pcap")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_command_text_parses_into_its_request(text: str, expected: commands.Command) -> None:
    assert _parse(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("frobnicate", CommandRejected),
        ("demo-api/c-1", CommandRejected),
        ("explain demo-api/c-1", CommandRejected),
        ("instances", CommandRejected),
        ("collect demo-api/c-1", CommandRejected),
        ('--reason "open demo-api/c-1 env', CommandRejected),
        ("demo-api/ env", TargetError),
        ("session", CommandRejected),
    ],
    ids=[
        "unknown",
        "no-command",
        "explain-nothing",
        "no-function",
        "no-path",
        "quotes",
        "bad-target",
        "session-no-target",
    ],
)
def test_malformed_command_text_is_refused(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _parse(text)


def test_audit_filters_become_an_audit_filter() -> None:
    parsed = _parse("audit user=<@UBOB|bob> function=demo-api effect=deny since=2h limit=20")
    assert isinstance(parsed, Audit)
    flt = parsed.filter
    assert flt.principal == "slack:UBOB"
    assert (flt.function, flt.effect, flt.limit) == ("demo-api", "deny", 20)
    assert flt.since == NOW - dt.timedelta(hours=2)


@pytest.mark.parametrize(
    ("word", "principal"),
    [("user=me", "slack:UALICE"), ("user=UBOB", "slack:UBOB"), ("user=local:bob", "local:bob")],
    ids=["me", "bare-id", "other-kind"],
)
def test_audit_user_filter_names_a_principal(word: str, principal: str) -> None:
    parsed = _parse(f"audit {word}")
    assert isinstance(parsed, Audit) and parsed.filter.principal == principal


@pytest.mark.parametrize(
    "text",
    ["audit colour=blue", "audit limit=0", "audit limit=500", "audit since=yesterday", "audit x"],
    ids=["unknown-key", "limit-0", "limit-too-big", "bad-date", "no-equals"],
)
def test_bad_audit_filter_is_refused(text: str) -> None:
    with pytest.raises(CommandRejected):
        _parse(text)
