"""Function Compute response bodies -> ExecGate values and errors (pure).

Error bodies come in two shapes: FC 3.0 ``{"Code","Message","RequestId"}`` and FC 2.0
``{"ErrorCode","ErrorMessage"}`` (the public docs also show ``errorCode/errorMessage``).
Codes are compared case-insensitively and several spellings are accepted, because the
docs and SDKs disagree (``InvalidAccessKeyID`` vs ``InvalidAccessKeyId``). The server's
message text never goes into a safe message: only the code and the request id, and
only when they look like identifiers.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from policies.errors import (
    InstanceError,
    InstanceNotRunning,
    ProviderAccessDenied,
    ProviderAuthError,
    ProviderUnavailable,
)
from policies.types import ISOLATION_MODES, InstanceInfo

logger = logging.getLogger(__name__)

_IDENT_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,80}$")

INSTANCE_GONE_CODES = frozenset(
    {
        "instancenotfound",
        "instancenotexist",
        "instancenotexists",
        "instancenotrunning",
        "instancereleased",
        "instancenotavailable",
    }
)
AUTH_CODES = frozenset(
    {
        "signaturenotmatch",
        "signaturedoesnotmatch",
        "invalidaccesskeyid",
        "invalidaccesskeyid.notfound",
        "invalidaccesskeyid.inactive",
        "invalidsecuritytoken",
        "invalidsecuritytoken.expired",
        "invalidsecuritytoken.malformed",
        "invalidsecuritytoken.mismatchwithaccesskey",
        "securitytokenexpired",
        "requesttimetooskewed",
        "invalidtimestamp",
        "invalidtimestamp.expired",
    }
)
DENIED_PREFIXES = ("accessdenied", "forbidden", "notauthorized", "unauthorized")
MISSING_TARGET_CODES = frozenset(
    {"functionnotfound", "servicenotfound", "aliasnotfound", "versionnotfound"}
)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    code: str | None
    request_id: str | None


def _ident(value: object) -> str | None:
    return value if isinstance(value, str) and _IDENT_RE.match(value) else None


def _first(data: dict[str, Any], *keys: str) -> object:
    for key in keys:
        if key in data:
            return data[key]
    return None


def parse_error_body(body: bytes, request_id_header: str | None = None) -> ErrorBody:
    """The error code and request id of an FC error body; None for what is missing."""
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        return ErrorBody(None, _ident(request_id_header))
    code = _ident(_first(data, "Code", "ErrorCode", "errorCode", "code"))
    request_id = _ident(_first(data, "RequestId", "requestId")) or _ident(request_id_header)
    return ErrorBody(code, request_id)


def _suffix(err: ErrorBody) -> str:
    parts = [p for p in (err.code, f"request id {err.request_id}" if err.request_id else None) if p]
    return f" ({', '.join(parts)})" if parts else ""


def classify_error(
    status: int,
    body: bytes,
    *,
    function: str,
    instance: str | None = None,
    request_id_header: str | None = None,
    provider: str | None = None,
) -> InstanceError:
    """Turn a non-success FC response into the ExecGate error it means.

    ``instance`` is set for exec requests: an unknown instance then means the instance
    is not running (released on-demand instances are simply gone); ``provider`` names
    the configured provider in its hint.
    """
    err = parse_error_body(body, request_id_header)
    code = (err.code or "").lower()
    fields: dict[str, Any] = {"http_status": status, "provider_code": err.code}
    if err.request_id:
        fields["request_id"] = err.request_id
    logger.info("Function Compute refused a request: HTTP %s %s", status, err.code or "-")
    if instance is not None and (
        code in INSTANCE_GONE_CODES or (status == 404 and "instance" in code)
    ):
        return InstanceNotRunning(instance, function, provider=provider, **fields)
    if code in AUTH_CODES or (status == 401 and not code):
        return ProviderAuthError(
            "the provider rejected ExecGate's credentials" + _suffix(err), **fields
        )
    if code.startswith(DENIED_PREFIXES) or (status == 403 and not code):
        return ProviderAccessDenied(
            f"the provider denied access to function {function}" + _suffix(err), **fields
        )
    if code in MISSING_TARGET_CODES:
        return ProviderUnavailable(
            f"the provider has no function {function} (or its service/qualifier)" + _suffix(err),
            **fields,
        )
    return ProviderUnavailable(f"the provider answered HTTP {status}" + _suffix(err), **fields)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _version_id(value: object) -> str | None:
    """FC 3.0 sends ``versionId`` as a string, FC 2.0 as a number: both become text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _str_or_none(value)


@dataclass(frozen=True, slots=True)
class InstancePage:
    instances: list[InstanceInfo]
    next_token: str | None


def parse_instances(
    body: bytes, *, function: str, provider: str, qualifier: str | None
) -> InstancePage:
    """A ListInstances body (FC 3.0 or 2.0) -> live instances.

    ``sandboxed`` is an ExecGate extension sent by the local host when an instance
    runs without a sandbox; real FC instances are isolated, so it defaults to True.
    ``isolation`` (also the local host's) is kept only when it is a known mode.

    Raises: ProviderUnavailable when the body is not a ListInstances answer.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    items = _first(data, "instances", "Instances") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(items, list):
        raise ProviderUnavailable("the provider's instance list could not be read")
    instances: list[InstanceInfo] = []
    for item in items:
        if not isinstance(item, dict) or not _str_or_none(item.get("instanceId")):
            logger.warning("skipping an instance entry without an instanceId")
            continue
        sandboxed = item.get("sandboxed", True)
        isolation = item.get("isolation")
        instances.append(
            InstanceInfo(
                instance_id=item["instanceId"],
                function=function,
                provider=provider,
                status=_str_or_none(item.get("status")) or "Running",
                qualifier=_str_or_none(item.get("qualifier")) or qualifier,
                version_id=_version_id(item.get("versionId")),
                created_ms=_int_or_none(item.get("createdTimeMs")),
                sandboxed=sandboxed if isinstance(sandboxed, bool) else True,
                isolation=isolation if isolation in ISOLATION_MODES else None,
            )
        )
    return InstancePage(instances, _str_or_none(data.get("nextToken")))
