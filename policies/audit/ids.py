"""Short, URL-safe, roughly time-sortable ids: ``ex_`` + 9 characters of milliseconds
since the epoch + 10 random characters, in lower-case Crockford base32."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

EXEC_PREFIX = "ex_"
APPROVAL_PREFIX = "ap_"
SESSION_PREFIX = "se_"


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A fresh id; ids made later sort after earlier ones (to the millisecond)."""
    millis = time.time_ns() // 1_000_000
    return prefix + _b32(millis, 9) + _b32(secrets.randbits(50), 10)
