"""An instance cannot turn the host's invocation forwarding against the host: the
function's ``invoke.sock`` is in a directory the instance writes, and a symbolic link
planted there must never make ExecGate connect to a socket of the host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

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


# The function listens on its invocation socket until ExecGate has seen it listen, then
# swaps a link to the host's socket in its place, and tells the test so on a second socket.
_PLANT = """
import os, signal, socket, sys
run = "/run/fc"
told = socket.socket(socket.AF_UNIX)
told.bind(run + "/planted.sock")
told.listen()
real = socket.socket(socket.AF_UNIX)
real.bind(run + "/invoke.sock")
real.listen()
real.accept()[0].close()
os.symlink(sys.argv[1], run + "/link")
os.replace(run + "/link", run + "/invoke.sock")
told.accept()[0].sendall(b"planted")
signal.pause()
"""


@pytest.mark.bwrap
async def test_a_symlink_planted_as_the_invoke_socket_never_reaches_a_host_socket(
    tmp_path: Path, host_socket: tuple[Path, list[bytes]]
) -> None:
    require_bwrap()
    target, seen = host_socket
    fn = LocalFunction("svc", env={}, provisioned=1, command=("python3", "-c", _PLANT, str(target)))
    manager = InstanceManager([fn], SandboxRunner("bwrap"), tmp_path / "data", clock=FakeClock())
    try:
        with anyio.fail_after(BOUND):
            await manager.start()
            instance = manager.list("svc")[0].instance_id
            socket_path = manager.invocation_socket(instance)
            assert socket_path is not None
            told, telling = await asyncio.open_unix_connection(
                str(Path(socket_path).with_name("planted.sock"))
            )
            assert await told.read() == b"planted"
            telling.close()
            with pytest.raises(ForwardError):
                await FunctionConnections().forward(
                    instance, socket_path, "/containers/create", b"{}", "rid-1"
                )
            assert seen == [], "the host's socket was reached through the instance's link"
            # Control: whoever follows the link reaches the host's socket.
            reader, writer = await asyncio.open_unix_connection(socket_path)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            assert (await reader.read()).endswith(b"host-secret")
            writer.close()
            await writer.wait_closed()
            assert len(seen) == 1
    finally:
        await manager.aclose()


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
