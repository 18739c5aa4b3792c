"""The multi-replica deployment, for real: two `execgate serve` replicas on one
PostgreSQL behind haproxy (round robin), with ``local_host.enabled = false``, reaching
instances through a third `execgate serve` acting as the local FC host, and a fake
Slack. Every process is started on 127.0.0.1 and stopped by the test that started it.

haproxy is external: waiting for it (and for a killed replica's lease to lapse) polls
with a bounded deadline, as nothing else announces readiness across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import pytest

from policies.audit.migrate import upgrade
from policies.audit.scratch import scratch_database
from server.localstate import local_keys
from server.mcp.auth import token_sha256
from server.serve import Running
from tests.bot.fake_slack import FakeSlack
from tests.bot.rig import APPROVALS, BOT_TOKEN, GROUPS, SIGNING_SECRET, USERS, Rig
from tests.conftest import PG_ENV
from tests.e2e.conftest import EXECGATE, Served, serve_process, write_config
from tests.support.servers import serve_asgi

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"
INSTALL_HAPROXY = "apt-get install -y haproxy"
PG_EXAMPLE = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MCP_TOKEN = "test-token-for-the-replicated-assistant"
LEASE_TTL = 4.0
HEARTBEAT = 1.0
KEY_ID_ENV = "EXECGATE_TEST_FC_KEY_ID"
KEY_SECRET_ENV = "EXECGATE_TEST_FC_KEY_SECRET"


def require_deployment() -> tuple[str, str]:
    """(PostgreSQL server URL, haproxy path), or skip/fail saying how to get them."""
    server_url = os.environ.get(PG_ENV)
    if not server_url:
        pytest.skip(f"multi-replica tests need PostgreSQL: set {PG_ENV}={PG_EXAMPLE}")
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail(f"haproxy is not installed; run: {INSTALL_HAPROXY}")
    return server_url, haproxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environ(extra: dict[str, str]) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXECGATE_", "ALIBABA_CLOUD_", "HTTP_PROXY", "http_proxy"))
    }
    environ.update(extra)
    return environ


async def wait_http_ok(url: str, *, timeout: float = 30) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        with anyio.fail_after(timeout):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await anyio.sleep(0.05)


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
        await wait_http_ok(self.url + "/readyz", timeout=60)

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


@dataclass
class SlackThroughProxy(Rig):
    """The Slack rig's signed requests, sent to ``base`` (the proxy or one replica)."""

    base: str = ""

    @property
    def events_url(self) -> str:
        return f"{self.base}/slack/events"


@dataclass
class Deployment:
    database_url: str
    host: Served  # the local FC host
    replicas: list[Replica]
    proxy: Proxy
    fake: FakeSlack
    slack: SlackThroughProxy
    notes: dict[str, Any] = field(default_factory=dict)

    async def scalar(self, sql: str, **params: Any) -> Any:
        from tests.policies.audit.support import scalar

        return await scalar(self.database_url, sql, params)


def _replica_config(
    path: Path,
    data_dir: Path,
    *,
    database_url: str,
    port: int,
    public_url: str,
    host_url: str,
    fake: FakeSlack,
    secrets: Path,
) -> None:
    path.write_text(
        f'data_dir = "{data_dir}"\npolicy = "{POLICY}"\n'
        f'[database]\nurl = "{database_url}"\nauto_upgrade = false\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "{public_url}"\n'
        '[logging]\nformat = "json"\n'
        "[local_host]\nenabled = false\n"
        "[providers.local]\n"
        f'type = "fc"\nendpoint = "{host_url}"\naccount_id = "1000000000000000"\n'
        'region = "local"\n'
        f'access_key_id = {{ env = "{KEY_ID_ENV}" }}\n'
        f'access_key_secret = {{ env = "{KEY_SECRET_ENV}" }}\n'
        f"[replica]\nlease_ttl_seconds = {LEASE_TTL}\nheartbeat_seconds = {HEARTBEAT}\n"
        "[slack]\n"
        f'signing_secret = {{ file = "{secrets / "signing"}" }}\n'
        f'bot_token = {{ file = "{secrets / "bot"}" }}\n'
        f'approvals_channel = "{APPROVALS}"\napi_base_url = "{fake.api_url}"\n'
        "[[mcp.tokens]]\n"
        f'client = "assistant"\nsha256 = "{token_sha256(MCP_TOKEN)}"\n'
    )


@contextlib.asynccontextmanager
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    """The whole deployment, torn down in reverse on exit."""
    server_url, haproxy = require_deployment()
    fake = FakeSlack(users=dict(USERS), groups={k: list(v) for k, v in GROUPS.items()})
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "signing").write_text(SIGNING_SECRET)
    (secrets / "bot").write_text(BOT_TOKEN)
    (tmp_path / "host").mkdir()
    host_config, host_dir = write_config(
        tmp_path / "host",
        f"sqlite+aiosqlite:///{tmp_path / 'host-audit.db'}",
    )
    async with (
        scratch_database(server_url, prefix="execgate_replicas") as database_url,
        serve_asgi(fake.app()) as fake_url,
        serve_process(host_config, host_dir) as host,
        httpx.AsyncClient(timeout=60) as http,
    ):
        fake.url = fake_url
        await upgrade(database_url)  # what the migration job does, once
        host_url = json.loads((host_dir / "local-host.json").read_text())["url"]
        keys = local_keys(host_dir)
        environ = _environ({KEY_ID_ENV: keys.access_key_id, KEY_SECRET_ENV: keys.access_key_secret})
        proxy = Proxy(haproxy, tmp_path / "haproxy.cfg", free_port())
        replicas: list[Replica] = []
        for name in ("a", "b"):
            port = free_port()
            data_dir = tmp_path / f"replica-{name}"
            config = tmp_path / f"replica-{name}.toml"
            _replica_config(
                config,
                data_dir,
                database_url=database_url,
                port=port,
                public_url=proxy.url,
                host_url=host_url,
                fake=fake,
                secrets=secrets,
            )
            replicas.append(
                Replica(
                    name,
                    config,
                    data_dir,
                    port,
                    {**environ, "EXECGATE_CONFIG": str(config)},
                    tmp_path / f"replica-{name}.log",
                )
            )
        slack = SlackThroughProxy(
            cast(Running, None), fake, http, host.instance, host_dir, base=proxy.url
        )
        try:
            await asyncio.gather(*(r.start() for r in replicas))
            await proxy.start(replicas)
            yield Deployment(database_url, host, replicas, proxy, fake, slack)
        finally:
            await proxy.stop()
            for replica in replicas:
                if replica.proc is not None and replica.proc.returncode is None:
                    replica.kill()
                    await replica.reap()


def elapsed_since(t0: float) -> float:
    return round(time.monotonic() - t0, 2)
