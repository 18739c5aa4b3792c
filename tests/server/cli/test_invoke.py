"""`execgate invoke`'s summary counts what happened to every invocation it sent: answers
through the real local host (an echo function, and demo-api in its sandbox), function
errors and a host that does not answer."""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from policies.instances.local import LocalFunction
from server.cli.exits import EXIT_UNAVAILABLE
from server.cli.invoke import Tally, run_invoke
from server.localstate import KEYS_FILE, write_address
from server.settings import DEMO_API_CODE, Settings
from tests.policies.instances.sandbox_helpers import require_bwrap
from tests.support.fchost import ACCOUNT_ID, KEY_ID, KEY_SECRET, local_fc

RATE = 100.0
DURATION = 0.2
SENT = int(RATE * DURATION)


def _settings(data_dir: Path, url: str) -> Settings:
    (data_dir / KEYS_FILE).write_text(
        json.dumps({"access_key_id": KEY_ID, "access_key_secret": KEY_SECRET})
    )
    write_address(data_dir, url, ACCOUNT_ID)
    return Settings(data_dir=data_dir)


async def _load(
    settings: Settings, capsys: pytest.CaptureFixture[str], function: str, path: str = "/"
) -> tuple[int, dict[str, Any]]:
    args = argparse.Namespace(
        function=function, path=path, rate=RATE, duration=DURATION, data="", json=True
    )
    code = await run_invoke(args, settings)
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, summary


def test_p50_and_p99_are_the_nearest_rank_latencies() -> None:
    tally = Tally()
    for ms in range(100, 0, -1):
        tally.record("200", ms / 1000)
    tally.record("502", None)
    summary = tally.summary("f", "/", elapsed=1.0)
    assert (summary["p50_ms"], summary["p99_ms"]) == (50.0, 99.0)
    assert (summary["count"], summary["ok"], summary["errors"]) == (101, 100, 1)
    assert summary["statuses"] == {"200": 100, "502": 1}


async def test_every_answered_invocation_is_counted_ok_with_its_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = LocalFunction("echo", env={}, provisioned=1, instance_concurrency=SENT)
    async with local_fc(tmp_path / "host", functions=[echo]) as fc:
        code, summary = await _load(_settings(tmp_path, fc.base_url), capsys, "echo")
    assert code == 0
    assert (summary["count"], summary["ok"], summary["errors"]) == (SENT, SENT, 0)
    assert summary["statuses"] == {"200": SENT}
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]


async def test_invocations_a_host_does_not_answer_are_counted_as_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, summary = await _load(_settings(tmp_path, f"http://127.0.0.1:{port}"), capsys, "x")
    assert code == EXIT_UNAVAILABLE
    assert (summary["count"], summary["ok"], summary["errors"]) == (SENT, 0, SENT)
    assert sum(summary["statuses"].values()) == SENT
    assert summary["p50_ms"] is None and summary["p99_ms"] is None


DEMO = LocalFunction(
    "demo-api",
    env={},
    provisioned=1,
    instance_concurrency=SENT,
    max_on_demand=0,
    code_dir=DEMO_API_CODE,
    command=("python3", "/code/server.py"),
)


@pytest.mark.bwrap
async def test_answers_of_the_function_in_its_sandbox_count_ok_and_its_errors_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_bwrap()
    async with local_fc(tmp_path / "host", functions=[DEMO]) as fc:
        settings = _settings(tmp_path, fc.base_url)
        _, fine = await _load(settings, capsys, "demo-api")
        code, down = await _load(settings, capsys, "demo-api", "/checkout?down=1")
    assert (fine["ok"], fine["errors"], fine["statuses"]) == (SENT, 0, {"200": SENT})
    assert code == EXIT_UNAVAILABLE
    assert (down["count"], down["ok"], down["errors"]) == (SENT, 0, SENT)
    assert down["statuses"] == {"504": SENT}  # the function's own answer: no downstream


@pytest.mark.bwrap
async def test_invocations_of_a_function_nobody_can_reach_are_counted_as_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_bwrap()
    async with local_fc(tmp_path / "host", functions=[DEMO]) as fc:
        (instance,) = fc.instance_ids("demo-api")
        socket_path = fc.manager.invocation_socket(instance)
        assert socket_path is not None
        os.unlink(socket_path)  # the function runs on, but no connection reaches it
        code, summary = await _load(_settings(tmp_path, fc.base_url), capsys, "demo-api")
    assert code == EXIT_UNAVAILABLE
    assert (summary["count"], summary["ok"], summary["errors"]) == (SENT, 0, SENT)
    assert summary["statuses"] == {"502": SENT}
