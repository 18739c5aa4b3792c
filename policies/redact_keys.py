"""Key names under which command output stores secrets, and the kind of each.

``KEY`` matches a name that ends in a secret-ish word (``DB_PASSWORD``,
``clientSecret``, ``x-api-key``, ``ALIBABA_CLOUD_ACCESS_KEY_ID``); ``IDENT_KEY`` only
the identifier-looking ones (a separator or camelCase hump before the word).
``kind_for_key`` names what a value under such a key is, for its redaction marker.
"""

from __future__ import annotations

import re

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


KEY = (
    _RUN
    + "(?:(?i:"
    + _ends_with(*_ANY_PREFIX, *(f"[_.-]{w}" for w in _SEP_WORDS), "access_key_id")
    + ")|"
    + _ends_with(*(f"[a-z0-9]{w}" for w in _CAMEL[:3]))
    + ")"
)
# Only identifier-looking names (a separator or a camelCase hump right before the
# word): used where a bare English word would be too eager ("token: expired").
IDENT_KEY = (
    _RUN
    + "(?:(?i:"
    + _ends_with(*(f"[_.-]{w}" for w in (*_WORDS, *_SEP_WORDS)))
    + ")|"
    + _ends_with(*(f"[a-z0-9]{w}" for w in _CAMEL))
    + ")"
)

# Lower-cased substrings one of which every name KEY matches contains.
KEY_NEEDLES = ("secret", "token", "pass", "credential", "key", "pwd")

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
