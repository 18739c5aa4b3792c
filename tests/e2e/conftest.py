"""End-to-end fixtures: a real `execgate serve` process and the real CLI against it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from bench.deployment import EXECGATE
from bench.deployment import serve_process as started_serve
from tests.policies.instances.sandbox_helpers import require_bwrap
from tests.support.databases import MigratedDatabase

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.stdout)
        return data


@dataclass(frozen=True)
class Served:
    config: Path
    data_dir: Path
    instance: str  # demo-api/<id>
    instance_id: str

    @property
    def url(self) -> str:
        """Where the server listens (from the address file it writes)."""
        return str(json.loads((self.data_dir / "local-host.json").read_text())["url"])

    def state_tmp(self) -> Path:
        """The instance's /tmp as seen from the host."""
        matches = list(self.data_dir.glob(f"instances/**/{self.instance_id}/tmp"))
        assert matches, "instance state directory not found"
        return matches[0]

    async def cli(
        self, *args: str, principal: str | None = None, env: Mapping[str, str] | None = None
    ) -> CliResult:
        """Run ``execgate ARGS`` as a user of this server would, in this process (the
        CLI's ``main`` in a thread, one at a time: see ``run_cli``)."""
        return await asyncio.to_thread(run_cli, args, self._environ(principal, env))

    async def cli_process(
        self, *args: str, principal: str | None = None, env: Mapping[str, str] | None = None
    ) -> CliResult:
        """Run ``execgate ARGS`` in a process of its own: for tests that run several
        at once, or that need what only a process has."""
        proc = await asyncio.create_subprocess_exec(
            EXECGATE,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_without_execgate(os.environ) | self._environ(principal, env),
        )
        with anyio.fail_after(120):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return CliResult(proc.returncode, out.decode(), err.decode())

    def _environ(self, principal: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
        """The variables the CLI sees besides this process's own, but for its EXECGATE_*
        ones: the server's config file, the principal, and ``env``."""
        environ = {"EXECGATE_CONFIG": str(self.config)}
        if principal:
            environ["EXECGATE_CLI__PRINCIPAL"] = principal
        environ.update(env or {})
        return environ


_one_cli = threading.Lock()


def _without_execgate(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith("EXECGATE_")}


def run_cli(args: Sequence[str], environ: Mapping[str, str]) -> CliResult:
    """``execgate ARGS`` in this process, as a process would run it: with this process's
    environment but its EXECGATE_* variables replaced by ``environ``, nothing on stdin,
    stdout and stderr captured, and the logging set-up it changes put back afterwards.
    These are process-wide, so one call runs at a time."""
    from server.cli.main import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    with _one_cli, _process_state(environ), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return CliResult(code, _written(out), _written(err))


def _written(stream: io.TextIOWrapper) -> str:
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode()


@contextmanager
def _process_state(environ: Mapping[str, str]) -> Iterator[None]:
    saved_environ = dict(os.environ)
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    loggers = logging.Logger.manager.loggerDict
    saved_levels = {n: lg.level for n, lg in loggers.items() if isinstance(lg, logging.Logger)}
    saved_stdin = sys.stdin
    os.environ.clear()
    os.environ.update(_without_execgate(saved_environ) | dict(environ))
    sys.stdin = io.TextIOWrapper(io.BytesIO())
    try:
        yield
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved_environ)
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for name, level in saved_levels.items():
            logger = loggers[name]
            if isinstance(logger, logging.Logger):
                logger.setLevel(level)


def write_config(
    tmp_path: Path, database_url: str, *, policy: Path | None = None, extra: str = ""
) -> tuple[Path, Path]:
    data_dir = tmp_path / "data"
    config = tmp_path / "execgate.toml"
    policy_line = f'policy = "{policy}"\n' if policy else ""
    config.write_text(
        f'data_dir = "{data_dir}"\n{policy_line}'
        f'[database]\nurl = "{database_url}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[logging]\nformat = "json"\n' + extra
    )
    return config, data_dir


@pytest.fixture
def story_tools() -> None:
    """The troubleshooting stories need bubblewrap, tcpdump and py-spy on the host."""
    require_bwrap()
    for tool in ("/usr/local/bin/py-spy", shutil.which("tcpdump")):
        if tool is None or not os.path.exists(tool):
            pytest.fail("local instances need tcpdump and py-spy on the host: run `make tools`")


# Starting `execgate serve` costs seconds, so a module's tests share one (the shared_*
# servers below) and keep apart by what they own: their own files in the instance's /tmp,
# their own audit ids and approval ids, or a principal of their own when they list the
# audit log. A fresh server is for a test that changes what others would read and cannot
# undo it (the database behind the log) or needs what a fresh one has (its banner).


@pytest.fixture
async def served(tmp_path: Path, database_url: str, migrated_url: str) -> AsyncIterator[Served]:
    """`execgate serve` with the shipped default policy, for this test alone."""
    config, data_dir = write_config(tmp_path, migrated_url)
    async with serve_process(config, data_dir) as served:
        yield served


@pytest_asyncio.fixture(scope="module")
async def shared_served(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Served]:
    """`execgate serve` with the shipped default policy, shared by a module's tests."""
    async with module_server(tmp_path_factory, migrated_database, "served") as served:
        yield served


@pytest_asyncio.fixture(scope="module")
async def shared_served_custom(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Served]:
    """`execgate serve` with tests/e2e/policy.yaml, shared by a module's tests."""
    policy = HERE / "policy.yaml"
    async with module_server(
        tmp_path_factory, migrated_database, "served-custom", policy=policy
    ) as served:
        yield served


@asynccontextmanager
async def module_server(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_database: MigratedDatabase,
    name: str,
    *,
    policy: Path | None = None,
    extra: str = "",
) -> AsyncIterator[Served]:
    """`execgate serve` on a database of its own, for a module-scoped fixture."""
    directory = tmp_path_factory.mktemp(name)
    async with migrated_database(directory) as url:
        config, data_dir = write_config(directory, url, policy=policy, extra=extra)
        async with serve_process(config, data_dir) as served:
            yield served


@asynccontextmanager
async def serve_process(config: Path, data_dir: Path) -> AsyncIterator[Served]:
    environ = _without_execgate(os.environ)
    async with started_serve(config, environ=environ) as (_, banner):
        address = json.loads((data_dir / "local-host.json").read_text())
        assert address["url"].startswith("http://127.0.0.1:")
        found = re.search(r"execgate exec (demo-api/\S+) env", banner)
        assert found, banner
        instance = found[1]
        yield Served(config, data_dir, instance, instance.split("/", 1)[1])
