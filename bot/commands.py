"""The `/exec` command line: text in, one parsed request out. Pure; no Slack, no I/O.

/exec <target> <command…>                    run a command
/exec --reason "why" <target> <command…>     with a reason (shown to approvers)
/exec session <target> [reason…]             a conversational session in a thread
/exec instances [provider:]<function>[@qualifier]
/exec explain <target> <command…>            the decision, without running anything
/exec audit [user=… target=… function=… effect=… status=… session=… since=… limit=…]
/exec collect <target> <path>                fetch a file (when the service offers it)
/exec help
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from dataclasses import dataclass

from bot.text import from_slack, unwrap_code
from policies.errors import CommandRejected
from policies.ports import AuditFilter
from policies.types import Target
from policies.units import parse_instant

AUDIT_DEFAULT_LIMIT = 10
AUDIT_MAX_LIMIT = 50

_FUNCTION_RE = re.compile(
    r"^(?:(?P<provider>[A-Za-z0-9][\w.\-]*):)?(?P<function>[A-Za-z0-9][\w.\-]*)"
    r"(?:@(?P<qualifier>[A-Za-z0-9][\w.\-]*))?$"
)
_MENTION_RE = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")
# A Slack user name (or display name) as typed after @, unescaped by Slack.
_NAME_RE = re.compile(r"^@([^\s<>@|]{1,80}(?: [^\s<>@|]{1,80}){0,3})$")


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Instances:
    function: str
    provider: str | None = None
    qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class Exec:
    target: Target
    command: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Explain:
    target: Target
    command: str


@dataclass(frozen=True, slots=True)
class Session:
    target: Target
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Audit:
    filter: AuditFilter
    # ``user=@name`` as Slack delivers it unescaped: the bot resolves the name.
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class Collect:
    target: Target
    path: str
    reason: str = ""


Command = Help | Instances | Exec | Explain | Session | Audit | Collect


def usage(message: str) -> CommandRejected:
    """A usage error: ``message`` and a pointer to the help."""
    return _usage(message)


def _usage(message: str) -> CommandRejected:
    return CommandRejected(f"{message}; try `/exec help`", kind="usage")


def _split_word(text: str) -> tuple[str, str]:
    """The first word of ``text`` (a quoted word may hold spaces) and the rest."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            raise _usage("unbalanced quotes")
        return text[1:end], text[end + 1 :].strip()
    word, _, rest = text.partition(" ")
    return word, rest.strip()


def _take_reason(text: str) -> tuple[str, str]:
    head, rest = _split_word(text) if text.startswith("-") else ("", text)
    if head in ("--reason", "-r"):
        reason, rest = _split_word(rest)
        if not reason:
            raise _usage("--reason needs a text")
        return reason, rest
    if head.startswith("--reason="):
        return head.split("=", 1)[1], rest
    return "", text


def _target_and_rest(text: str, what: str) -> tuple[Target, str]:
    word, _, rest = text.strip().partition(" ")
    if not word:
        raise _usage(f"give a target for {what}, e.g. demo-api/c-1a2b3c")
    return Target.parse(word), unwrap_code(rest)


def _when(value: str, now: dt.datetime) -> dt.datetime:
    try:
        return parse_instant(value, now)
    except ValueError:
        raise _usage(f"{value!r} is neither a duration (2h, 1d) nor a date") from None


def parse_audit_filter(text: str, user_id: str, now: dt.datetime) -> AuditFilter:
    """``key=value`` words as an AuditFilter (``user=@name`` is not resolved here).

    Raises: CommandRejected (kind "usage") for unknown keys or bad values.
    """
    return parse_audit(text, user_id, now).filter


def parse_audit(text: str, user_id: str, now: dt.datetime) -> Audit:
    """``audit`` and its ``key=value`` filters. ``user=@name`` (what Slack delivers
    for a mention it did not escape) is kept as ``user_name`` for the bot to resolve.

    Raises: CommandRejected (kind "usage") for unknown keys or bad values.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        raise _usage("unbalanced quotes") from None
    text_fields: dict[str, str] = {}
    times: dict[str, dt.datetime] = {}
    limit = AUDIT_DEFAULT_LIMIT
    user_name: str | None = None
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise _usage(f"audit filters are key=value, got {word!r}")
        if key in ("user", "principal"):
            name = _NAME_RE.match(value)
            if name:
                user_name = name[1]
                text_fields.pop("principal", None)
            else:
                user_name = None
                text_fields["principal"] = _principal(value, user_id)
        elif key in ("target", "function", "effect", "status", "session"):
            text_fields[key] = value
        elif key in ("since", "until"):
            times[key] = _when(value, now)
        elif key == "limit":
            if not value.isdigit() or not 1 <= int(value) <= AUDIT_MAX_LIMIT:
                raise _usage(f"limit is a number from 1 to {AUDIT_MAX_LIMIT}")
            limit = int(value)
        else:
            raise _usage(f"unknown audit filter {key!r}")
    flt = AuditFilter(
        principal=text_fields.get("principal"),
        target=text_fields.get("target"),
        function=text_fields.get("function"),
        effect=text_fields.get("effect"),
        status=text_fields.get("status"),
        session_id=text_fields.get("session"),
        since=times.get("since"),
        until=times.get("until"),
        limit=limit,
    )
    return Audit(flt, user_name)


def _principal(value: str, user_id: str) -> str:
    mention = _MENTION_RE.match(value)
    if value == "me":
        return f"slack:{user_id}"
    if mention:
        return f"slack:{mention[1]}"
    return value if ":" in value else f"slack:{value}"


def parse(text: str, *, user_id: str, now: dt.datetime) -> Command:
    """Parse the text after `/exec` as Slack delivered it.

    Raises: CommandRejected (kind "usage"), TargetError.
    """
    text = from_slack(text)
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    verb = word.lower()
    if verb in ("", "help", "-h", "--help"):
        return Help()
    if verb == "instances":
        match = _FUNCTION_RE.match(rest)
        if match is None:
            raise _usage("give a function, e.g. `/exec instances demo-api`")
        return Instances(match["function"], match["provider"], match["qualifier"])
    if verb == "explain":
        target, command = _target_and_rest(rest, "explain")
        if not command:
            raise _usage("give a command to explain")
        return Explain(target, command)
    if verb == "audit":
        return parse_audit(rest, user_id, now)
    if verb == "session":
        reason, rest = _take_reason(rest)
        target, more = _target_and_rest(rest, "a session")
        return Session(target, reason or more)
    if verb == "collect":
        reason, rest = _take_reason(rest)
        target, path = _target_and_rest(rest, "collect")
        if not path or " " in path:
            raise _usage("give one path to collect, e.g. /tmp/capture.pcap")
        return Collect(target, path, reason)
    reason, rest = _take_reason(text)
    if "/" not in rest.partition(" ")[0]:
        raise _usage(f"unknown command {word!r}")
    target, command = _target_and_rest(rest, "exec")
    if not command:
        raise _usage("give a command to run after the target")
    return Exec(target, command, reason)
