"""FC error bodies and instance lists -> ExecGate errors and values."""

from __future__ import annotations

import json

import pytest

from policies.errors import (
    InstanceError,
    InstanceNotRunning,
    ProviderAccessDenied,
    ProviderAuthError,
    ProviderUnavailable,
)
from policies.instances.fc.responses import classify_error, parse_error_body, parse_instances


def _fc3(code: str) -> bytes:
    return json.dumps({"Code": code, "Message": "details", "RequestId": "REQ-1"}).encode()


def _fc2(code: str) -> bytes:
    return json.dumps({"ErrorCode": code, "ErrorMessage": "details"}).encode()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, _fc3("InstanceNotFound"), InstanceNotRunning),
        (404, _fc2("InstanceNotFound"), InstanceNotRunning),
        (404, _fc3("InstanceNotExist"), InstanceNotRunning),
        (400, _fc3("InstanceNotRunning"), InstanceNotRunning),
        (403, _fc3("SignatureNotMatch"), ProviderAuthError),
        (403, _fc2("SignatureNotMatch"), ProviderAuthError),
        (403, _fc3("InvalidAccessKeyID"), ProviderAuthError),
        (403, _fc3("InvalidAccessKeyId.NotFound"), ProviderAuthError),
        (403, _fc3("InvalidSecurityToken"), ProviderAuthError),
        (403, _fc3("RequestTimeTooSkewed"), ProviderAuthError),
        (401, b"", ProviderAuthError),
        (403, _fc3("AccessDenied"), ProviderAccessDenied),
        (403, _fc2("AccessDenied"), ProviderAccessDenied),
        (403, b"<html>forbidden</html>", ProviderAccessDenied),
        (404, _fc3("FunctionNotFound"), ProviderUnavailable),
        (404, _fc2("ServiceNotFound"), ProviderUnavailable),
        (500, _fc3("InternalServerError"), ProviderUnavailable),
        (502, b"Bad Gateway", ProviderUnavailable),
    ],
    ids=[
        "fc3-instance-not-found",
        "fc2-instance-not-found",
        "instance-not-exist",
        "instance-not-running",
        "fc3-signature",
        "fc2-signature",
        "key-id-upper",
        "key-id-not-found",
        "sts-token",
        "clock-skew",
        "bare-401",
        "fc3-access-denied",
        "fc2-access-denied",
        "bare-403",
        "function-not-found",
        "service-not-found",
        "server-error",
        "not-json",
    ],
)
def test_upgrade_failures_map_to_distinguishable_errors(
    status: int, body: bytes, error: type[InstanceError]
) -> None:
    err = classify_error(status, body, function="demo-api", instance="c-1")
    assert type(err) is error
    assert err.fields["http_status"] == status


def test_an_unknown_instance_names_the_instance_and_how_to_list_live_ones() -> None:
    err = classify_error(404, _fc3("InstanceNotFound"), function="demo-api", instance="c-9")
    assert isinstance(err, InstanceNotRunning)
    assert (err.fields["instance"], err.fields["function"]) == ("c-9", "demo-api")
    assert err.fields["request_id"] == "REQ-1"


def test_instance_codes_outside_an_exec_are_not_instance_errors() -> None:
    err = classify_error(404, _fc3("InstanceNotFound"), function="demo-api")
    assert type(err) is ProviderUnavailable


def test_safe_messages_never_carry_the_server_message_or_odd_identifiers() -> None:
    body = json.dumps(
        {"Code": "SignatureNotMatch", "Message": "secret=abc123", "RequestId": "x y<script>"}
    ).encode()
    err = classify_error(403, body, function="f", instance="c-1")
    assert "abc123" not in err.safe_message
    assert "script" not in err.safe_message
    assert "request_id" not in err.fields
    assert err.fields["provider_code"] == "SignatureNotMatch"


def test_the_request_id_header_stands_in_for_a_body_without_one() -> None:
    parsed = parse_error_body(_fc2("AccessDenied"), request_id_header="hdr-7")
    assert (parsed.code, parsed.request_id) == ("AccessDenied", "hdr-7")


def test_lower_camel_error_bodies_are_read_too() -> None:
    body = json.dumps({"errorCode": "AccessDenied", "errorMessage": "no"}).encode()
    assert parse_error_body(body).code == "AccessDenied"


def test_fc3_instance_lists_become_instance_infos() -> None:
    body = json.dumps(
        {
            "instances": [
                {
                    "instanceId": "c-1",
                    "versionId": "3",
                    "qualifier": "prod",
                    "status": "Running",
                    "createdTimeMs": 1700000000000,
                },
                {"instanceId": "c-2", "sandboxed": False},
                {"versionId": "no id"},
            ],
            "requestId": "r",
        }
    ).encode()
    page = parse_instances(body, function="fn", provider="cloud", qualifier=None)
    first, second = page.instances
    assert (first.instance_id, first.version_id, first.qualifier, first.created_ms) == (
        "c-1",
        "3",
        "prod",
        1700000000000,
    )
    assert (first.provider, first.function, first.sandboxed) == ("cloud", "fn", True)
    assert (second.status, second.sandboxed) == ("Running", False)
    assert page.next_token is None


def test_only_a_known_isolation_mode_of_an_instance_is_kept() -> None:
    body = json.dumps(
        {
            "instances": [
                {"instanceId": "c-1", "isolation": "bwrap-mapped"},
                {"instanceId": "c-2", "isolation": "\x1b]0;owned\x07"},
                {"instanceId": "c-3"},
            ]
        }
    ).encode()
    page = parse_instances(body, function="fn", provider="local", qualifier=None)
    assert [i.isolation for i in page.instances] == ["bwrap-mapped", None, None]


def test_fc2_instance_lists_become_instance_infos() -> None:
    body = json.dumps({"instances": [{"instanceId": "c-1", "versionId": "1"}]}).encode()
    page = parse_instances(body, function="fn", provider="p", qualifier="LATEST")
    assert [(i.instance_id, i.qualifier) for i in page.instances] == [("c-1", "LATEST")]


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"instances": 3}'], ids=["empty", "text", "list", "bad"]
)
def test_an_unreadable_instance_list_is_a_provider_error(body: bytes) -> None:
    with pytest.raises(ProviderUnavailable):
        parse_instances(body, function="fn", provider="p", qualifier=None)


@pytest.mark.parametrize(
    ("version", "shown"),
    [(1, "1"), (12, "12"), ("7", "7"), (True, None), (1.5, None), (None, None)],
    ids=["fc2-number", "fc2-larger-number", "fc3-string", "bool", "float", "missing"],
)
def test_a_numeric_fc2_version_id_is_kept_as_its_decimal_text(
    version: object, shown: str | None
) -> None:
    body = json.dumps({"instances": [{"instanceId": "c-1", "versionId": version}]}).encode()
    page = parse_instances(body, function="fn", provider="p", qualifier="LATEST")
    assert [i.version_id for i in page.instances] == [shown]


def test_an_unknown_instance_of_a_named_provider_says_how_to_list_that_providers_instances() -> (
    None
):
    err = classify_error(
        404, _fc3("InstanceNotFound"), function="demo-api", instance="c-9", provider="cloud"
    )
    assert isinstance(err, InstanceNotRunning)
    assert err.fields["provider"] == "cloud"
    assert "`execgate instances list demo-api --provider cloud`" in err.safe_message
