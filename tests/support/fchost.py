"""A local FC instance host on loopback with FC providers pointed at it, for tests.

    async with local_fc(tmp_path) as fc:
        result = await fc.provider.exec(Target("demo", fc.instance_id), ["true"], ...)

The instance manager runs on a fake clock (``fc.clock.advance(seconds)``) so idle release
is driven by the test, not by waiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from policies.instances.fc import Credentials, FcEndpoint, FcProvider
from policies.instances.fc.endpoint import StdinMode
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.types import Limits, RunResult, Stream, Target
from server.fchost import build_fc_host_app
from tests.support.servers import serve_asgi

ACCOUNT_ID = "1234567890123456"
REGION = "cn-test"
KEY_ID = "LTAItestkey0001"
KEY_SECRET = "test-secret-0001"
FUNCTION = "demo"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Output:
    """Collects what an exec streamed, per stream."""

    chunks: list[tuple[Stream, bytes]] = field(default_factory=list)

    async def __call__(self, stream: Stream, data: bytes) -> None:
        self.chunks.append((stream, data))

    def of(self, stream: Stream) -> bytes:
        return b"".join(data for s, data in self.chunks if s == stream)

    @property
    def stdout(self) -> bytes:
        return self.of("stdout")

    @property
    def stderr(self) -> bytes:
        return self.of("stderr")


@dataclass
class LocalFc:
    manager: InstanceManager
    clock: FakeClock
    base_url: str
    provider: FcProvider
    providers: list[FcProvider]

    def provider_with(
        self,
        credentials: Credentials | None = None,
        *,
        stdin_mode: StdinMode = "binary",
        kill_grace: int | None = None,
    ) -> FcProvider:
        """Another provider against the same host (closed with the fixture), signed with
        ``credentials`` (KEY_ID's by default); ``kill_grace``: seconds between TERM and
        KILL, and so how long stopping a command whose wrapper is gone waits for it."""
        endpoint = dataclasses.replace(
            self.provider.endpoint,
            stdin_mode=stdin_mode,
            kill_grace=self.provider.endpoint.kill_grace if kill_grace is None else kill_grace,
        )
        provider = FcProvider("local", endpoint, credentials or Credentials(KEY_ID, KEY_SECRET))
        self.providers.append(provider)
        return provider

    def instance_ids(self, function: str = FUNCTION) -> list[str]:
        return [info.instance_id for info in self.manager.list(function)]

    async def run(
        self,
        instance: str,
        argv: Sequence[str],
        *,
        limits: Limits | None = None,
        provider: FcProvider | None = None,
        function: str = FUNCTION,
    ) -> tuple[RunResult, Output]:
        output = Output()
        result = await (provider or self.provider).exec(
            Target(function, instance), argv, limits=limits or Limits(), on_output=output
        )
        return result, output


@contextlib.asynccontextmanager
async def local_fc(
    data_dir: Path,
    *,
    functions: Sequence[LocalFunction] | None = None,
    keys: Mapping[str, str] | None = None,
    sts_tokens: Collection[str] = (),
) -> AsyncIterator[LocalFc]:
    """A started manager, the FC host app on loopback and a provider signed with KEY_ID."""
    clock = FakeClock()
    manager = InstanceManager(
        functions or [LocalFunction(FUNCTION, env={"GREETING": "hello"}, provisioned=1)],
        SandboxRunner("auto"),
        data_dir,
        clock=clock,
    )
    await manager.start()
    app = build_fc_host_app(
        manager, keys or {KEY_ID: KEY_SECRET}, account_id=ACCOUNT_ID, sts_tokens=sts_tokens
    )
    try:
        async with serve_asgi(app) as base_url:
            endpoint = FcEndpoint(ACCOUNT_ID, REGION, endpoint=base_url)
            provider = FcProvider("local", endpoint, Credentials(KEY_ID, KEY_SECRET))
            fc = LocalFc(manager, clock, base_url, provider, [provider])
            try:
                yield fc
            finally:
                for each in fc.providers:
                    await each.aclose()
    finally:
        await manager.aclose()
