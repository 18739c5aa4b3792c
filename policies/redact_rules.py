"""ExecGate's own secret patterns: what a secret looks like in command output.

Two layers live here:

* ``TRIGGER`` (RE2 syntax) finds the few lines that *might* hold a secret. It must
  match every line any rule below can change; everything it does not match passes
  through untouched at scan speed.
* ``RULES``, ``re`` patterns applied only to those lines, each behind a cheap
  substring check. Each rule keeps the key name (and quotes) and replaces the value
  with ``[REDACTED:<kind>]``.

Every rule starts with a guard (a line start, a quote, a lookbehind or a literal), so
a flagged line costs time linear in its length even when it is one 64 KiB run of
identifier characters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from policies.redact_keys import IDENT_KEY, KEY, KEY_NEEDLES, kind_for_key

MARKER_PREFIX = "[REDACTED:"
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9-]+\]")


def marker(kind: str) -> str:
    """The text that replaces a secret of ``kind``."""
    return f"{MARKER_PREFIX}{kind}]"


TRIGGER = "|".join(
    (
        # key names; [_.-]key also covers *_ACCESS_KEY_ID and *_KEY_SECRET
        r"(?i:secret|token|passw|credential|authoriz|bearer|apikey|[_.-](?:key|pass|pwd)"
        r"|(?:api|access|private|auth|signing|encryption)[ _-]?key)",
        r"[a-z0-9](?:Key|Pass|Pwd)",
        r"Basic [A-Za-z0-9+/]",
        r"://[^\s/?#]*@",
        r"LTAI|CAIS|AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9]",
        r"xox[a-z]|xapp-|hooks\.slack\.com",
        r"gh[pousr]_|github_pat_|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas)-",
        r"eyJ",
        r"AIza|[sr]k_(?:live|test)_|npm_|pypi-",
        r"-{4,5} ?BEGIN|PuTTY-User-Key-File",
    )
)

# An optional run of backslashes lets keys and values inside escaped JSON match.
_Q = r"\\{0,3}[\"']"


def _quoted_value(group: str, quote: str) -> str:
    # Up to the matching closing quote, stepping over backslash escapes.
    return rf"(?P<{group}>(?:(?!(?P={quote}))(?:\\.|[^\\\n]))+)(?P={quote})"


_SCHEMES = r"bearer|basic|token|bot|digest|negotiate|ntlm|hmac|fc|aws4-hmac-sha256|apikey|sharedkey"


@dataclass(frozen=True, slots=True)
class Rule:
    """One project rule.

    The rule runs only on lines whose lower-cased text contains, for each group in
    ``needles``, at least one of its strings. ``values`` names the groups that hold
    the secret (the first one that took part in the match is replaced); ``kind`` is a
    fixed kind or a function of the match.
    """

    name: str
    regex: re.Pattern[str]
    values: tuple[str, ...]
    kind: str | Callable[[re.Match[str]], str]
    needles: tuple[tuple[str, ...], ...]


def _rule(
    name: str,
    pattern: str,
    kind: str | Callable[[re.Match[str]], str],
    needles: tuple[tuple[str, ...], ...],
    values: tuple[str, ...] = ("val",),
) -> Rule:
    return Rule(name, re.compile(pattern, re.MULTILINE), values, kind, needles)


def _key_kind(m: re.Match[str]) -> str:
    return kind_for_key(m["key"])


def _auth_kind(m: re.Match[str]) -> str:
    scheme = (m["scheme"] or "").strip().lower()
    return {"bearer": "bearer-token", "basic": "basic-auth"}.get(scheme, "authorization")


_QUOTES = ("'", '"')


def has_needles(lowered: str, needles: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``lowered`` holds at least one string of every group of ``needles``."""
    return all(any(needle in lowered for needle in group) for group in needles)


# Applied in this order; each sees the previous ones' output, and a value that is
# already a marker is left alone.
RULES: tuple[Rule, ...] = (
    # KEY=value / KEY: value at the start of a line (env, export, YAML, ini, headers
    # as curl -v prints them): the value is the rest of the line.
    _rule(
        "line_start",
        r"^[ \t]*(?:[-*<>][ \t]+)?(?:(?:export|declare[ \t]+-[A-Za-z]+|set|readonly)[ \t]+)?"
        rf"(?P<key>{KEY})[ \t]*[=:][ \t]*(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)[ \t]*$",
        _key_kind,
        (KEY_NEEDLES, ("=", ":")),
    ),
    # {"name": "DB_PASSWORD", "value": "..."}: Kubernetes and container env lists.
    _rule(
        "name_value",
        rf"(?P<q1>{_Q})name(?P=q1)[ \t]*:[ \t]*(?P<q2>{_Q})(?P<key>{KEY})(?P=q2)"
        rf"[ \t]*,[ \t]*(?P<q3>{_Q})value(?P=q3)[ \t]*:[ \t]*(?P<q>{_Q})"
        + _quoted_value("val", "q"),
        _key_kind,
        (("name",), ("value",)),
    ),
    # "key": "value", 'key' => 'value', \"key\":\"value\" (JSON, dict reprs, escaped JSON)
    _rule(
        "quoted_key",
        rf"(?P<kq>{_Q})(?P<key>{KEY})(?P=kq)[ \t]*(?:=>|:=|[:=])[ \t]*"
        rf"(?:(?P<q>{_Q})" + _quoted_value("val", "q") + r"|"
        r"(?P<bare>(?!(?:null|true|false)\b)[^\s,}\]\"'\\]+))",
        _key_kind,
        (KEY_NEEDLES, _QUOTES),
        ("val", "bare"),
    ),
    # Authorization: <scheme> <credentials>
    _rule(
        "authorization",
        rf"(?i:\b(?:proxy-)?authorization){_Q}?[ \t]*[:=][ \t]*{_Q}?"
        rf"(?P<scheme>(?i:{_SCHEMES})[ \t]+)?(?P<val>[^\"'\\\n]+?)(?={_Q}|[ \t]*$)",
        _auth_kind,
        (("authorization",),),
    ),
    # key=value anywhere (logfmt, query strings, env-prefixed commands in ps output, Go's :=)
    _rule(
        "assignment",
        rf"(?<![A-Za-z0-9_.-])(?P<key>{KEY})[ \t]*:?=[ \t]*"
        rf"(?:(?P<q>[\"'])" + _quoted_value("val", "q") + r"|(?P<bare>[^\s&\"'<>]+))",
        _key_kind,
        (KEY_NEEDLES, ("=",)),
        ("val", "bare"),
    ),
    # --password VALUE, -token VALUE (command lines as ps prints them)
    _rule(
        "flag",
        rf"(?<!\S)--?(?P<key>{KEY})[ \t]+(?P<val>[^\s-]\S*)",
        _key_kind,
        (KEY_NEEDLES, ("-",)),
    ),
    # db_password: value / clientSecret: value in the middle of a line
    _rule(
        "colon",
        rf"(?<![A-Za-z0-9_.-])(?P<key>{IDENT_KEY})[ \t]*:[ \t]+(?P<val>[^\s,;&\"'<>]+)",
        _key_kind,
        (KEY_NEEDLES, (":",)),
    ),
    _rule(
        "bearer",
        r"(?i:\bbearer)[ \t]+(?P<val>[A-Za-z0-9._~+/=-]{8,})",
        "bearer-token",
        (("bearer",),),
    ),
    # Basic <base64>: the lookahead keeps English ("Basic information") readable.
    _rule(
        "basic",
        r"\bBasic[ \t]+(?=[A-Za-z0-9+/]{0,200}(?:[0-9+/=]|[a-z][A-Z]))"
        r"(?P<val>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])",
        "basic-auth",
        (("basic",),),
    ),
    # scheme://user:PASSWORD@host; the password may itself contain '@'
    _rule(
        "url_password",
        r"://[^\s:/?#@\"'<>]{0,256}:(?P<val>[^\s/?#\"'<>]+)(?=@)",
        "url-password",
        (("://",), ("@",)),
    ),
    _rule(
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<val>[A-Za-z0-9_/-]+)",
        "slack-webhook",
        (("hooks.slack.com",),),
    ),
    _rule(
        "alibaba_key_id",
        r"(?<![A-Za-z0-9])(?P<val>LTAI[A-Za-z0-9]{12,30})(?![A-Za-z0-9])",
        "alibaba-access-key-id",
        (("ltai",),),
    ),
    _rule(
        "alibaba_sts",
        r"(?<![A-Za-z0-9+/])(?P<val>CAIS[A-Za-z0-9+/=_-]{36,})",
        "alibaba-sts-token",
        (("cais",),),
    ),
    _rule(
        "aws_key_id",
        r"(?<![A-Za-z0-9])(?P<val>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?![A-Za-z0-9])",
        "aws-access-key-id",
        (("akia", "asia", "abia", "acca", "a3t"),),
    ),
    _rule(
        "slack_token",
        r"(?<![A-Za-z0-9])(?P<val>xox(?:[abposre]|e\.xox[a-z])-[A-Za-z0-9-]{8,}"
        r"|xapp-[0-9]+-[A-Za-z0-9-]{8,})",
        "slack-token",
        (("xox", "xapp-"),),
    ),
    _rule(
        "github_token",
        r"(?<![A-Za-z0-9_])(?P<val>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
        "github-token",
        (("gh",),),
    ),
    _rule(
        "gitlab_token",
        r"(?<![A-Za-z0-9_-])(?P<val>gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas)-[A-Za-z0-9_-]{20,})",
        "gitlab-token",
        (("gl",),),
    ),
    _rule(
        "jwt",
        r"(?<![A-Za-z0-9_-])(?P<val>eyJ[A-Za-z0-9_-]{4,}\.ey[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)",
        "jwt",
        (("eyj",),),
    ),
    _rule(
        "google_api_key",
        r"(?<![A-Za-z0-9_-])(?P<val>AIza[0-9A-Za-z_-]{35})",
        "google-api-key",
        (("aiza",),),
    ),
    _rule(
        "stripe_key",
        r"(?<![A-Za-z0-9])(?P<val>[sr]k_(?:live|test)_[0-9A-Za-z]{16,})",
        "stripe-key",
        (("k_live_", "k_test_"),),
    ),
    _rule(
        "npm_token",
        r"(?<![A-Za-z0-9_])(?P<val>npm_[A-Za-z0-9]{36})(?![A-Za-z0-9])",
        "npm-token",
        (("npm_",),),
    ),
    _rule(
        "pypi_token",
        r"(?<![A-Za-z0-9_-])(?P<val>pypi-AgE[A-Za-z0-9_-]{40,})",
        "pypi-token",
        (("pypi-",),),
    ),
)


def is_secret_value(value: str) -> bool:
    """Whether ``value`` is something to redact: not blank, not already a marker
    (output scrubbed twice, or by an earlier rule)."""
    return not value.startswith(MARKER_PREFIX) and bool(value.strip("\"' \t"))


def apply_rules(line: str) -> tuple[str, int]:
    """Run every rule over ``line`` (one line, no newline); return it and the count.

    Raises:
        Nothing.
    """
    count = 0
    lowered = line.lower()

    def replace(rule: Rule, match: re.Match[str]) -> str:
        nonlocal count
        for group in rule.values:
            start, end = match.span(group)
            if start >= 0:
                break
        else:
            return match[0]
        if not is_secret_value(match.string[start:end]):
            return match[0]
        count += 1
        kind = rule.kind if isinstance(rule.kind, str) else rule.kind(match)
        whole_start, whole_end = match.span()
        return match.string[whole_start:start] + marker(kind) + match.string[end:whole_end]

    for rule in RULES:
        if has_needles(lowered, rule.needles):
            line = rule.regex.sub(functools.partial(replace, rule), line)
    return line, count


# Private keys span lines. A BEGIN line opens a block that runs to its END line; lines
# in between that look like key material (base64, armour headers, blank) are dropped.
PEM_BEGIN = re.compile(
    r"-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}|PuTTY-User-Key-File-[0-9]+:"
)
PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
PEM_BODY = re.compile(
    r"[ \t]*(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset|Encryption"
    r"|Public-Lines|Private-Lines|Private-MAC|Private-Hash|Key-Derivation|Argon2-[A-Za-z]+)"
    r"[ \t]*:[^\n]*)?[ \t]*\\?"
)

# Kubernetes YAML puts the name and the value of an env entry on separate lines:
#   - name: DB_PASSWORD
#     value: hunter2
ENV_NAME_LINE = re.compile(
    rf"[ \t]*(?:-[ \t]+)?[\"']?name[\"']?[ \t]*:[ \t]*[\"']?(?P<key>{KEY})[\"']?,?[ \t]*"
)
ENV_VALUE_LINE = re.compile(
    r"(?P<keep>[ \t]*[\"']?value[\"']?[ \t]*:[ \t]*)(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)"
    r",?[ \t]*"
)
