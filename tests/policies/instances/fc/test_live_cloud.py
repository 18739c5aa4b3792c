"""A smoke test against real Function Compute; runs only when the environment names a
live function and credentials:

    EXECGATE_FC_LIVE_ACCOUNT_ID, EXECGATE_FC_LIVE_REGION, EXECGATE_FC_LIVE_FUNCTION,
    ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET
    (optional: ALIBABA_CLOUD_SECURITY_TOKEN, EXECGATE_FC_LIVE_QUALIFIER,
     EXECGATE_FC_LIVE_API_VERSION=2016-08-15 with EXECGATE_FC_LIVE_SERVICE,
     EXECGATE_FC_LIVE_ENDPOINT)

When the function has no live instance, one invocation is made to start one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import anyio
import pytest

from policies.instances.fc import FcEndpoint, FcProvider, credentials_from_env
from policies.instances.fc.endpoint import FC2, FC3, ApiVersion
from policies.types import Limits, Stream, Target

REQUIRED = (
    "EXECGATE_FC_LIVE_ACCOUNT_ID",
    "EXECGATE_FC_LIVE_REGION",
    "EXECGATE_FC_LIVE_FUNCTION",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
)
MISSING = [name for name in REQUIRED if not os.environ.get(name)]

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason="live FC smoke test needs " + ", ".join(MISSING) + " set"
)


@pytest.fixture
async def live() -> AsyncIterator[tuple[FcProvider, str, str | None]]:
    env = os.environ
    version: ApiVersion = FC2 if env.get("EXECGATE_FC_LIVE_API_VERSION") == FC2 else FC3
    endpoint = FcEndpoint(
        account_id=env["EXECGATE_FC_LIVE_ACCOUNT_ID"],
        region=env["EXECGATE_FC_LIVE_REGION"],
        api_version=version,
        endpoint=env.get("EXECGATE_FC_LIVE_ENDPOINT") or None,
        service=env.get("EXECGATE_FC_LIVE_SERVICE") or None,
    )
    provider = FcProvider("live", endpoint, credentials_from_env(env))
    try:
        yield provider, env["EXECGATE_FC_LIVE_FUNCTION"], env.get("EXECGATE_FC_LIVE_QUALIFIER")
    finally:
        await provider.aclose()


async def test_a_live_instance_runs_a_command_and_reports_its_exit_status(
    live: tuple[FcProvider, str, str | None],
) -> None:
    provider, function, qualifier = live
    output: list[tuple[Stream, bytes]] = []

    async def collect(stream: Stream, data: bytes) -> None:
        output.append((stream, data))

    with anyio.fail_after(120):
        instances = await provider.list_instances(function, qualifier)
        if not instances:
            await provider.invoke(function, b"{}", qualifier)
            instances = await provider.list_instances(function, qualifier)
        if not instances:
            pytest.skip("the function has no live instance even after an invocation")
        target = Target(function, instances[0].instance_id, qualifier=qualifier)
        limits = Limits(timeout=60.0, idle_timeout=30.0)
        ok = await provider.exec(
            target,
            ["sh", "-c", "echo live-out; echo live-err >&2"],
            limits=limits,
            on_output=collect,
        )
        failing = await provider.exec(
            target, ["sh", "-c", "exit 3"], limits=limits, on_output=collect
        )
    assert (ok.exit_code, failing.exit_code) == (0, 3)
    assert b"".join(d for s, d in output if s == "stdout") == b"live-out\n"
    assert b"".join(d for s, d in output if s == "stderr") == b"live-err\n"
