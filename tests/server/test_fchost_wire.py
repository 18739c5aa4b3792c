"""The local instance host on the wire, seen by a raw WebSocket / HTTP client: frame
types, both stdin forms, close codes, idleTimeout, pings, and refusals before upgrade."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from policies.instances.fc import Credentials, FcEndpoint
from policies.instances.fc.endpoint import RequestTarget
from policies.instances.fc.signing import signed_headers
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from server.fchost import build_fc_host_app
from tests.support.fchost import ACCOUNT_ID, KEY_ID, KEY_SECRET, REGION, LocalFc, local_fc
from tests.support.servers import serve_asgi

BOUND = 60


@pytest.fixture
async def fc(tmp_path: Path) -> AsyncIterator[LocalFc]:
    async with local_fc(tmp_path) as fc:
        yield fc


def _headers(target: RequestTarget, *, when: float | None = None) -> dict[str, str]:
    return signed_headers(
        "GET",
        target.path,
        Credentials(KEY_ID, KEY_SECRET),
        account_id=ACCOUNT_ID,
        timestamp=time.time() if when is None else when,
    )


def _exec_target(
    fc: LocalFc,
    argv: Sequence[str],
    *,
    stdin: bool = False,
    idle: int = 60,
    instance: str | None = None,
) -> RequestTarget:
    instance = instance or fc.instance_ids()[0]
    return fc.provider.endpoint.exec("demo", None, instance, argv, stdin=stdin, idle_timeout=idle)


async def _open(fc: LocalFc, target: RequestTarget, **headers: str) -> ClientConnection:
    return await connect(
        fc.provider.endpoint.ws_url(target),
        additional_headers={**_headers(target), **headers},
        proxy=None,
        ping_interval=None,
    )


async def _drain(ws: ClientConnection) -> list[str | bytes]:
    messages: list[str | bytes] = []
    try:
        while True:
            messages.append(await ws.recv())
    except ConnectionClosed:
        return messages


async def test_output_travels_in_text_frames_and_the_socket_closes_with_1000(
    fc: LocalFc,
) -> None:
    with anyio.fail_after(BOUND):
        ws = await _open(fc, _exec_target(fc, ["sh", "-c", "echo out; echo err >&2"]))
        messages = await _drain(ws)
    assert sorted(messages, key=str) == ["\x01out\n", "\x02err\n"]
    assert ws.close_code == 1000


async def test_output_that_is_not_utf8_travels_in_binary_frames(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        ws = await _open(fc, _exec_target(fc, ["printf", "\\377\\001"]))
        messages = await _drain(ws)
    assert messages == [b"\x01\xff\x01"]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([b"raw ", b"binary", b""], "\x01raw binary"),
        (["\x00typed ", "\x00text", "\x00"], "\x01typed text"),
    ],
    ids=["binary-frames", "nul-prefixed-text-frames"],
)
async def test_stdin_is_accepted_in_both_forms_and_closed_by_an_empty_frame(
    fc: LocalFc, frames: list[str | bytes], expected: str
) -> None:
    with anyio.fail_after(BOUND):
        ws = await _open(fc, _exec_target(fc, ["cat"], stdin=True))
        for frame in frames:
            await ws.send(frame)
        messages = await _drain(ws)
    assert "".join(m for m in messages if isinstance(m, str)) == expected
    assert ws.close_code == 1000


async def test_the_host_closes_a_silent_session_after_idle_timeout(fc: LocalFc) -> None:
    # `cat` waits for stdin in silence, and ends once the closed session ends its stdin
    # (a command that ran on would keep the host from stopping for its shutdown grace).
    with anyio.fail_after(BOUND):
        ws = await _open(fc, _exec_target(fc, ["cat"], stdin=True, idle=1))
        messages = await _drain(ws)
    assert messages == []
    assert ws.close_code == 1000


async def test_the_host_answers_pings(fc: LocalFc) -> None:
    with anyio.fail_after(BOUND):
        ws = await _open(fc, _exec_target(fc, ["cat"], stdin=True))
        pong = await ws.ping()
        await pong
        await ws.send(b"")
        await _drain(ws)


async def _refusal(
    fc: LocalFc, target: RequestTarget, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    with pytest.raises(InvalidStatus) as caught:
        await connect(fc.provider.endpoint.ws_url(target), additional_headers=headers, proxy=None)
    response = caught.value.response
    body: dict[str, str] = json.loads(bytes(response.body or b""))
    assert response.headers["x-fc-request-id"] == body["RequestId"]
    return response.status_code, body


async def test_a_missing_instance_is_refused_with_404_before_the_upgrade(fc: LocalFc) -> None:
    target = _exec_target(fc, ["true"], instance="c-00000000-00000000-000000000000")
    with anyio.fail_after(BOUND):
        status, body = await _refusal(fc, target, _headers(target))
    assert (status, body["Code"]) == (404, "InstanceNotFound")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("drop-authorization", 400, "MissingRequiredHeader"),
        ("drop-date", 400, "MissingRequiredHeader"),
        ("bad-signature", 403, "SignatureNotMatch"),
        ("unknown-key", 403, "InvalidAccessKeyID"),
        ("stale-date", 403, "RequestTimeTooSkewed"),
        ("other-account", 403, "AccessDenied"),
    ],
    ids=lambda v: str(v),
)
async def test_bad_signatures_are_refused_with_fc_json_before_the_upgrade(
    fc: LocalFc, change: str, status: int, code: str
) -> None:
    target = _exec_target(fc, ["true"])
    headers = _headers(target, when=time.time() - 3600 if change == "stale-date" else None)
    if change == "drop-authorization":
        del headers["Authorization"]
    elif change == "drop-date":
        del headers["Date"]
    elif change == "bad-signature":
        headers["Authorization"] = headers["Authorization"][:-6] + "AAAAA="
    elif change == "unknown-key":
        headers["Authorization"] = headers["Authorization"].replace(KEY_ID, "LTAInobody000")
    elif change == "other-account":
        headers = signed_headers(
            "GET",
            target.path,
            Credentials(KEY_ID, KEY_SECRET),
            account_id="999",
            timestamp=time.time(),
        )
    with anyio.fail_after(BOUND):
        got_status, body = await _refusal(fc, target, headers)
    assert (got_status, body["Code"]) == (status, code)


async def test_a_tty_session_is_refused_as_an_invalid_argument(fc: LocalFc) -> None:
    target = _exec_target(fc, ["sh"])
    target = RequestTarget(target.path, [(k, "true" if k == "tty" else v) for k, v in target.query])
    with anyio.fail_after(BOUND):
        status, body = await _refusal(fc, target, _headers(target))
    assert (status, body["Code"]) == (400, "InvalidArgument")


@pytest.mark.parametrize(
    "path",
    [
        "/2016-08-15/services/svc/functions/demo/instances/c-1/exec",
        "/2023-03-30/functions/demo/instances/c-1/exec/more",
        "/2023-03-30/nothing-here",
    ],
    ids=["fc2-exec-path", "longer-fc3-path", "unknown-path"],
)
async def test_an_upgrade_to_an_unknown_path_gets_the_fc_json_error_plain_http_gets(
    fc: LocalFc, path: str
) -> None:
    target = RequestTarget(path, [("command", "true")])
    async with httpx.AsyncClient(trust_env=False) as http:
        with anyio.fail_after(BOUND):
            plain = await http.get(fc.base_url + path, headers=_headers(target))
            status, body = await _refusal(fc, target, _headers(target))
    assert (plain.status_code, plain.json()["Code"]) == (404, "PathNotSupported")
    assert (status, body["Code"]) == (404, "PathNotSupported")
    assert path in body["Message"]


async def test_http_routes_check_the_signature_and_unknown_paths_get_fc_errors(
    fc: LocalFc,
) -> None:
    listing = fc.provider.endpoint.instances("demo", None)
    async with httpx.AsyncClient(trust_env=False) as http:
        with anyio.fail_after(BOUND):
            unsigned = await http.get(fc.provider.endpoint.url(listing))
            unknown = await http.get(f"{fc.base_url}/2023-03-30/nothing-here")
    assert (unsigned.status_code, unsigned.json()["Code"]) == (400, "MissingRequiredHeader")
    assert (unknown.status_code, unknown.json()["Code"]) == (404, "PathNotSupported")


async def test_instance_lists_page_with_limit_and_next_token(tmp_path: Path) -> None:
    functions = [LocalFunction("demo", env={}, provisioned=3)]
    async with local_fc(tmp_path, functions=functions) as fc:
        endpoint = fc.provider.endpoint
        pages: list[list[str]] = []
        token: str | None = "0"
        async with httpx.AsyncClient(trust_env=False) as http:
            with anyio.fail_after(BOUND):
                while token is not None:
                    target = RequestTarget(
                        "/2023-03-30/functions/demo/instances",
                        [("limit", "2"), ("nextToken", token)],
                    )
                    body = (await http.get(endpoint.url(target), headers=_headers(target))).json()
                    pages.append([item["instanceId"] for item in body["instances"]])
                    token = body.get("nextToken")
            listed = [info.instance_id for info in await fc.provider.list_instances("demo")]
            expected = fc.instance_ids()
    assert [len(page) for page in pages] == [2, 1]
    assert [i for page in pages for i in page] == listed == expected


async def test_the_host_checks_dates_against_its_own_clock(tmp_path: Path) -> None:
    manager = InstanceManager(
        [LocalFunction("demo", env={})], SandboxRunner("auto"), tmp_path, clock=time.monotonic
    )
    await manager.start()
    try:
        app = build_fc_host_app(
            manager, {KEY_ID: KEY_SECRET}, account_id=ACCOUNT_ID, wall_clock=lambda: 0.0
        )
        async with serve_asgi(app) as base_url, httpx.AsyncClient(trust_env=False) as http:
            endpoint = FcEndpoint(ACCOUNT_ID, REGION, endpoint=base_url)
            target = endpoint.instances("demo", None)
            with anyio.fail_after(BOUND):
                late = await http.get(endpoint.url(target), headers=_headers(target))
                on_time = await http.get(endpoint.url(target), headers=_headers(target, when=60.0))
    finally:
        await manager.aclose()
    assert (late.status_code, late.json()["Code"]) == (403, "RequestTimeTooSkewed")
    assert on_time.status_code == 200
