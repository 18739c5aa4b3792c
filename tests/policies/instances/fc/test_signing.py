"""FC request signing, byte for byte against the documented formula."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from policies.instances.fc.credentials import Credentials
from policies.instances.fc.signing import (
    canonical_fc_headers,
    http_date,
    parse_authorization,
    parse_http_date,
    sign,
    signed_headers,
    string_to_sign,
)

PATH = "/2023-03-30/functions/demo-api/instances/c-1a2b3c/exec"
DATE = "Thu, 27 Nov 2026 09:41:00 GMT"


def _documented(secret: str, text: str) -> str:
    """The documented formula, computed here without the module under test."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_signature_over_a_fixed_request_equals_the_documented_formula() -> None:
    headers = {
        "Date": DATE,
        "X-Fc-Account-Id": "1234567890",
        "x-fc-security-token": "sts-token",
        "Host": "1234567890.cn-hangzhou.fc.aliyuncs.com",
        "User-Agent": "execgate",
    }
    expected_text = (
        f"GET\n\n\n{DATE}\nx-fc-account-id:1234567890\nx-fc-security-token:sts-token\n{PATH}"
    )
    assert string_to_sign("GET", PATH, headers) == expected_text
    assert sign("GET", PATH, headers, "secret-key") == _documented("secret-key", expected_text)


def test_content_md5_and_content_type_take_their_lines_in_the_string_to_sign() -> None:
    headers = {
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "Content-Type": "application/octet-stream",
        "Date": DATE,
        "x-fc-account-id": "42",
    }
    text = (
        "POST\n1B2M2Y8AsgTpgAmY7PhCfg==\napplication/octet-stream\n"
        f"{DATE}\nx-fc-account-id:42\n/2023-03-30/functions/f/invocations"
    )
    assert sign("POST", "/2023-03-30/functions/f/invocations", headers, "k") == _documented(
        "k", text
    )


def test_fc_headers_are_lower_cased_and_sorted_and_others_left_out() -> None:
    headers = {"X-Fc-B": "2", "x-fc-a": "1", "X-Other": "no", "Date": DATE}
    assert canonical_fc_headers(headers) == "x-fc-a:1\nx-fc-b:2\n"


def test_a_header_given_twice_in_different_case_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        string_to_sign("GET", PATH, {"Date": DATE, "date": DATE})


def test_signed_headers_carry_date_account_token_and_authorization() -> None:
    creds = Credentials("STS.key", "secret", "token-1")
    headers = signed_headers("GET", PATH, creds, account_id="99", timestamp=0.0)
    assert headers["Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert headers["x-fc-account-id"] == "99"
    assert headers["x-fc-security-token"] == "token-1"
    text = f"GET\n\n\n{headers['Date']}\nx-fc-account-id:99\nx-fc-security-token:token-1\n{PATH}"
    assert headers["Authorization"] == f"FC STS.key:{_documented('secret', text)}"


def test_signed_headers_without_a_token_send_no_token_header() -> None:
    headers = signed_headers(
        "GET", PATH, Credentials("key", "secret"), account_id="99", timestamp=0.0
    )
    assert "x-fc-security-token" not in headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FC key:c2ln", ("key", "c2ln")),
        ("FC STS.key:abc+/=", ("STS.key", "abc+/=")),
        ("Bearer key:sig", None),
        ("FC key", None),
        ("FC :sig", None),
        ("", None),
    ],
    ids=["plain", "sts", "other-scheme", "no-signature", "no-key", "empty"],
)
def test_authorization_header_parsing(value: str, expected: tuple[str, str] | None) -> None:
    assert parse_authorization(value) == expected


def test_http_date_round_trips_and_garbage_is_none() -> None:
    assert http_date(1_795_773_221.0).endswith(" GMT")
    assert parse_http_date(http_date(1_795_773_221.0)) == 1_795_773_221.0
    assert parse_http_date("yesterday") is None
