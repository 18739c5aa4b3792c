"""The server side of the CLI relay (see ``server.cli.relay``): `execgate serve` runs
`execgate exec` requests from local users through its ExecService."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from policies.errors import ExecGateError
from policies.service.core import ExecService
from policies.tracing import incoming
from policies.types import ExecRequest, Stream, Surface, Target
from server.cli.exits import EXIT_INTERNAL, exit_code_for
from server.cli.principal import principal_for
from server.cli.relay import PROTOCOL, RELAY_FILE, SOCKET_NAME, identity
from server.settings import Settings

logger = logging.getLogger(__name__)

TERMINAL_INLINE = 4096
_MAX_REQUEST = 1 << 20


def peer_uid(writer: asyncio.StreamWriter) -> int:
    """The uid of the process at the other end of a Unix socket, as the kernel says."""
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Relay:
    def __init__(self, service: ExecService, settings: Settings) -> None:
        self._service = service
        self._settings = settings

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readuntil(b"\n")
            if len(line) > _MAX_REQUEST:
                return
            request = json.loads(line)
            end = await self._exec(request, peer_uid(writer), reader, writer)
            await _send(writer, end)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return  # not a request; say nothing
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exec(
        self,
        request: dict[str, Any],
        uid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> dict[str, Any]:
        as_json = bool(request.get("json"))

        async def sink(stream: Stream, text: str) -> None:
            await _send(writer, {"out": stream, "data": text})

        try:
            if request.get("protocol") != PROTOCOL or request.get("op") != "exec":
                raise ExecGateError("this execgate serve speaks another CLI relay version")
            argv = request.get("argv")
            exec_request = ExecRequest(
                principal=principal_for(uid, request.get("principal") or None),
                surface=Surface.CLI,
                target=Target.parse(str(request["target"])),
                argv=tuple(str(a) for a in argv) if argv is not None else None,
                command_text=request.get("text"),
                reason=str(request.get("reason") or ""),
            )
            with incoming(_text(request.get("traceparent")), _text(request.get("tracestate"))):
                run = asyncio.ensure_future(
                    self._service.exec(
                        exec_request,
                        on_output=None if as_json else sink,
                        inline_limit=self._settings.output.cli_json_inline_bytes
                        if as_json
                        else TERMINAL_INLINE,
                    )
                )
            # The CLI going away (Ctrl-C) ends the exec, as it does in-process.
            gone = asyncio.ensure_future(reader.read(1))
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                run.cancel()
            gone.cancel()
            result = await run
        except ExecGateError as exc:
            return {"error": exc.to_dict() | {"audit_id": exc.audit_id}, "exit": exit_code_for(exc)}
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("CLI relay: internal error")
            message = "internal error (details in the server log)"
            return {"error": {"code": "internal", "message": message}, "exit": EXIT_INTERNAL}
        return {"result": result.to_dict()}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _bind_private(path: Path) -> socket.socket:
    """A listening Unix socket born 0600 (only this user and root may connect). The
    umask is process-wide, so it is narrowed only around the bind, with no await."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old_mask)
    listener.listen(64)
    listener.setblocking(False)
    return listener


async def _send(writer: asyncio.StreamWriter, frame: dict[str, Any]) -> None:
    writer.write(json.dumps(frame).encode() + b"\n")
    await writer.drain()


@contextlib.asynccontextmanager
async def cli_relay(settings: Settings, service: ExecService) -> AsyncIterator[Path | None]:
    """Serve the CLI relay socket in the data directory while the context is open.

    Without it (a data directory path too long for a Unix socket, say) the CLI opens
    the service itself, as it always could: the server logs a warning and runs on.
    """
    data_dir = settings.data_dir.resolve()
    path = data_dir / SOCKET_NAME
    record = data_dir / RELAY_FILE
    path.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    relay = _Relay(service, settings)
    try:
        listener = _bind_private(path)
    except OSError as exc:
        logger.warning("no CLI relay socket (%s): `execgate exec` opens the service itself", exc)
        yield None
        return
    server = await asyncio.start_unix_server(relay.handle, sock=listener)
    source = None if settings.source == "defaults" else Path(settings.source)
    info = {"protocol": PROTOCOL, "data_dir": str(data_dir), "socket": str(path)}
    info |= identity(source, os.environ)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(record)
    try:
        async with server:
            yield path
    finally:
        record.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
