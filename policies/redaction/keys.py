"""Key names under which command output stores secrets, and the kind of each.

A name is read as words: separators and camelCase humps split it (``DbPassword`` ->
``db password``, ``SECRET_KEY_BASE`` -> ``secret key base``). It holds a secret when

* a word ends in a strong secret word (``password``, ``PGPASSWORD``, ``clientSecret``,
  ``identitytoken``, ``SENTRY_DSN``, ``GPG_PASSPHRASE``), wherever it stands; or
* a word is exactly a weak one (``key``, ``pass``, ``pwd``, ``auth``) at the end of the
  name (``REDIS_AUTH``, ``x-api-key``; not ``sort_key`` or ``public_key``, whose values
  are names), or ``key`` after a qualifier anywhere (``API_KEY_VALUE``); or
* the last word is exactly a short secret word (``ak``, ``sk``: Alibaba Cloud's
  AccessKey pair as ``OSS_AK``/``OSS_SK``; ``salt``, ``hmac``, ``seed``). Only whole
  words count: ``TASK``, ``DISK``, ``SKU``, ``AKS_CLUSTER``, ``BASALT`` and
  ``SEED_FILE`` are no secrets;

unless every word after the last secret word only describes it (``PASSWORD_FILE``,
``TOKEN_TTL``, ``secretName``): those values are paths, names and numbers.

A bare weak word (``pass=``, ``pwd=``, ``"auth":``) counts only where the syntax says
"this is a setting"; ``PASS: test_x`` (test output) stays readable. ``pwd`` also
counts before a colon (YAML ``pwd: hunter2``), the short secret words wherever the
syntax allows a one-word name (``AK=``, ``salt: x``), and ``key`` alone only spelled
``KEY`` (an environment variable; a lower-case ``key=`` is a data key, as in logfmt
``key=orders:4121``). ``PWD`` (any case, alone) holding a path that starts with ``/``
or ``~`` is the working directory (``PWD=/code``, ``pwd: /srv/app``); any other value
is a password.

``name VALUE`` at a line start (Java properties, sshd/redis-style configs; ``Bare.SPACED``)
is read more strictly, as such a line may as well be prose or a listing: the name must
be an identifier of several words (``db.password``; not ``password policy ...``), and
``key`` ends it only after a qualifier (``api.key``; not ``server.key  server.crt``).

``KEY`` is the regex for a candidate name; ``is_secret_key`` decides.
"""

from __future__ import annotations

import enum
import functools
import re

# A candidate key: an identifier run containing a needle. The lookahead scans the run
# once from its start (every rule starts KEY at a run start), then the run is taken
# possessively: linear in the run length.
KEY = (
    r"(?=[A-Za-z0-9_.-]*?(?i:secret|token|pass|pwd|key|auth|credential|dsn|ak|sk|salt|hmac|seed))"
    r"[A-Za-z0-9_.-]++"
)

# Lower-cased substrings one of which every secret key name contains.
KEY_NEEDLES = (
    "secret",
    "token",
    "pass",
    "credential",
    "key",
    "pwd",
    "auth",
    "dsn",
    "ak",
    "sk",
    "salt",
    "hmac",
    "seed",
)

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_STRONG_ENDINGS = (
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
    "dsn",
    "apikey",
    "accesskey",
    "accesskeyid",
    "secretkey",
    "privatekey",
    # plurals (API_KEYS, DB_PASSWORDS, webhook_secrets)
    "secrets",
    "tokens",
    "passwords",
    "passwds",
    "passphrases",
    "apikeys",
)
# A plural secret word may count things: max_tokens=4096 is a number, not a secret.
_PLURAL_ENDINGS = ("secrets", "tokens", "passwords", "passwds", "passphrases", "keys")
_KEY_WORDS = frozenset({"key", "keyid", "keys"})
_WEAK = _KEY_WORDS | {"pass", "pwd", "auth"}
# Secret words that count only whole and last: inside other words they are everywhere
# (task, disk, basalt), and before other words they name something else (SEED_FILE).
# Each gives its own kind.
_SHORT_KINDS = {
    "ak": "access-key-id",
    "sk": "secret-key",
    "salt": "salt",
    "hmac": "hmac-key",
    "seed": "seed",
}
# "key" in the middle of a name is a secret only after one of these (API_KEY_VALUE).
_KEY_QUALIFIERS = frozenset(
    "api access secret private signing encryption decryption master client app auth"
    " account consumer hmac license storage session shared".split()
)
# "<word> key" names whose values are data keys, not credentials.
_BENIGN_KEY_PREFIXES = frozenset(
    "sort sorting cache primary partition foreign routing object idempotency dedup dedupe"
    " group hash range row shard lookup index unique order join public map metric label"
    " cursor search composite natural surrogate".split()
)
# Words that, following the last secret word, say the value only describes the secret.
_DESCRIPTIVE = frozenset(
    "file files path paths dir directory name names length len size bits min max count"
    " ttl expiry expires expire expiration expired lifetime timeout age in at days hours"
    " minutes seconds secs ms enabled enable disabled disable required require changed"
    " change updated update reset rotated rotation policy policies type kind mode version"
    " format algorithm algo alg header param field env var url uri endpoint ref arn"
    " location prefix suffix hint label user username login email provider method scheme"
    " store manager backend source attempts retries strength prompt".split()
)


# Values that stand for "no secret here": literals, and the opening of a nested block
# (credentials_kwargs = {, "auth": {).
_NOT_A_VALUE = frozenset({"true", "false", "null", "none", "nil", "{", "[", "("})


class Bare(enum.Enum):
    """Which one-word names count as keys in a given syntax."""

    NONE = "none"  # mid-line "name: value": identifier-looking names only
    STRONG = "strong"  # "password: x" at a line start: strong words, not "pass: 3"
    ANY = "any"  # "pass=x", {"auth": ...}, --pass x, <pass>: weak words too
    SPACED = "spaced"  # "db.password VALUE" at a line start: see is_secret_key


# Output repeats its key names: what a name means is remembered for names up to this
# long (a cache of long ones could hold megabytes).
_CACHED_NAME = 128


def _split_words(name: str) -> tuple[tuple[str, ...], bool]:
    tokens = _WORD.findall(name)
    return tuple(t.lower() for t in tokens if not t.isdigit()), len(tokens) == 1


_cached_words = functools.lru_cache(maxsize=4096)(_split_words)


def _words(name: str) -> tuple[tuple[str, ...], bool]:
    """The name's words, numbers left out, and whether it is one word alone."""
    return _cached_words(name) if len(name) <= _CACHED_NAME else _split_words(name)


def _is_secret_word(words: tuple[str, ...], i: int, bare: Bare, alone: bool, upper: bool) -> bool:
    word = words[i]
    last = i == len(words) - 1
    if len(words) == 1 and (bare is Bare.NONE or bare is Bare.SPACED):
        # A lone word mid-line or before a blank is prose ("password policy ...").
        return False
    if word.endswith(_STRONG_ENDINGS):
        return True
    if word in _SHORT_KINDS:
        return last and (len(words) > 1 or alone)
    if word not in _WEAK:
        return False
    if len(words) == 1:
        # PASS_2 or 22AUTH is no setting name a tool would use.
        if not alone:
            return False
        if word in _KEY_WORDS:
            return upper and word == "key"
        return bare is Bare.ANY or (word == "pwd" and bare is Bare.STRONG)
    if last:
        if word not in _KEY_WORDS:
            return True
        if bare is Bare.SPACED:
            # OPENAI_KEY sk-..., api.key x; not server.key in a listing
            return words[i - 1] not in _BENIGN_KEY_PREFIXES and (
                upper or words[i - 1] in _KEY_QUALIFIERS
            )
        return words[i - 1] not in _BENIGN_KEY_PREFIXES
    return word in _KEY_WORDS and i > 0 and words[i - 1] in _KEY_QUALIFIERS


def _last_secret_word(
    words: tuple[str, ...], bare: Bare, alone: bool, upper: bool = False
) -> int | None:
    for i in range(len(words) - 1, -1, -1):
        if _is_secret_word(words, i, bare, alone, upper):
            return i
    return None


def is_secret_key(name: str, value: str = "", *, bare: Bare = Bare.ANY) -> bool:
    """Whether a value stored under ``name`` is to be redacted.

    ``value`` lets literals (``true``, ``null``) and the working directory through:
    ``PWD=/code`` is a path, while ``pwd=hunter2`` (ODBC connection strings, config
    files) is a password.

    Raises:
        Nothing.
    """
    words, alone = _words(name)
    last = _last_secret_word(words, bare, alone, name.isupper())
    if last is None:
        return False
    trailing = words[last + 1 :]
    if trailing and all(word in _DESCRIPTIVE for word in trailing):
        return False
    stripped = value.strip(" \t\"'")
    if stripped.lower() in _NOT_A_VALUE:
        return False
    if stripped.isdigit() and words[last].endswith(_PLURAL_ENDINGS):
        return False
    return not (words == ("pwd",) and value.startswith(("/", "~")))


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
    ("PASSPHRASES", "password"),
    ("PASSWORDS", "password"),
    ("PASSWDS", "password"),
    ("SECRETS", "secret"),
    ("TOKENS", "token"),
    ("KEYS", "key"),
    ("PASSPHRASE", "password"),
    ("PASSWORD", "password"),
    ("PASSWD", "password"),
    ("PASS", "password"),
    ("PWD", "password"),
    ("SECRET", "secret"),
    ("TOKEN", "token"),
    ("CREDENTIALS", "credentials"),
    ("CREDENTIAL", "credentials"),
    ("AUTH", "credentials"),
    ("DSN", "dsn"),
    ("KEY", "key"),
)


def _suffix_kind(squashed: str) -> str | None:
    for suffix, kind in _SUFFIX_KINDS:
        if squashed.endswith(suffix):
            return kind
    return None


def kind_for_key(name: str) -> str:
    """The redaction kind for a value stored under key ``name``."""
    return _cached_kind(name) if len(name) <= _CACHED_NAME else _kind(name)


def _kind(name: str) -> str:
    upper = name.upper().strip("-")
    named = _NAMED_KINDS.get(upper)
    if named is not None:
        return named
    words, alone = _words(name)
    if words and words[-1] in _SHORT_KINDS:
        return _SHORT_KINDS[words[-1]]
    kind = _suffix_kind(re.sub(r"[^A-Z0-9]", "", upper))
    if kind is None:
        # The secret word is not last (SECRET_KEY_BASE): name the kind after it.
        last = _last_secret_word(words, Bare.ANY, alone, name.isupper())
        if last is not None:
            kind = _suffix_kind("".join(words[: last + 1]).upper())
    return kind or "secret"


_cached_kind = functools.lru_cache(maxsize=4096)(_kind)
