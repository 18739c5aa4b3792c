"""Checks a request's Function Compute signature against the host's keys (pure).

The checks, in order: the headers are present and well formed, the ``Date`` is within
15 minutes of now, the access key is known, the signature matches, an ``STS.`` key
carries a known ``x-fc-security-token`` (any token presented must be known), and the
``x-fc-account-id``, when sent, is the host's account. Failures carry the status and
FC 3.0 error code the real service uses for them.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from policies.instances.fc.signing import (
    HEADER_ACCOUNT_ID,
    HEADER_SECURITY_TOKEN,
    parse_authorization,
    parse_http_date,
    sign,
)

MAX_CLOCK_SKEW_SECONDS = 15 * 60
STS_KEY_PREFIX = "STS."


@dataclass(frozen=True, slots=True)
class AuthFailure:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class HostKeys:
    """What the host accepts: access key id -> secret, and the valid STS tokens."""

    keys: Mapping[str, str]
    sts_tokens: Collection[str] = ()
    account_id: str = ""


def _single_valued(headers: Iterable[tuple[str, str]]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for key, value in headers:
        low = key.lower()
        if low in out:
            return None
        out[low] = value
    return out


def verify_request(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    keys: HostKeys,
    *,
    now: float,
) -> AuthFailure | None:
    """None when the request is properly signed by a known key; the failure otherwise.

    ``path`` is the request's unescaped path without the query, as the client signed it.
    """
    fields = _single_valued(headers)
    if fields is None:
        return AuthFailure(400, "InvalidArgument", "a request header is given twice")
    for required in ("authorization", "date"):
        if required not in fields:
            return AuthFailure(
                400, "MissingRequiredHeader", f"required HTTP header {required} was not specified"
            )
    parsed = parse_authorization(fields["authorization"])
    if parsed is None:
        return AuthFailure(400, "InvalidArgument", "Authorization must be 'FC id:signature'")
    key_id, signature = parsed
    when = parse_http_date(fields["date"])
    if when is None:
        return AuthFailure(400, "InvalidArgument", "the Date header is not an RFC 1123 date")
    if abs(now - when) > MAX_CLOCK_SKEW_SECONDS:
        return AuthFailure(
            403, "RequestTimeTooSkewed", "the Date header is more than 15 minutes off"
        )
    secret = keys.keys.get(key_id)
    if secret is None:
        return AuthFailure(403, "InvalidAccessKeyID", "invalid access key ID")
    expected = sign(method, path, fields, secret)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        return AuthFailure(
            403,
            "SignatureNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your access key and signing method",
        )
    token = fields.get(HEADER_SECURITY_TOKEN)
    if key_id.startswith(STS_KEY_PREFIX) and not token:
        return AuthFailure(403, "InvalidSecurityToken", "an STS access key needs a security token")
    if token is not None and not any(
        hmac.compare_digest(token.encode(), known.encode()) for known in keys.sts_tokens
    ):
        return AuthFailure(403, "InvalidSecurityToken", "the security token is not valid")
    account = fields.get(HEADER_ACCOUNT_ID)
    if account is not None and keys.account_id and account != keys.account_id:
        return AuthFailure(403, "AccessDenied", "the request is for another account")
    return None
