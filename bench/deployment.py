"""ExecGate as a team deploys it, started for real on 127.0.0.1: `execgate serve` replicas
on one PostgreSQL behind haproxy (round robin), with ``local_host.enabled = false``,
reaching instances through another `execgate serve` acting as the local FC host.

Shared by the multi-replica tests (``tests/replicas/deployment.py`` adds Slack to it)
and the ``replicas_throughput`` benchmark. Every process is started by the caller and
stopped by the block that started it.

haproxy is external: waiting for it polls ``/healthz`` with a bounded deadline, as
nothing else announces readiness across processes; `execgate serve` announces itself
with its banner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

EXECGATE = str(Path(sys.executable).parent / "execgate")
KEY_ID_ENV = "EXECGATE_TEST_FC_KEY_ID"
KEY_SECRET_ENV = "EXECGATE_TEST_FC_KEY_SECRET"
# The last line of `execgate serve`'s banner when it serves local instances.
_BANNER_END = " env"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environ(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This process's environment without ExecGate's, Alibaba Cloud's or proxy settings,
    plus ``extra``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXECGATE_", "ALIBABA_CLOUD_", "HTTP_PROXY", "http_proxy"))
    }
    environ.update(extra)
    return environ


async def wait_http_ok(url: str, *, within: float = 30) -> None:
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        with anyio.fail_after(within):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await anyio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve_process(
    config: Path, *, environ: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`execgate serve` on ``config`` until its banner has been printed: (process,
    banner). SIGTERM and wait on exit.

    Raises: AssertionError when it exits before its banner ends.
    """
    env = dict(environ) if environ is not None else clean_environ()
    env["EXECGATE_CONFIG"] = str(config)
    proc = await asyncio.create_subprocess_exec(
        EXECGATE,
        "serve",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:
        with anyio.fail_after(60):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError("execgate serve exited early:\n" + "".join(banner))
                banner.append(line)
                if line.rstrip().endswith(_BANNER_END):
                    break
        yield proc, "".join(banner)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.fail_after(30):
                await proc.wait()


def local_host_config(root: Path, *, policy: Path, function: str, name: str = "host") -> Path:
    """The TOML of an `execgate serve` that is a local FC host with one provisioned
    instance of ``function``, unsandboxed (plain subprocesses, as root runs them), its
    own audit in SQLite; data under ``root/name``. Returns the file written."""
    config = root / f"{name}.toml"
    config.write_text(
        f'data_dir = "{root / name}"\npolicy = "{policy}"\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{root / name}-audit.db"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[logging]\nformat = "json"\n'
        '[local_host]\nsandbox = "none"\n'
        f'[[local_host.functions]]\nname = "{function}"\nprovisioned = 1\n'
    )
    return config


def first_instance(banner: str, function: str) -> str:
    """``function/instance-id`` of the first instance an `execgate serve` banner names."""
    return next(word for word in banner.split() if word.startswith(f"{function}/"))


@dataclass(frozen=True)
class HostAccess:
    """How replicas reach the local FC host: its URL and its access key."""

    url: str
    access_key_id: str
    access_key_secret: str

    @classmethod
    def of(cls, data_dir: Path) -> HostAccess:
        from server.localstate import ADDRESS_FILE, local_keys

        keys = local_keys(data_dir)
        url = json.loads((data_dir / ADDRESS_FILE).read_text())["url"]
        return cls(url, keys.access_key_id, keys.access_key_secret)

    def environ(self) -> dict[str, str]:
        """A replica's environment: the key in the variables its config names."""
        return clean_environ(
            {KEY_ID_ENV: self.access_key_id, KEY_SECRET_ENV: self.access_key_secret}
        )


def replica_config(
    data_dir: Path,
    *,
    policy: Path,
    database_url: str,
    port: int,
    public_url: str,
    host_url: str,
    lease_ttl: float,
    heartbeat: float,
    extra: str = "",
) -> str:
    """A replica's TOML: the shared PostgreSQL (migrated by the caller, as a migration
    job does), no local host, the FC provider ``local`` at ``host_url``."""
    return (
        f'data_dir = "{data_dir}"\npolicy = "{policy}"\n'
        f'[database]\nurl = "{database_url}"\nauto_upgrade = false\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "{public_url}"\n'
        '[logging]\nformat = "json"\n'
        "[local_host]\nenabled = false\n"
        "[providers.local]\n"
        f'type = "fc"\nendpoint = "{host_url}"\naccount_id = "1000000000000000"\n'
        'region = "local"\n'
        f'access_key_id = {{ env = "{KEY_ID_ENV}" }}\n'
        f'access_key_secret = {{ env = "{KEY_SECRET_ENV}" }}\n'
        f"[replica]\nlease_ttl_seconds = {lease_ttl}\nheartbeat_seconds = {heartbeat}\n" + extra
    )


@dataclass
class Replica:
    name: str
    config: Path
    data_dir: Path
    port: int
    environ: dict[str, str]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                EXECGATE,
                "serve",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=self.environ,
            )
        await wait_http_ok(self.url + "/readyz", within=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    async def stop(self) -> None:
        """SIGTERM, and wait for the graceful shutdown."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with anyio.fail_after(60):
                await self.proc.wait()

    async def reap(self) -> None:
        if self.proc is not None:
            with anyio.fail_after(30):
                await self.proc.wait()


# A replica's TOML from its data directory and port (see replica_config).
ConfigOf = Callable[[Path, int], str]


def replicas(
    root: Path, names: tuple[str, ...], host: HostAccess, config_of: ConfigOf
) -> list[Replica]:
    """Replicas named ``names`` under ``root`` (not started); ``config_of(data_dir,
    port)`` gives each one's TOML."""
    environ = host.environ()
    made = []
    for name in names:
        port = free_port()
        data_dir = root / f"replica-{name}"
        config = root / f"replica-{name}.toml"
        config.write_text(config_of(data_dir, port))
        made.append(
            Replica(
                name,
                config,
                data_dir,
                port,
                {**environ, "EXECGATE_CONFIG": str(config)},
                root / f"replica-{name}.log",
            )
        )
    return made


def replica_pair(
    root: Path,
    host: HostAccess,
    proxy: Proxy,
    *,
    policy: Path,
    database_url: str,
    lease_ttl: float,
    heartbeat: float,
    extra: str = "",
) -> list[Replica]:
    """Replicas ``a`` and ``b`` (not started) behind ``proxy``, on ``database_url``,
    reaching the instances of ``host``; ``extra``: more of their TOML."""

    def config_of(data_dir: Path, port: int) -> str:
        return replica_config(
            data_dir,
            policy=policy,
            database_url=database_url,
            port=port,
            public_url=proxy.url,
            host_url=host.url,
            lease_ttl=lease_ttl,
            heartbeat=heartbeat,
            extra=extra,
        )

    return replicas(root, ("a", "b"), host, config_of)


@dataclass
class Proxy:
    haproxy: str
    config: Path
    port: int
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, replicas: list[Replica]) -> None:
        servers = "\n".join(
            f"  server {r.name} 127.0.0.1:{r.port} check inter 200ms fall 2 rise 1"
            for r in replicas
        )
        self.config.write_text(
            "global\n  maxconn 4096\n"
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 300s\n"
            "  timeout server 300s\n  option http-server-close\n  retries 3\n"
            "  option redispatch\n"
            f"frontend execgate\n  bind 127.0.0.1:{self.port}\n  default_backend replicas\n"
            "backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n"
            f"{servers}\n"
        )
        self.proc = await asyncio.create_subprocess_exec(
            self.haproxy,
            "-f",
            str(self.config),
            "-db",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_http_ok(self.url + "/healthz")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with anyio.fail_after(30):
                await self.proc.wait()


@contextlib.asynccontextmanager
async def running(replicas: list[Replica], proxy: Proxy) -> AsyncIterator[None]:
    """The replicas started (together), then the proxy before them; on exit the proxy
    stopped and every replica still running killed."""
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        await proxy.start(replicas)
        yield
    finally:
        await proxy.stop()
        for replica in replicas:
            if replica.proc is not None and replica.proc.returncode is None:
                replica.kill()
                await replica.reap()
