"""`execgate exec` through a running `execgate serve` (the CLI relay socket): who the
server runs it as, who may reach the socket, and when the CLI must not use it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from policies.errors import ConfigError
from policies.types import Principal, PrincipalKind
from server.cli.exits import EXIT_DENIED
from server.cli.principal import principal_for
from server.cli.relay import SOCKET_NAME
from tests.e2e.conftest import Served

NOBODY = 65534
# A Python another user can run (this one lives under root's home).
SYSTEM_PYTHON = "/usr/bin/python3"


def _no_sqlalchemy(tmp_path: Path) -> dict[str, str]:
    """An environment in which this process cannot import SQLAlchemy: the CLI can only
    succeed there by handing the exec to the server."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / "sqlalchemy.py").write_text("raise ImportError('no SQLAlchemy in this test')\n")
    return {"PYTHONPATH": str(shadow)}


async def test_exec_is_run_by_the_server_without_opening_the_service_in_the_cli(
    shared_served: Served, tmp_path: Path
) -> None:
    environ = _no_sqlalchemy(tmp_path)
    control = await shared_served.cli_process("audit", "list", env=environ)
    assert control.code != 0  # the shadow works: the CLI cannot open the audit log itself
    result = await shared_served.cli_process(
        "exec", shared_served.instance, "--", "uptime", env=environ
    )
    assert result.code == 0, result.stderr
    assert "load average" in result.stdout
    listed = await shared_served.cli("audit", "list", "--json")
    newest = json.loads(listed.stdout)[0]
    assert newest["principal"] == "local:root"
    assert newest["argv"] == ["uptime"]


async def test_root_may_relay_as_another_local_user_as_in_process(shared_served: Served) -> None:
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "--", "uptime", principal="local:bob"
    )
    assert result.code == 0, result.stderr
    listed = await shared_served.cli("audit", "list", "--json")
    newest = json.loads(listed.stdout)[0]
    assert newest["principal"] == "local:bob"


async def test_a_cli_with_another_configuration_is_not_served_by_the_servers(
    shared_served: Served, tmp_path: Path
) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "version: 1\nroles: {ops: {local_users: ['*']}}\ntargets: {demo: {functions: ['*']}}\n"
        "rules:\n  - id: nothing\n    effect: deny\n    who: [ops]\n    where: [demo]\n"
        "    commands: [[uptime]]\n"
    )
    served_default = await shared_served.cli("exec", shared_served.instance, "--", "uptime")
    assert served_default.code == 0, served_default.stderr
    # The server's policy allows uptime; this CLI's configuration denies it, and wins.
    mine = await shared_served.cli(
        "exec",
        "--json",
        shared_served.instance,
        "--",
        "uptime",
        env={"EXECGATE_POLICY": str(strict)},
    )
    assert mine.code == EXIT_DENIED, mine.stderr
    assert mine.json()["rule"] == "nothing"


async def test_the_relay_socket_is_reachable_by_the_servers_user_only(
    shared_served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = shared_served.data_dir.resolve()
    path = data_dir / SOCKET_NAME
    assert Path(SYSTEM_PYTHON).exists(), "install python3: apt-get install python3"
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    # Let another user walk to the data directory (pytest's directories are private, and
    # under xdist the base temp is one level deeper): every directory below the system's
    # temporary directory.
    root = Path(tempfile.gettempdir()).resolve()
    assert root in data_dir.parents
    for directory in [data_dir, *data_dir.parents]:
        if directory == root:
            break
        os.chmod(directory, os.stat(directory).st_mode | 0o011)
    control = socket.socket(socket.AF_UNIX)
    control.bind(str(data_dir / "control.sock"))
    os.chmod(data_dir / "control.sock", 0o666)
    control.listen(1)
    probe = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"
    try:
        assert await _run([sys.executable, "-c", probe, str(path)]) == 0  # its user
        reachable = await _run(
            [SYSTEM_PYTHON, "-c", probe, str(data_dir / "control.sock")], user=NOBODY
        )
        assert reachable == 0  # another user reaches a socket open to all here...
        assert await _run([SYSTEM_PYTHON, "-c", probe, str(path)], user=NOBODY) != 0  # not ours
    finally:
        control.close()


async def _run(argv: list[str], user: int | None = None) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        user=user,
    )
    with anyio.fail_after(60):
        return await proc.wait()


@pytest.mark.parametrize(
    ("uid", "requested", "expected"),
    [
        pytest.param(0, "local:bob", "local:bob", id="root-names-another"),
        pytest.param(NOBODY, "", "local:nobody", id="own-uid"),
        pytest.param(NOBODY, "local:nobody", "local:nobody", id="names-itself"),
    ],
)
def test_a_relay_peer_is_named_by_its_uid(uid: int, requested: str, expected: str) -> None:
    assert str(principal_for(uid, requested)) == expected


@pytest.mark.parametrize("requested", ["local:root", "local:bob", "slack:U123", "mcp:desk"])
def test_a_non_root_peer_cannot_claim_another_principal(requested: str) -> None:
    assert principal_for(0, "local:bob") == Principal(PrincipalKind.LOCAL, "bob")  # control
    with pytest.raises(ConfigError):
        principal_for(NOBODY, requested)
