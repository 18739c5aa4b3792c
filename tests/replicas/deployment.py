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
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from bench.deployment import (
    HostAccess,
    Proxy,
    Replica,
    free_port,
    replica_pair,
    running,
)
from policies.audit.migrate import upgrade
from policies.audit.scratch import scratch_database
from server.mcp.auth import token_sha256
from server.serve import Running
from tests.bot.fake_slack import FakeSlack
from tests.bot.rig import APPROVALS, BOT_TOKEN, GROUPS, SIGNING_SECRET, USERS, Rig
from tests.conftest import PG_ENV
from tests.e2e.conftest import Served, serve_process, write_config
from tests.support.servers import serve_asgi

__all__ = ["Proxy", "Replica"]

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"
INSTALL_HAPROXY = "apt-get install -y haproxy"
PG_EXAMPLE = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MCP_TOKEN = "test-token-for-the-replicated-assistant"
LEASE_TTL = 4.0
HEARTBEAT = 1.0


def require_deployment() -> tuple[str, str]:
    """(PostgreSQL server URL, haproxy path), or skip/fail saying how to get them."""
    server_url = os.environ.get(PG_ENV)
    if not server_url:
        pytest.skip(f"multi-replica tests need PostgreSQL: set {PG_ENV}={PG_EXAMPLE}")
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail(f"haproxy is not installed; run: {INSTALL_HAPROXY}")
    return server_url, haproxy


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


def _slack_and_mcp(fake: FakeSlack, secrets: Path) -> str:
    """What the replicas add to the shared replica config: Slack (the fake) and MCP."""
    return (
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
        _migrating(database_url) as migrated,
        serve_process(host_config, host_dir) as host,
        httpx.AsyncClient(timeout=60) as http,
    ):
        fake.url = fake_url
        await migrated
        access = HostAccess.of(host_dir)
        proxy = Proxy(haproxy, tmp_path / "haproxy.cfg", free_port())

        both = replica_pair(
            tmp_path,
            access,
            proxy,
            policy=POLICY,
            database_url=database_url,
            lease_ttl=LEASE_TTL,
            heartbeat=HEARTBEAT,
            extra=_slack_and_mcp(fake, secrets),
        )
        slack = SlackThroughProxy(
            cast(Running, None), fake, http, host.instance, host_dir, base=proxy.url
        )
        async with running(both, proxy):
            yield Deployment(database_url, host, both, proxy, fake, slack)


@contextlib.asynccontextmanager
async def _migrating(database_url: str) -> AsyncIterator[asyncio.Task[None]]:
    """What the migration job does, once, started while the instance host starts (they
    share nothing); the block awaits the task before the replicas start."""
    task = asyncio.create_task(upgrade(database_url))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def elapsed_since(t0: float) -> float:
    return round(time.monotonic() - t0, 2)
