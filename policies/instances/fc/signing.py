"""Function Compute request signing (pure).

The string to sign is::

    METHOD "\\n" Content-MD5 "\\n" Content-Type "\\n" Date "\\n"
    CanonicalizedFCHeaders            (x-fc-* lower-cased, sorted, "k:v\\n" each)
    Path                              (unescaped, without the query string)

and the header is ``Authorization: FC {AccessKeyId}:{base64(HMAC-SHA256(secret, S))}``.

About the query string: the official Python and Go SDKs sign the API path alone; the
Node.js SDK appends the sorted ``k=v`` query pairs only for HTTP-trigger paths
(``/proxy/...``), never for API calls such as ListInstances or InstanceExec. So the
``command`` parameters of an exec are not covered by the signature: the same is true of
every official client, and the transport (TLS to the FC endpoint) protects them.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import hmac
from collections.abc import Mapping

from policies.instances.fc.credentials import Credentials

FC_HEADER_PREFIX = "x-fc-"
HEADER_ACCOUNT_ID = "x-fc-account-id"
HEADER_SECURITY_TOKEN = "x-fc-security-token"  # noqa: S105 - a header name, not a secret
HEADER_REQUEST_ID = "x-fc-request-id"
HEADER_INSTANCE_ID = "x-fc-instance-id"


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for key, value in headers.items():
        low = key.lower()
        if low in lowered:
            raise ValueError(f"header {low!r} is given twice")
        lowered[low] = value
    return lowered


def canonical_fc_headers(headers: Mapping[str, str]) -> str:
    """``x-fc-*`` headers, lower-cased and sorted, one ``key:value\\n`` each.

    Raises: ValueError when a header name repeats with different case.
    """
    lowered = _lower_keys(headers)
    return "".join(
        f"{key}:{lowered[key]}\n" for key in sorted(lowered) if key.startswith(FC_HEADER_PREFIX)
    )


def string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """The exact text that is HMACed; ``path`` is unescaped and has no query.

    Raises: ValueError when a header name repeats with different case.
    """
    lowered = _lower_keys(headers)
    return (
        f"{method.upper()}\n"
        f"{lowered.get('content-md5', '')}\n"
        f"{lowered.get('content-type', '')}\n"
        f"{lowered.get('date', '')}\n"
        f"{canonical_fc_headers(lowered)}{path}"
    )


def sign(method: str, path: str, headers: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA256 signature of a request.

    Raises: ValueError when a header name repeats with different case.
    """
    digest = hmac.new(
        secret.encode("utf-8"),
        string_to_sign(method, path, headers).encode("utf-8"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization(access_key_id: str, signature: str) -> str:
    return f"FC {access_key_id}:{signature}"


def parse_authorization(value: str) -> tuple[str, str] | None:
    """``FC id:signature`` -> (id, signature); None when the header is malformed."""
    scheme, _, rest = value.strip().partition(" ")
    key_id, sep, signature = rest.strip().partition(":")
    if scheme != "FC" or not sep or not key_id or not signature:
        return None
    return key_id, signature


def http_date(timestamp: float) -> str:
    """RFC 1123 date in GMT, as the ``Date`` header carries it."""
    return email.utils.formatdate(timestamp, usegmt=True)


@functools.lru_cache(maxsize=64)  # requests within a second carry the same Date
def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch, or None when the value is not an RFC 1123 date."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def content_md5(body: bytes) -> str:
    """Base64 of the MD5 digest, as ``Content-MD5`` wants it (integrity, not security)."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def signed_headers(
    method: str,
    path: str,
    credentials: Credentials,
    *,
    account_id: str,
    timestamp: float,
    content_type: str | None = None,
    body: bytes | None = None,
) -> dict[str, str]:
    """Every header a signed FC request needs: Date, x-fc-*, Content-*, Authorization."""
    headers: dict[str, str] = {"Date": http_date(timestamp), HEADER_ACCOUNT_ID: account_id}
    if credentials.security_token:
        headers[HEADER_SECURITY_TOKEN] = credentials.security_token
    if content_type is not None:
        headers["Content-Type"] = content_type
    if body is not None:
        headers["Content-MD5"] = content_md5(body)
    signature = sign(method, path, headers, credentials.access_key_secret)
    headers["Authorization"] = authorization(credentials.access_key_id, signature)
    return headers
