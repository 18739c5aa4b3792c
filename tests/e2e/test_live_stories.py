"""The three stories ExecGate exists for, against a real `execgate serve` (bubblewrap)
and the real CLI: S1 the live env (scrubbed), S2 a packet capture of the traffic to a
slow dependency, S3 a profile of the function process under load. Each story reads
only its own results, so the module shares one server."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli.exits import EXIT_PENDING
from tests.e2e import stories
from tests.e2e.conftest import Served

pytestmark = [pytest.mark.bwrap, pytest.mark.usefixtures("story_tools")]


async def approved(served: Served, *argv: str) -> dict[str, object]:
    asked = await served.cli("exec", "--json", served.instance, "--", *argv)
    assert asked.code == EXIT_PENDING, asked.stderr
    vote = await stories.approve(served, str(asked.json()["approval_id"]))
    result = vote["result"]
    assert isinstance(result, dict), vote
    return result


async def collected(served: Served, path: str) -> bytes:
    result = await served.cli("collect", "--json", served.instance, path)
    assert result.code == 0, result.stderr
    return await stories.download(str(result.json()["link"]))


async def test_s1_env_of_the_live_instance_is_scrubbed(shared_served: Served) -> None:
    result = await shared_served.cli("exec", "--json", shared_served.instance, "--", "env")
    assert result.code == 0, result.stderr
    stories.assert_env_scrubbed(str(result.json()["stdout"]))


async def test_s2_a_capture_of_the_slow_dependency_is_approved_collected_and_valid(
    shared_served: Served, tmp_path: Path
) -> None:
    stories.require_full_mapping()
    async with stories.traffic(shared_served, "/checkout?delay_ms=200", rate=10):
        result = await approved(shared_served, *stories.capture_argv("slow.cap"))
    assert result["exit_code"] == 0, result  # tcpdump stopped after its packets
    capture = await collected(shared_served, "/tmp/slow.cap")
    stories.assert_capture_of_the_slow_dependency(capture, tmp_path)


async def test_s3_a_profile_under_load_is_approved_collected_and_names_the_hot_function(
    shared_served: Served,
) -> None:
    ps = await shared_served.cli("exec", "--json", shared_served.instance, "--", "ps", "aux")
    assert ps.code == 0, ps.stderr
    pid = stories.function_pid(str(ps.json()["stdout"]))
    async with stories.traffic(shared_served, "/report?rounds=2000000", rate=3):
        result = await approved(shared_served, *stories.profile_argv(pid, "profile.json"))
    assert result["exit_code"] == 0, result
    stories.assert_profile_names_the_hot_function(
        await collected(shared_served, "/tmp/profile.json")
    )
