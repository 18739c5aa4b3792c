"""One collect transfer against a scripted provider: whatever goes wrong part way, no
artifact is presented as whole."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from policies.artifacts.local import LocalArtifactStore
from policies.collect.transfer import Transfer, transfer
from policies.errors import ArtifactError, ProviderUnavailable
from policies.ports import ArtifactInfo, OutputCallback
from policies.types import InstanceInfo, Limits, RunResult, Target
from tests.policies.artifacts.support import sha256

KEY = "2026/11/27/local/demo-api/c-1/ex_1/files/trace.cap"
TARGET = Target("demo-api", "c-1", provider="local")
HEADER = b"EXECGATE-COLLECT/1 "
DATA = bytes(range(256)) * 400


def lines(data: bytes) -> list[bytes]:
    text = base64.b64encode(data)
    return [text[i : i + 76] + b"\n" for i in range(0, len(text), 76)]


class ScriptedProvider:
    """Plays back stdout chunks, then ends the exec as told."""

    name = "local"

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        result: RunResult | None = None,
        raise_after: bool = False,
    ) -> None:
        self._chunks = chunks
        self._result = result or RunResult(exit_code=0)
        self._raise = raise_after
        self.argv: Sequence[str] = ()

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        return []

    async def exec(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        self.argv = argv
        for chunk in self._chunks:
            await on_output("stdout", chunk)
        if self._raise:
            raise ProviderUnavailable("the exec channel broke")
        return self._result

    async def aclose(self) -> None:
        return None


class FailingStore(LocalArtifactStore):
    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        max_bytes: int | None = None,
    ) -> ArtifactInfo:
        async for _ in chunks:
            raise ArtifactError("the disk is full")
        raise ArtifactError("the disk is full")


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path, signing_key=b"k" * 32, base_url=lambda: "http://x")


def nothing_stored(store: LocalArtifactStore) -> bool:
    objects = store.root / "objects"
    partial = store.root / "partial"
    return not (objects.exists() and any(p.is_file() for p in objects.rglob("*"))) and not (
        partial.exists() and any(partial.iterdir())
    )


async def run(provider: ScriptedProvider, store: LocalArtifactStore) -> Transfer:
    return await transfer(
        provider,
        TARGET,
        "/tmp/trace.cap",
        max_bytes=1 << 20,
        limits=Limits(),
        store=store,
        key=KEY,
        content_type="application/vnd.tcpdump.pcap",
    )


async def test_a_complete_transfer_is_stored(store: LocalArtifactStore) -> None:
    body = [HEADER + b"ok %d\n" % len(DATA), *lines(DATA), HEADER + b"end\n"]
    result = await run(ScriptedProvider(body), store)
    info = result.info
    assert info is not None and (info.size, info.sha256) == (len(DATA), sha256(DATA))


@pytest.mark.parametrize(
    ("chunks", "run_result", "failure"),
    [
        pytest.param(
            [HEADER + b"ok %d\n" % len(DATA), *lines(DATA)[:100]],
            None,
            "transfer_failed",
            id="cut-without-end",
        ),
        pytest.param(
            [HEADER + b"ok %d\n" % len(DATA), *lines(DATA), HEADER + b"end\n"],
            RunResult(exit_code=1),
            "transfer_failed",
            id="non-zero-exit",
        ),
        pytest.param(
            [HEADER + b"ok %d\n" % len(DATA), *lines(DATA)[:50]],
            RunResult(exit_code=None, timed_out=True),
            "timeout",
            id="timeout",
        ),
        pytest.param([HEADER + b"ok 100\n", *lines(DATA)], None, "changed", id="file-grew"),
        pytest.param(
            [HEADER + b"ok %d\n" % (len(DATA) + 1), *lines(DATA), HEADER + b"end\n"],
            None,
            "changed",
            id="file-shrank",
        ),
        pytest.param(
            [HEADER + b"ok %d\n" % len(DATA), *lines(DATA)[:10], HEADER + b"fail read_error\n"],
            RunResult(exit_code=1),
            "transfer_failed",
            id="read-error",
        ),
    ],
)
async def test_an_unfinished_transfer_leaves_nothing(
    store: LocalArtifactStore, chunks: list[bytes], run_result: RunResult | None, failure: str
) -> None:
    result = await run(ScriptedProvider(chunks, result=run_result), store)
    assert result.failure == failure
    assert result.info is None
    assert nothing_stored(store)


async def test_a_broken_exec_channel_raises_and_leaves_nothing(
    store: LocalArtifactStore,
) -> None:
    chunks = [HEADER + b"ok %d\n" % len(DATA), *lines(DATA)[:200]]
    with pytest.raises(ProviderUnavailable):
        await run(ScriptedProvider(chunks, raise_after=True), store)
    assert nothing_stored(store)


async def test_a_failing_store_raises_its_own_error(tmp_path: Path) -> None:
    failing = FailingStore(tmp_path, signing_key=b"k" * 32, base_url=lambda: "http://x")
    body = [HEADER + b"ok %d\n" % len(DATA), *lines(DATA), HEADER + b"end\n"]
    with pytest.raises(ArtifactError) as caught:
        await run(ScriptedProvider(body), failing)
    assert caught.value.safe_message == "the disk is full"


async def test_the_instance_runs_the_transport_script_with_path_and_cap(
    store: LocalArtifactStore,
) -> None:
    provider = ScriptedProvider([HEADER + b"refuse not_found\n"])
    result = await run(provider, store)
    assert result.refused is not None
    assert provider.argv[:2] == ("/bin/sh", "-c")
    assert provider.argv[3:] == ("execgate-collect", "/tmp/trace.cap", str(1 << 20))
