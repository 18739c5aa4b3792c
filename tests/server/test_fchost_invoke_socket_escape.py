"""An instance cannot turn the host's invocation forwarding against the host: the
function's ``invoke.sock`` is in a directory the instance writes, and a symbolic link
planted there must never make ExecGate connect to a socket of the host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.errors import ProviderUnavailable
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from server.fchost.forward import ForwardError, FunctionConnections
from tests.policies.instances.sandbox_helpers import require_bwrap
from tests.support.fchost import FakeClock

BOUND = 60


@pytest.fixture
async def host_socket(tmp_path: Path) -> AsyncIterator[tuple[Path, list[bytes]]]:
    """A unix socket of the host (as a database's or a container engine's would be)
    that records every connection made to it."""
    path = tmp_path / "host-service.sock"
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(4096))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhost-secret")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    path.chmod(0o777)
    try:
        yield path, seen
    finally:
        server.close()


@pytest.mark.bwrap
async def test_a_symlink_planted_as_the_invoke_socket_never_reaches_a_host_socket(
    tmp_path: Path, host_socket: tuple[Path, list[bytes]]
) -> None:
    require_bwrap()
    target, seen = host_socket
    # The function replaces its invocation socket by a link to the host's socket path.
    plant = f"ln -s {target} /run/fc/invoke.sock; exec sleep infinity"
    fn = LocalFunction("svc", env={}, provisioned=1, command=("sh", "-c", plant))
    manager = InstanceManager([fn], SandboxRunner("bwrap"), tmp_path / "data", clock=FakeClock())
    try:
        with anyio.fail_after(BOUND):
            try:
                await manager.start()
            except ProviderUnavailable:
                pass  # refusing the instance outright also holds
            else:
                instance = manager.list("svc")[0].instance_id
                socket_path = manager.invocation_socket(instance)
                assert socket_path is not None
                with pytest.raises(ForwardError):
                    await FunctionConnections().forward(
                        instance, socket_path, "/containers/create", b"{}", "rid-1"
                    )
    finally:
        await manager.aclose()
    assert seen == [], "the host's socket was reached through the instance's link"


async def test_a_real_socket_is_still_reached_through_its_directory(tmp_path: Path) -> None:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    path = str(tmp_path / "invoke.sock")
    functions = FunctionConnections()
    try:
        async with await asyncio.start_unix_server(answer, path):
            response = await functions.forward("c-1", path, "/", b"", "r")
    finally:
        functions.close()
    assert response.status == 204
    assert len(requests) == 1 and requests[0].startswith(b"POST / ")
