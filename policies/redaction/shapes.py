"""What a secret looks like in command output: the fast-scan trigger and the rules on
key names and their syntax.

Two layers live here:

* ``TRIGGER`` (RE2 syntax) finds the few lines that *might* hold a secret. It must
  match every line any rule (here or in ``redact_tokens``) can change; everything it
  does not match passes through untouched at scan speed.
* ``KEY_RULES``, ``re`` patterns applied only to those lines, each behind a cheap
  substring check (``needles``) and, for rules on key names, a check of what follows
  the name (``after``, see ``After``). Each rule keeps the key name (and quotes) and
  replaces the value with ``[REDACTED:<kind>]``. Rules on key names match a candidate
  name and let ``redact_keys.is_secret_key`` decide; a refused candidate is skipped and
  the search goes on right after its name.

Every rule starts with a guard (a line start, a quote, a lookbehind or a literal), so
a flagged line costs time linear in its length even when it is one 64 KiB run of
identifier characters. ``redact_rules`` applies the rules.
"""

from __future__ import annotations

import functools
import re

from policies.redaction.keys import KEY, KEY_NEEDLES, Bare, is_secret_key, kind_for_key
from policies.redaction.rulebase import After, Begin, Rule, Span, Spans, first, rule, value

TRIGGER = "|".join(
    (
        # secret words anywhere in a name (SECRET_KEY_BASE, PGPASSWORD, SENTRY_DSN)
        r"(?i:secret|token|passw|passphrase|credential|authoriz|bearer|apikey|dsn|cookie"
        r"|(?:api|access|private|auth|signing|encryption)[ _-]?key)",
        # weak or short words ending a name: DB_PASS, x-api-key, REDIS_AUTH_2, apiKey,
        # DBPass, OSS_SK, otpSeed, API_KEYS, dbPASS, appSK
        r"(?i:[_.0-9-](?:keys?|keyid|pass|pwd|auth|ak|sk|salt|hmac|seed))(?:[^A-Za-z]|$)",
        r"[A-Za-z0-9](?:Keys?|Keyid|Pass|Pwd|Auth|Ak|Sk|Salt|Hmac|Seed)(?:[^a-z]|$)",
        r"[a-z0-9](?:KEYS?|KEYID|PASS|PWD|AUTH|AK|SK|SALT|HMAC|SEED)(?:[^A-Za-z]|$)",
        # an API key as "key" in a URL query; Dockerfile ENV and csh setenv lines
        r"[?&](?i:key|sig|signature|x-amz-signature|x-goog-signature)="
        r"|(?m:^[ \t]*(?:ENV|setenv)[ \t]+[A-Za-z_])",
        # a weak or short word alone as a setting: pass=, "auth":, <pwd>, --pass x,
        # name: pwd, AK=, salt:, pwd:, KEY=; an OpenAI key (sk-proj-...)
        r"(?im:\b(?:pass|pwd|auth|ak|sk|salt|hmac|seed)"
        r"(?:\\{0,3}[\"'>]|[ \t]*:?=|[ \t]*,?[ \t]*\r?$)"
        r"|\b(?:pwd|ak|sk|salt|hmac|seed)[ \t]*:|-(?:pass|pwd|auth|ak|sk|salt|hmac|seed)[ \t])",
        r"(?m:\bKEY(?:\\{0,3}[\"'>]|[ \t]*:|[ \t]*=|[ \t]*,?[ \t]*\r?$))|\bsk-",
        # passwords on client command lines (mysql -phunter2, redis-cli -a hunter2)
        r"(?i:mysql|mariadb)[^\n]*[ \t]-p\S|(?:redis|valkey|keydb)-cli[^\n]*[ \t]-a[ \t]",
        r"Basic [A-Za-z0-9+/]",
        r"://[^\s/?#]*@",
        # user:password@tcp(db:3306)/app, user:password@/app (Go MySQL DSNs)
        r"@(?:(?:tcp|udp)[46]?|unix)\(|:[^\s/]*@/",
        r"LTAI|CAIS|AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9]",
        r"xox[a-z]|xapp-|hooks\.slack\.com",
        r"gh[pousr]_|github_pat_|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas)-",
        r"eyJ",
        r"AIza|[sr]k_(?:live|test)_|npm_|pypi-",
        r"-{4,5} ?BEGIN|PuTTY-User-Key-File",
        # a line that is one long base64 run: key material without its BEGIN line
        r"(?m:^[ \t]*(?:[0-9]+(?::|[ \t]+))?[A-Za-z0-9+/]{40,}={0,2}[ \t]*\r?$)",
    )
)

# Blanks at a line start, then perhaps a line number or count as ``grep -n``, ``cat -n``
# and ``uniq -c`` print them (``12:``, ``      3 ``).
LINE_LEAD = r"[ \t]*(?:[0-9]+(?::|[ \t]+)[ \t]*)?"

# An optional run of backslashes lets keys and values inside escaped JSON match.
_Q = r"\\{0,3}[\"']"


def _quoted_value(group: str, quote: str) -> str:
    # Up to the matching closing quote, stepping over backslash escapes.
    return rf"(?P<{group}>(?:(?!(?P={quote}))(?:\\.|[^\\\n]))+)(?P={quote})"


_SCHEMES = r"bearer|basic|token|bot|digest|negotiate|ntlm|hmac|fc|aws4-hmac-sha256|apikey|sharedkey"
# "X-Forwarded-Auth: bearer <token>": the credentials follow the scheme word.
_SCHEME_WORD = rf"(?:(?i:{_SCHEMES})[ \t]+(?=[^\s,;&\"'<>]))?"


# A function call in source code, as a Python traceback prints it on an indented line
# (``    token = get_token(sid)``, ``    salt = os.urandom(16)``): a callee with a '.' or
# '_', arguments without quotes (a literal could be a secret), then the end of the line
# or of an enclosing call. Not a value: an env or config line is not indented.
_CODE_CALL = re.compile(
    r"(?:await[ \t]+)?[A-Za-z_][A-Za-z0-9_]*[._][A-Za-z0-9_.]*\([^\"'\n()]*\)"
    r"(?=[),;]*[ \t]*\r?$)"
)


def _is_code_call(text: str, pos: int) -> bool:
    return text[:1] in (" ", "\t") and _CODE_CALL.match(text, pos) is not None


def _query_key(match: re.Match[str]) -> bool:
    """``?key=``/``&key=``: in a URL query, ``key`` is an API key (``/geo?key=...``)."""
    at = match.start("key")
    return at > 0 and match.string[at - 1] in "?&" and match["key"].lower() == "key"


def _keyed(bare: Bare, *groups: str, query: bool = False) -> Spans:
    """The value, if the name in group ``key`` is a secret one (or, with ``query``, the
    API key of a URL query)."""

    def spans(match: re.Match[str]) -> list[Span]:
        span = first(match, groups)
        if span is None or _is_code_call(match.string, span[0]):
            return []
        if is_secret_key(match["key"], match.string[slice(*span)], bare=bare):
            return [span]
        return [span] if query and _query_key(match) else []

    return spans


@functools.lru_cache(maxsize=8)
def _first_at(command: re.Pattern[str], line: str) -> int:
    # Once per line, however many flags it holds (a str caches its hash).
    found = command.search(line)
    return len(line) if found is None else found.start()


def _after_command(command: re.Pattern[str], *groups: str) -> Spans:
    """The value, if ``command`` occurs earlier on the line (mysql ... -phunter2)."""
    found = value(*groups)

    def spans(match: re.Match[str]) -> list[Span]:
        return found(match) if _first_at(command, match.string) < match.start() else []

    return spans


def _key_kind(m: re.Match[str]) -> str:
    return kind_for_key(m["key"])


def _key_rule(
    name: str,
    pattern: str,
    needles: tuple[tuple[str, ...], ...],
    after: int,
    *,
    begin: Begin = Begin.ANYWHERE,
    starts: tuple[str, ...] = (),
    bare: Bare = Bare.ANY,
    values: tuple[str, ...] = ("val",),
    query: bool = False,
) -> Rule:
    """A rule on ``key`` = ``value`` shapes: the value goes if the name is secret."""
    keyed = _keyed(bare, *values, query=query)
    needles = (KEY_NEEDLES, *needles)
    return rule(name, pattern, _key_kind, needles, keyed, after=after, begin=begin, starts=starts)


def _auth_kind(m: re.Match[str]) -> str:
    scheme = (m["scheme"] or "").strip().lower()
    return {"bearer": "bearer-token", "basic": "basic-auth"}.get(scheme, "authorization")


# A YAML block scalar indicator: the value is on the following, more indented lines.
BLOCK_INDICATOR = re.compile(r"[|>][0-9+-]{0,2}[ \t]*(?:#[^\n]*)?")
# Where an unquoted value at a line start ends when the line goes on like a command
# line: before a flag or another assignment ("--db-password=x --api-key y").
_NEXT_ARG = re.compile(r"[ \t](?=--?[A-Za-z]|[A-Za-z_][A-Za-z0-9_.-]*=)")


def _closing_quote(rest: str) -> int:
    """Where the quoted value that ``rest`` starts with ends: at the end of the line if
    it closes there, else at the first quote not escaped by a backslash; -1: none."""
    quote = rest[0]
    if len(rest) > 1 and rest.endswith(quote):
        return len(rest) - 1
    close = rest.find(quote, 1)
    while close > 0 and rest[close - 1] == "\\":
        close = rest.find(quote, close + 1)
    return close


def _line_value(match: re.Match[str]) -> list[Span]:
    """KEY=value / KEY: value at a line start: the rest of the line is the value
    (env values may hold spaces), unless quoted or followed by more arguments."""
    start, end = match.span("rest")
    rest = match.string[start:end].rstrip(" \t")
    quote = rest[:1]
    close = _closing_quote(rest) if quote in ("'", '"') else -1
    if close > 1:
        span = (start + 1, start + close)
    else:
        if not rest or BLOCK_INDICATOR.fullmatch(rest):
            return []
        if match["sep"] == "=" and _is_code_call(match.string, start):
            return []
        stop = _NEXT_ARG.search(rest)
        if stop is not None:
            rest = rest[: stop.start()].rstrip(" \t")
        span = (start, start + len(rest))
    bare = Bare.ANY if match["sep"].endswith("=") else Bare.STRONG
    return [span] if is_secret_key(match["key"], match.string[slice(*span)], bare=bare) else []


# Values of "name VALUE" lines that are settings, not secrets.
_SWITCHES = frozenset({"yes", "no", "on", "off"})


def _spaced_value(match: re.Match[str]) -> list[Span]:
    """name VALUE at a line start: the rest of the line, unless it is a switch or a
    path (``PasswordAuthentication no``, ``HostKey /etc/ssh/ssh_host_ed25519_key``).
    After ``ENV``/``setenv`` the name is a variable's, one word or several."""
    start, end = _strip(match.string, *match.span("val"))
    value = match.string[start:end].rstrip("\r")
    if value.lower() in _SWITCHES or value.startswith(("/", "~", "./")):
        return []
    bare = Bare.ANY if match["env"] else Bare.SPACED
    if not is_secret_key(match["key"], value, bare=bare):
        return []
    return [(start, start + len(value))]


def _netrc_password(match: re.Match[str]) -> list[Span]:
    """``machine HOST login USER password PASS`` (.netrc): the word after ``password``."""
    return [match.span("val")] if match.string.lstrip().startswith(("machine", "default")) else []


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start] in " \t":
        start += 1
    while end > start and text[end - 1] in " \t":
        end -= 1
    return start, end


_COOKIE_START = re.compile(r"[ \t]*[^=;,\s]+=")


def _cookie_values(match: re.Match[str]) -> list[Span]:
    """Cookie: a=1; b=2 (every value); Set-Cookie: a=1; Path=/ (the first value only).
    A header value that does not start with name= is no cookie (``cookie: str`` in code)."""
    text = match.string
    pos, end = match.span("val")
    if not _COOKIE_START.match(text, pos, end):
        return []
    spans: list[Span] = []
    first_only = match["name"].lower().startswith("set-")
    while pos < end:
        semi = text.find(";", pos, end)
        stop = end if semi < 0 else semi
        equals = text.find("=", pos, stop)
        if equals >= 0:
            spans.append(_strip(text, equals + 1, stop))
            if first_only:
                break
        pos = stop + 1
    return spans


_MYSQL = re.compile(r"(?i:mysql|mariadb)")
_REDIS_CLI = re.compile(r"(?:redis|valkey|keydb)-cli")
_FLAG_VALUE = r"(?:(?P<q>[\"'])(?P<qval>[^\"'\n]+)(?P=q)|(?P<val>[^\s\"']+))"

# Applied in this order, before the token rules; each sees the previous ones' output,
# and a value that is already a marker is left alone.
KEY_RULES: tuple[Rule, ...] = (
    # KEY=value / KEY: value at the start of a line (env, export, YAML, ini, headers
    # as curl -v prints them).
    rule(
        "line_start",
        rf"^{LINE_LEAD}(?:[-*<>][ \t]+)?(?:(?:export|declare[ \t]+-[A-Za-z]+|set|readonly)[ \t]+)?"
        rf"(?P<key>{KEY})[ \t]*(?P<sep>:?=(?!=)|:)[ \t]*(?P<rest>[^\n]*)",
        _key_kind,
        (KEY_NEEDLES, ("=", ":")),
        _line_value,
        after=After.SEP,
        begin=Begin.LINE,
    ),
    # name VALUE at the start of a line (Java properties, sshd- and redis-style configs)
    rule(
        "spaced",
        rf"^{LINE_LEAD}(?P<env>(?:ENV|setenv)[ \t]+)?(?P<key>{KEY})[ \t]+(?P<val>[^\s=:][^\n]*)",
        _key_kind,
        (KEY_NEEDLES,),
        _spaced_value,
        # TAG: followed by blanks (a value may start with '-', as ARG's may not)
        after=After.TAG,
        begin=Begin.LINE_KEY,
    ),
    # The signature of a presigned or SAS URL, which grants access until it expires
    # (OSS/S3 Signature=, X-Amz-Signature=, X-Goog-Signature=, Azure sig=).
    rule(
        "url_signature",
        r"(?<=[?&])(?i:sig|signature|x-amz-signature|x-goog-signature)=(?P<val>[^\s&#\"'<>]+)",
        "url-signature",
        (("sig",), ("?", "&")),
    ),
    # machine HOST login USER password PASS (.netrc)
    rule(
        "netrc_password",
        r"(?<![^ \t])password[ \t]+(?P<val>[^\s]+)",
        "password",
        (("password",), ("login",), ("machine", "default")),
        _netrc_password,
        starts=("password",),
    ),
    # {"name": "DB_PASSWORD", "value": "..."}: Kubernetes and container env lists.
    _key_rule(
        "name_value",
        rf"(?P<q1>{_Q})name(?P=q1)[ \t]*:[ \t]*(?P<q2>{_Q})(?P<key>{KEY})(?P=q2)"
        rf"[ \t]*,[ \t]*(?P<q3>{_Q})value(?P=q3)[ \t]*:[ \t]*(?P<q>{_Q})"
        + _quoted_value("val", "q"),
        (("name",), ("value",)),
        After.QUOTE,
        starts=("\\", '"', "'"),
    ),
    # <add key="DbPassword" value="..."/>, <property name="password" value="..."/>
    _key_rule(
        "key_value_attributes",
        rf"\b(?:key|name)[ \t]*=[ \t]*(?P<q1>{_Q})(?P<key>{KEY})(?P=q1)[ \t]+value[ \t]*=[ \t]*"
        rf"(?P<q>{_Q})" + _quoted_value("val", "q"),
        (("value",),),
        After.QUOTE,
        starts=("key", "name"),
    ),
    # <password>...</password>, <ns:clientSecret>...</ns:clientSecret>
    _key_rule(
        "xml_element",
        rf"<(?P<tag>(?:[A-Za-z_][A-Za-z0-9_.-]*:)?(?P<key>{KEY}))(?:[ \t][^<>\n]*)?>"
        r"(?P<val>[^<\n]+)</(?P=tag)[ \t]*>",
        (("</",),),
        After.TAG,
        starts=("<",),
    ),
    # "key": "value", 'key' => 'value', \"key\":\"value\" (JSON, dict reprs, escaped JSON)
    _key_rule(
        "quoted_key",
        rf"(?P<kq>{_Q})(?P<key>{KEY})(?P=kq)[ \t]*(?:=>|:=|[:=])[ \t]*"
        rf"(?:(?P<q>{_Q})" + _quoted_value("val", "q") + r"|"
        r"(?P<bare>(?!(?:null|true|false)\b|[{\[])[^\s,}\]\"'\\]+))",
        (("'", '"'),),
        After.QUOTE,
        values=("val", "bare"),
        starts=("\\", '"', "'"),
    ),
    # Authorization: <scheme> <credentials>
    rule(
        "authorization",
        rf"(?i:\b(?:proxy-)?authorization){_Q}?[ \t]*[:=][ \t]*{_Q}?"
        rf"(?P<scheme>(?i:{_SCHEMES})[ \t]+)?(?P<val>[^\"'\\\n]+?)(?={_Q}|[ \t]*$)",
        _auth_kind,
        (("authorization",),),
        starts=("authorization", "proxy-authorization"),
        fold=True,
    ),
    # Cookie: session=...; Set-Cookie: sessionid=...; Path=/ as a header line (curl -v)
    # or in quotes (-H 'Cookie: ...', JSON headers)
    rule(
        "cookie",
        r"(?:^[ \t]*(?:[<>][ \t]+)?|(?<=[\"']))(?P<name>(?i:set-cookie|cookie))"
        r"(?:\\{0,3}[\"'])?[ \t]*:[ \t]*(?:\\{0,3}[\"'])?(?P<val>[^\n\"'\\]*)",
        "cookie",
        (("cookie",),),
        _cookie_values,
    ),
    # key=value anywhere (logfmt, query strings, env-prefixed commands in ps output, Go's :=)
    _key_rule(
        "assignment",
        rf"(?<![A-Za-z0-9_.-])(?P<key>{KEY})[ \t]*:?=(?!=)[ \t]*"
        rf"(?:(?P<q>[\"'])"
        + _quoted_value("val", "q")
        + rf"|{_SCHEME_WORD}(?P<bare>[^\s&\"'<>]+))",
        (("=",),),
        After.SEP,
        begin=Begin.KEY_RUN,
        values=("val", "bare"),
        query=True,
    ),
    # --password VALUE, -token VALUE (command lines as ps prints them)
    _key_rule(
        "flag",
        rf"(?<!\S)--?(?P<key>{KEY})[ \t]+(?P<val>[^\s-]\S*)",
        (("-",),),
        After.ARG,
        begin=Begin.KEY_RUN,
    ),
    # mysql -uroot -phunter2 / -p'hunter2' (also mysqldump, mysqladmin, mariadb)
    rule(
        "mysql_password",
        r"(?<![^ \t])-p" + _FLAG_VALUE,
        "password",
        (("mysql", "mariadb"), (" -p", "\t-p")),
        _after_command(_MYSQL, "qval", "val"),
        starts=("-p",),
    ),
    # redis-cli -a hunter2
    rule(
        "redis_cli_password",
        r"(?<![^ \t])-a[ \t]+" + _FLAG_VALUE,
        "password",
        (("-cli",), (" -a", "\t-a")),
        _after_command(_REDIS_CLI, "qval", "val"),
        starts=("-a",),
    ),
    # db_password: value / clientSecret: value in the middle of a line
    _key_rule(
        "colon",
        rf"(?<![A-Za-z0-9_.-])(?P<key>{KEY})[ \t]*:[ \t]+{_SCHEME_WORD}(?P<val>[^\s,;&\"'<>]+)",
        ((":",),),
        After.COLON,
        begin=Begin.KEY_RUN,
        bare=Bare.NONE,
    ),
    rule(
        "bearer",
        r"(?i:\bbearer)[ \t]+(?P<val>[A-Za-z0-9._~+/=-]{8,})",
        "bearer-token",
        (("bearer",),),
        starts=("bearer",),
        fold=True,
    ),
    # Basic <base64>: the lookahead keeps English ("Basic information") readable.
    rule(
        "basic",
        r"\bBasic[ \t]+(?=[A-Za-z0-9+/]{0,200}(?:[0-9+/=]|[a-z][A-Z]))"
        r"(?P<val>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])",
        "basic-auth",
        (("basic",),),
        starts=("Basic",),
    ),
    # scheme://user:PASSWORD@host; the password may itself contain '@'
    rule(
        "url_password",
        # no "[" in the user part: "[REDACTED:url-token]@" is scrubbed already
        r"://[^\s:/?#@\"'<>\[]{0,256}:(?P<val>[^\s/?#\"'<>]+)(?=@)",
        "url-password",
        (("://",), ("@",)),
        starts=("://",),
    ),
    # https://<key>@o123.ingest.sentry.io/1: a token as the whole user part of a URL
    rule(
        "url_token",
        r"://(?P<val>(?=[A-Za-z_-]*[0-9])(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,})@",
        "url-token",
        (("://",), ("@",)),
        starts=("://",),
    ),
    # user:password@tcp(db:3306)/app, user:password@/app: Go MySQL DSNs (no scheme)
    rule(
        "dsn_password",
        r"(?<![^\s\"'=(,;])[A-Za-z0-9_.%+~-]{1,128}:(?P<val>[^\s/\"']{1,256})"
        r"@(?=(?:(?:tcp|udp)[46]?|unix)\(|/)",
        "url-password",
        (("@tcp", "@udp", "@unix", "@/"),),
    ),
)
