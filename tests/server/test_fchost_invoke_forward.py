"""The invocation forwarder's HTTP framing, fed bytes (no sockets)."""

from __future__ import annotations

import pytest

from server.fchost.forward import ForwardError, build_request, parse_response


def test_the_request_carries_the_path_body_and_request_id() -> None:
    raw = build_request("/checkout?delay_ms=5", b"{}", "rid-1")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /checkout?delay_ms=5 HTTP/1.1"
    assert b"Content-Length: 2" in head and b"x-fc-request-id: rid-1" in head
    assert body == b"{}"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/x\r\nX-Injected: 1", id="crlf-header-injection"),
        pytest.param("/x HTTP/1.0", id="space"),
        pytest.param("http://elsewhere/", id="absolute-url"),
        pytest.param("", id="empty"),
    ],
)
def test_a_path_that_could_change_the_request_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        build_request(path, b"", "rid")


def test_a_response_is_parsed_up_to_its_content_length() -> None:
    raw = (
        b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}trailing"
    )
    answer = parse_response(raw)
    assert (answer.status, answer.content_type, answer.body) == (504, "application/json", b"{}")


@pytest.mark.parametrize(
    "raw",
    [pytest.param(b"", id="empty"), pytest.param(b"garbage\r\n\r\n", id="no-status-line")],
)
def test_bytes_that_are_not_a_response_raise_forward_error(raw: bytes) -> None:
    with pytest.raises(ForwardError):
        parse_response(raw)
