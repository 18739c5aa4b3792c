"""`execgate exec` through a running `execgate serve`: the fast path.

Opening the service in the CLI process (SQLAlchemy, the policy engine, pydantic
settings) costs most of a second; a running server already has all of it. When one runs
with the very configuration this CLI would load, `exec` hands the request to it over a
Unix socket in the data directory and only renders what comes back. The server names the
principal from the socket peer's uid (``SO_PEERCRED``), as the CLI would from its own
(root may ask to act as another local user, as with ``cli.principal``); the socket is
readable and writable by the server's user only.

"The very configuration" is checked, not assumed: the server records, next to the
socket, the SHA-256 of its config file's bytes and of its ``EXECGATE_*`` environment
(but ``EXECGATE_CONFIG`` and ``EXECGATE_CLI__PRINCIPAL``, which name the file and the
principal). Any difference, a missing or dead socket: the CLI opens the service itself,
as before. A connection that breaks after the request was sent is not retried (the
command may have run): it is reported as unavailable.

Wire: one JSON object per line. The CLI sends the request; the server answers with
``{"out": "stdout"|"stderr", "data": TEXT}`` lines while the command runs, then one
``{"result": {...}}`` (ExecResult.to_dict) or ``{"error": {...}, "exit": N}``. The
request carries the TRACEPARENT and TRACESTATE variables of the CLI's environment, so
the server's spans continue the caller's trace as in-process ones do.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

RELAY_FILE = "cli-relay.json"
SOCKET_NAME = "cli.sock"
PROTOCOL = 1
_NOT_IDENTITY = {"EXECGATE_CONFIG", "EXECGATE_CLI__PRINCIPAL"}


def config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file the settings are read from (as ``server.settings`` chooses it)."""
    if explicit is not None:
        return explicit
    if environ.get("EXECGATE_CONFIG"):
        return Path(environ["EXECGATE_CONFIG"])
    default = Path("execgate.toml")
    return default if default.is_file() else None


def identity(path: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """What makes two processes' settings the same: the config bytes and the overrides."""
    config = hashlib.sha256(path.read_bytes() if path is not None else b"").hexdigest()
    overrides = sorted(
        (k.upper(), v)
        for k, v in environ.items()
        if k.upper().startswith("EXECGATE_") and k.upper() not in _NOT_IDENTITY
    )
    env = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()
    return {"config_sha256": config, "env_sha256": env}


def _data_dir(path: Path | None, environ: Mapping[str, str]) -> Path:
    for key, value in environ.items():
        if key.upper() == "EXECGATE_DATA_DIR":
            return Path(value)
    if path is not None:
        with path.open("rb") as fh:
            configured = tomllib.load(fh).get("data_dir")
        if isinstance(configured, str):
            return Path(configured)
    return Path(".execgate")


def _requested_principal(path: Path | None, environ: Mapping[str, str]) -> str:
    for key, value in environ.items():
        if key.upper() == "EXECGATE_CLI__PRINCIPAL":
            return value
    if path is not None:
        with path.open("rb") as fh:
            cli = tomllib.load(fh).get("cli")
        if isinstance(cli, dict) and isinstance(cli.get("principal"), str):
            return str(cli["principal"])
    return ""


def connect(explicit: Path | None, environ: Mapping[str, str]) -> socket.socket | None:
    """A connection to the running server of this configuration, or None."""
    try:
        path = config_file(explicit, environ)
        data_dir = _data_dir(path, environ).resolve()
        record = json.loads((data_dir / RELAY_FILE).read_text())
        mine = identity(path, environ)
    except (OSError, ValueError):
        return None  # no server, or a config the full loader must report on
    if record.get("protocol") != PROTOCOL or record.get("data_dir") != str(data_dir):
        return None
    if any(record.get(key) != value for key, value in mine.items()):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(data_dir / SOCKET_NAME))
    except OSError:
        sock.close()
        return None
    return sock


def _frames(sock: socket.socket) -> Iterator[dict[str, Any]]:
    with sock.makefile("rb") as stream:
        for line in stream:
            frame: dict[str, Any] = json.loads(line)
            yield frame


def relay_exec(
    sock: socket.socket,
    *,
    target: str,
    argv: tuple[str, ...] | None,
    text: str | None,
    reason: str,
    as_json: bool,
    principal: str,
) -> int:
    """Run `exec` through the server on ``sock``; render as the in-process path does."""
    from server.cli import render
    from server.cli.exits import EXIT_UNAVAILABLE, exec_exit_code

    request = {
        "protocol": PROTOCOL,
        "op": "exec",
        "target": target,
        "argv": list(argv) if argv is not None else None,
        "text": text,
        "reason": reason,
        "json": as_json,
        "principal": principal,
        # The caller's W3C trace context, continued by the server's spans.
        "traceparent": os.environ.get("TRACEPARENT"),
        "tracestate": os.environ.get("TRACESTATE"),
    }
    end: dict[str, Any] | None = None
    with sock:
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            for frame in _frames(sock):
                if "out" in frame:
                    out = sys.stdout if frame["out"] == "stdout" else sys.stderr
                    out.write(str(frame["data"]))
                    out.flush()
                    continue
                end = frame
                break
        except (OSError, ValueError):
            end = None
    if end is None:
        # The request went out: the command may have run. Never send it twice.
        print(
            "execgate: the connection to execgate serve broke; see `execgate audit list`",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    if "error" in end:
        error: dict[str, Any] = end["error"]
        if as_json:
            shown = render.exec_error_dict(error, error.get("audit_id"), target, argv)
            print(json.dumps(shown, indent=2))
        print(f"execgate: {error.get('message')}", file=sys.stderr)
        if error.get("audit_id"):
            print(f"audit id: {error['audit_id']}", file=sys.stderr)
        return int(end.get("exit", EXIT_UNAVAILABLE))
    data: dict[str, Any] = end["result"]
    if as_json:
        print(json.dumps(data, indent=2))
    result = render.exec_result_from_dict(data)
    if not as_json:
        render.exec_summary(result, streamed=True)
    return exec_exit_code(result)


def try_exec(
    explicit_config: Path | None,
    target: str,
    argv: tuple[str, ...] | None,
    text: str | None,
    reason: str,
    as_json: bool,
) -> int | None:
    """`exec` through a running server of this configuration; None when there is none
    (the caller then opens the service itself)."""
    environ = os.environ
    sock = connect(explicit_config, environ)
    if sock is None:
        return None
    try:
        principal = _requested_principal(config_file(explicit_config, environ), environ)
    except (OSError, ValueError):
        sock.close()
        return None
    return relay_exec(
        sock,
        target=target,
        argv=argv,
        text=text,
        reason=reason,
        as_json=as_json,
        principal=principal,
    )
