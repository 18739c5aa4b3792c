"""ExecGate's own secret patterns: what a secret looks like in command output.

Two layers live here:

* ``TRIGGER`` (RE2 syntax) finds the few lines that *might* hold a secret. It must
  match every line any rule below can change; everything it does not match passes
  through untouched at scan speed.
* ``LINE_RULES``, one ``re`` alternation applied only to those lines. Each rule keeps
  the key name (and quotes) and replaces the value with ``[REDACTED:<kind>]``.

Every rule starts with a guard (a line start, a quote, a lookbehind or a literal), so
a flagged line costs time linear in its length even when it is one 64 KiB run of
identifier characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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

# Key names that end in a secret-ish word. A key is a whole identifier run taken
# possessively (no backtracking into it), then fixed-width lookbehinds check how it
# ends: one pass over the run, whatever its length. Separator-less words ("secret",
# "token", "password") may follow any prefix, including camelCase; "key", "pass" and
# "pwd" need a separator or a camelCase hump, so PWD, OLDPWD, monkey or bypass stay
# readable.
_RUN = r"[A-Za-z0-9_.-]++"
_WORDS = ("secret", "token", "password", "passwd", "credential", "credentials")
_ANY_PREFIX = (*_WORDS, "apikey", "accesskey", "accesskeyid", "access_keyid", "accesskey_id")
_SEP_WORDS = ("key", "pass", "pwd")
_CAMEL = ("Key", "Pass", "Pwd", "Secret", "Token", "Password", "Credentials", "Credential")


def _ends_with(*alternatives: str) -> str:
    return "(?:" + "|".join(f"(?<={a})" for a in alternatives) + ")"


_KEY = (
    _RUN
    + "(?:(?i:"
    + _ends_with(*_ANY_PREFIX, *(f"[_.-]{w}" for w in _SEP_WORDS), "access_key_id")
    + ")|"
    + _ends_with(*(f"[a-z0-9]{w}" for w in _CAMEL[:3]))
    + ")"
)
# Only identifier-looking names (a separator or a camelCase hump right before the
# word): used where a bare English word would be too eager ("token: expired").
_IDKEY = (
    _RUN
    + "(?:(?i:"
    + _ends_with(*(f"[_.-]{w}" for w in (*_WORDS, *_SEP_WORDS)))
    + ")|"
    + _ends_with(*(f"[a-z0-9]{w}" for w in _CAMEL))
    + ")"
)
# An optional run of backslashes lets keys and values inside escaped JSON match.
_Q = r"\\{0,3}[\"']"


def _quoted_value(group: str, quote: str) -> str:
    # Up to the matching closing quote, stepping over backslash escapes.
    return rf"(?P<{group}>(?:(?!(?P={quote}))(?:\\.|[^\\\n]))+)(?P={quote})"


_SCHEMES = r"bearer|basic|token|bot|digest|negotiate|ntlm|hmac|fc|aws4-hmac-sha256|apikey|sharedkey"

_NAMED_KINDS = {
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "alibaba-secret",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "alibaba-access-key-id",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "alibaba-sts-token",
    "ALICLOUD_SECRET_KEY": "alibaba-secret",
    "ALICLOUD_ACCESS_KEY": "alibaba-access-key-id",
    "ALICLOUD_SECURITY_TOKEN": "alibaba-sts-token",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_SESSION_TOKEN": "aws-session-token",
    "AWS_SECURITY_TOKEN": "aws-session-token",
    "AWS_ACCESS_KEY_ID": "aws-access-key-id",
}
_SUFFIX_KINDS = (
    ("ACCESSKEYSECRET", "alibaba-secret"),
    ("SECURITYTOKEN", "sts-token"),
    ("ACCESSKEYID", "access-key-id"),
    ("PASSWORD", "password"),
    ("PASSWD", "password"),
    ("PASS", "password"),
    ("PWD", "password"),
    ("SECRET", "secret"),
    ("TOKEN", "token"),
    ("CREDENTIALS", "credentials"),
    ("CREDENTIAL", "credentials"),
    ("KEY", "key"),
)


def kind_for_key(name: str) -> str:
    """The redaction kind for a value stored under key ``name``."""
    upper = name.upper().strip("-")
    named = _NAMED_KINDS.get(upper)
    if named is not None:
        return named
    squashed = re.sub(r"[^A-Z0-9]", "", upper)
    for suffix, kind in _SUFFIX_KINDS:
        if squashed.endswith(suffix):
            return kind
    return "secret"


@dataclass(frozen=True, slots=True)
class Rule:
    """One alternative of ``LINE_RULES``.

    ``values`` names the groups that hold the secret (the first one that took part in
    the match is replaced); ``kind`` is a fixed kind or a function of the match.
    """

    name: str
    pattern: str
    values: tuple[str, ...]
    kind: str | Callable[[re.Match[str]], str]


def _key_kind(group: str) -> Callable[[re.Match[str]], str]:
    return lambda m: kind_for_key(m[group])


def _auth_kind(m: re.Match[str]) -> str:
    scheme = (m["auth_scheme"] or "").strip().lower()
    return {"bearer": "bearer-token", "basic": "basic-auth"}.get(scheme, "authorization")


RULES: tuple[Rule, ...] = (
    # KEY=value / KEY: value at the start of a line (env, export, YAML, ini, headers
    # as curl -v prints them): the value is the rest of the line.
    Rule(
        "line_start",
        r"^[ \t]*(?:[-*<>][ \t]+)?(?:(?:export|declare[ \t]+-[A-Za-z]+|set|readonly)[ \t]+)?"
        rf"(?P<ls_key>{_KEY})[ \t]*[=:][ \t]*(?P<ls_q>[\"']?)(?P<ls_val>[^\n]+?)(?P=ls_q)[ \t]*$",
        ("ls_val",),
        _key_kind("ls_key"),
    ),
    # {"name": "DB_PASSWORD", "value": "..."}: Kubernetes and container env lists.
    Rule(
        "name_value",
        rf"(?P<nv_q1>{_Q})name(?P=nv_q1)[ \t]*:[ \t]*(?P<nv_q2>{_Q})(?P<nv_key>{_KEY})(?P=nv_q2)"
        rf"[ \t]*,[ \t]*(?P<nv_q3>{_Q})value(?P=nv_q3)[ \t]*:[ \t]*(?P<nv_q4>{_Q})"
        + _quoted_value("nv_val", "nv_q4"),
        ("nv_val",),
        _key_kind("nv_key"),
    ),
    # "key": "value", 'key' => 'value', \"key\":\"value\" (JSON, dict reprs, escaped JSON)
    Rule(
        "quoted_key",
        rf"(?P<qk_q>{_Q})(?P<qk_key>{_KEY})(?P=qk_q)[ \t]*(?:=>|:=|[:=])[ \t]*"
        rf"(?:(?P<qk_vq>{_Q})" + _quoted_value("qk_val", "qk_vq") + r"|"
        r"(?P<qk_bare>(?!(?:null|true|false)\b)[^\s,}\]\"'\\]+))",
        ("qk_val", "qk_bare"),
        _key_kind("qk_key"),
    ),
    # Authorization: <scheme> <credentials>
    Rule(
        "authorization",
        rf"(?i:\b(?:proxy-)?authorization){_Q}?[ \t]*[:=][ \t]*{_Q}?"
        rf"(?P<auth_scheme>(?i:{_SCHEMES})[ \t]+)?(?P<auth_val>[^\"'\\\n]+?)(?={_Q}|[ \t]*$)",
        ("auth_val",),
        _auth_kind,
    ),
    # key=value anywhere (logfmt, query strings, env-prefixed commands in ps output, Go's :=)
    Rule(
        "assignment",
        rf"(?<![A-Za-z0-9_.-])(?P<as_key>{_KEY})[ \t]*:?=[ \t]*"
        rf"(?:(?P<as_q>[\"'])" + _quoted_value("as_val", "as_q") + r"|(?P<as_bare>[^\s&\"'<>]+))",
        ("as_val", "as_bare"),
        _key_kind("as_key"),
    ),
    # --password VALUE, -token VALUE (command lines as ps prints them)
    Rule(
        "flag",
        rf"(?<!\S)--?(?P<fl_key>{_KEY})[ \t]+(?P<fl_val>[^\s-]\S*)",
        ("fl_val",),
        _key_kind("fl_key"),
    ),
    # db_password: value / clientSecret: value in the middle of a line
    Rule(
        "colon",
        rf"(?<![A-Za-z0-9_.-])(?P<co_key>{_IDKEY})[ \t]*:[ \t]+(?P<co_val>[^\s,;&\"'<>]+)",
        ("co_val",),
        _key_kind("co_key"),
    ),
    Rule(
        "bearer",
        r"(?i:\bbearer)[ \t]+(?P<be_val>[A-Za-z0-9._~+/=-]{8,})",
        ("be_val",),
        "bearer-token",
    ),
    # Basic <base64>: the lookahead keeps English ("Basic information") readable.
    Rule(
        "basic",
        r"\bBasic[ \t]+(?=[A-Za-z0-9+/]{0,200}(?:[0-9+/=]|[a-z][A-Z]))"
        r"(?P<ba_val>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])",
        ("ba_val",),
        "basic-auth",
    ),
    # scheme://user:PASSWORD@host; the password may itself contain '@'
    Rule(
        "url_password",
        r"://[^\s:/?#@\"'<>]{0,256}:(?P<url_val>[^\s/?#\"'<>]+)(?=@)",
        ("url_val",),
        "url-password",
    ),
    Rule(
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<wh_val>[A-Za-z0-9_/-]+)",
        ("wh_val",),
        "slack-webhook",
    ),
    Rule(
        "alibaba_key_id",
        r"(?<![A-Za-z0-9])(?P<ak_val>LTAI[A-Za-z0-9]{12,30})(?![A-Za-z0-9])",
        ("ak_val",),
        "alibaba-access-key-id",
    ),
    Rule(
        "alibaba_sts",
        r"(?<![A-Za-z0-9+/])(?P<sts_val>CAIS[A-Za-z0-9+/=_-]{36,})",
        ("sts_val",),
        "alibaba-sts-token",
    ),
    Rule(
        "aws_key_id",
        r"(?<![A-Za-z0-9])(?P<aws_val>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})"
        r"(?![A-Za-z0-9])",
        ("aws_val",),
        "aws-access-key-id",
    ),
    Rule(
        "slack_token",
        r"(?<![A-Za-z0-9])(?P<sl_val>xox(?:[abposre]|e\.xox[a-z])-[A-Za-z0-9-]{8,}"
        r"|xapp-[0-9]+-[A-Za-z0-9-]{8,})",
        ("sl_val",),
        "slack-token",
    ),
    Rule(
        "github_token",
        r"(?<![A-Za-z0-9_])(?P<gh_val>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
        ("gh_val",),
        "github-token",
    ),
    Rule(
        "gitlab_token",
        r"(?<![A-Za-z0-9_-])(?P<gl_val>gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas)-[A-Za-z0-9_-]{20,})",
        ("gl_val",),
        "gitlab-token",
    ),
    Rule(
        "jwt",
        r"(?<![A-Za-z0-9_-])(?P<jwt_val>eyJ[A-Za-z0-9_-]{4,}\.ey[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)",
        ("jwt_val",),
        "jwt",
    ),
    Rule(
        "google_api_key",
        r"(?<![A-Za-z0-9_-])(?P<gk_val>AIza[0-9A-Za-z_-]{35})",
        ("gk_val",),
        "google-api-key",
    ),
    Rule(
        "stripe_key",
        r"(?<![A-Za-z0-9])(?P<st_val>[sr]k_(?:live|test)_[0-9A-Za-z]{16,})",
        ("st_val",),
        "stripe-key",
    ),
    Rule(
        "npm_token",
        r"(?<![A-Za-z0-9_])(?P<npm_val>npm_[A-Za-z0-9]{36})(?![A-Za-z0-9])",
        ("npm_val",),
        "npm-token",
    ),
    Rule(
        "pypi_token",
        r"(?<![A-Za-z0-9_-])(?P<pypi_val>pypi-AgE[A-Za-z0-9_-]{40,})",
        ("pypi_val",),
        "pypi-token",
    ),
)

LINE_RULES = re.compile(
    "|".join(f"(?P<{rule.name}>{rule.pattern})" for rule in RULES), re.MULTILINE
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}

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
    rf"[ \t]*(?:-[ \t]+)?[\"']?name[\"']?[ \t]*:[ \t]*[\"']?(?P<key>{_KEY})[\"']?,?[ \t]*"
)
ENV_VALUE_LINE = re.compile(
    r"(?P<keep>[ \t]*[\"']?value[\"']?[ \t]*:[ \t]*)(?P<q>[\"']?)(?P<val>[^\n]+?)(?P=q)"
    r",?[ \t]*"
)
