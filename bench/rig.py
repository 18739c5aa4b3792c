"""A real ExecGate for the exec benchmarks: ``execgate serve`` in-process on a temp data
directory, its FC-compatible local instance host on 127.0.0.1 port 0, and a raw FC
provider aimed at the same host for baselines.

    async with serving(root, sandbox="subprocess") as rig:
        await rig.service.exec(rig.request("true"))          # through ExecGate
        await rig.raw.exec(rig.target(), ("true",), ...)      # the same exec, raw
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bench.policy_gen import policy_text
from policies.audit.db_engine import parse_url
from policies.audit.scratch import scratch_database
from policies.audit.tables import audit_events, exec_sessions
from policies.errors import AuditUnavailable
from policies.instances.fc import Credentials, FcEndpoint, FcProvider
from policies.instances.local import InstanceManager
from policies.service.core import ExecService
from policies.types import ExecRequest, Principal, PrincipalKind, Stream, Surface, Target
from server.settings import (
    DatabaseSettings,
    LocalFunctionSettings,
    LocalHostSettings,
    McpSettings,
    ProviderSettings,
    SecretRef,
    ServerSettings,
    Settings,
    SlackSettings,
)
from server.wiring import build_manager, open_service, prepare_database

if TYPE_CHECKING:
    from server.serve import Running

Sandbox = Literal["auto", "bwrap", "subprocess"]

FUNCTION = "bench-fn"
PRINCIPAL = Principal(PrincipalKind.LOCAL, "bench")
# A long-running exec that says when it has started (its first sample, at once) and
# then waits ten minutes for the next; see open_sessions.
HOLD_COMMAND = ("vmstat", "600")
PG_ENV = "EXECGATE_BENCH_DATABASE_URL"
LOCAL_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

# The benchmarks' own rules, on top of the generated 200-rule policy: the commands they
# run, with room for 100 MB of output (the default cap would stop processing at 1 MiB).
# open_sessions holds its sessions open longer than opening 10,000 of them takes (up
# to 25 minutes on two loaded cores), and ``vmstat 600`` is silent for ten minutes.
BENCH_RULES = """\
  - id: bench-hold
    effect: allow
    who: [oncall, developers]
    where: [bench]
    commands:
      - [vmstat, "600"]
    limits: { timeout: 3600s, idle_timeout: 3600s }
  - id: bench-exec
    effect: allow
    who: [oncall, developers]
    where: [bench]
    commands:
      - ["true"]
      - [uptime]
      - [vmstat, "1", "2"]
      - [cat, "{file:path(/code/**,/tmp/**)}"]
    limits: { timeout: 300s, max_output: 512MiB }
"""

# What FC puts in a function's environment (fake values): `env` output gets scrubbed.
FUNCTION_ENV = {
    "APP_ENV": "bench",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tBenchKeyNotReal9x7Q",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "bEnChSeCrEtNoTrEaL0123456789abcd",
}


def write_policy(path: Path) -> Path:
    path.write_text(policy_text(extra_rules=BENCH_RULES))
    return path


def settings_for(
    root: Path,
    *,
    sandbox: Sandbox = "auto",
    database_url: str = "",
    instances: int = 1,
    code_dir: Path | None = None,
    in_process: bool = False,
    mcp: McpSettings | None = None,
    slack: SlackSettings | None = None,
) -> Settings:
    """Settings for a server on ``root`` (data under ``root/data``), port 0.

    ``in_process``: the provider is the sandbox provider over the local instances
    (no FC wire protocol) instead of the FC client aimed at the local host.
    """
    providers = {
        "local": ProviderSettings(type="sandbox" if in_process else "fc", endpoint="local")
    }
    # In-process there is no server to learn the address of: links to local artifacts
    # are written against this one.
    public_url = "http://127.0.0.1:8765" if in_process else ""
    unset = SecretRef()
    return Settings(
        providers=providers,
        data_dir=root / "data",
        policy=write_policy(root / "bench-policy.yaml"),
        database=DatabaseSettings(url=database_url),
        server=ServerSettings(host="127.0.0.1", port=0, public_url=public_url),
        mcp=mcp or McpSettings(),
        # Slack only when asked for: unset references, whatever the environment holds.
        slack=slack or SlackSettings(signing_secret=unset, bot_token=unset, app_token=unset),
        local_host=LocalHostSettings(
            sandbox=sandbox,
            functions=(
                LocalFunctionSettings(
                    name=FUNCTION, env=FUNCTION_ENV, provisioned=instances, code_dir=code_dir
                ),
            ),
        ),
    )


@dataclass
class Rig:
    settings: Settings
    running: Running
    raw: FcProvider
    instances: list[str]

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def service(self) -> ExecService:
        return self.running.service

    def target(self, index: int = 0) -> Target:
        return Target(FUNCTION, self.instances[index % len(self.instances)])

    def request(self, *argv: str, index: int = 0, principal: Principal = PRINCIPAL) -> ExecRequest:
        return exec_request(self.target(index), argv, principal)


async def mounted(url: str) -> bool:
    """Whether a surface is served at ``url``: unauthenticated it answers 401 (or 400),
    while an unmounted path falls through to the local FC host's 404."""
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    return response.status_code != 404


async def discard(stream: Stream, data: bytes) -> None:
    """An output callback that keeps nothing (the raw baselines)."""


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    *,
    sandbox: Sandbox = "auto",
    database_url: str = "",
    instances: int = 1,
    code_dir: Path | None = None,
    mcp: McpSettings | None = None,
    slack: SlackSettings | None = None,
) -> AsyncIterator[Rig]:
    """``execgate serve`` in this process, plus a raw FC provider against its host."""
    # Imported here: the HTTP app brings every surface's stack (about 50 MB), which the
    # in-process benchmarks do not use and should not carry in their memory figures.
    from server.serve import running_server

    settings = settings_for(
        root,
        sandbox=sandbox,
        database_url=database_url,
        instances=instances,
        code_dir=code_dir,
        mcp=mcp,
        slack=slack,
    )
    async with running_server(settings, port=0) as running:
        endpoint = FcEndpoint(
            account_id=settings.local_host.account_id,
            region=settings.local_host.region,
            endpoint=running.asgi.url,
        )
        creds = Credentials(running.keys.access_key_id, running.keys.access_key_secret)
        raw = FcProvider("raw", endpoint, creds)
        try:
            ids = [info.instance_id for info in running.manager.list(FUNCTION)]
            yield Rig(settings, running, raw, ids)
        finally:
            await raw.aclose()


@dataclass
class InProcess:
    """An ExecService over the in-process sandbox provider and its instance manager."""

    service: ExecService
    manager: InstanceManager
    instances: list[str]
    database_url: str

    def targets(self) -> list[Target]:
        return [Target(FUNCTION, i) for i in self.instances]


@contextlib.asynccontextmanager
async def in_process(
    root: Path, *, sandbox: Sandbox = "subprocess", instances: int = 1, code_dir: Path | None = None
) -> AsyncIterator[InProcess]:
    """An ExecService with the sandbox provider (no HTTP server, no FC client)."""
    settings = settings_for(
        root, sandbox=sandbox, instances=instances, code_dir=code_dir, in_process=True
    )
    await prepare_database(settings)
    manager = build_manager(settings)
    await manager.start()
    try:
        async with open_service(settings, manager=manager) as service:
            ids = [i.instance_id for i in manager.list(FUNCTION)]
            yield InProcess(service, manager, ids, settings.database_url)
    finally:
        await manager.aclose()


def exec_request(
    target: Target, argv: tuple[str, ...], principal: Principal = PRINCIPAL
) -> ExecRequest:
    return ExecRequest(principal=principal, surface=Surface.CLI, target=target, argv=argv)


async def count_audit(database_url: str) -> dict[str, int]:
    """Exec rows, those with an outcome, those completed with exit 0, and chain events."""
    c = exec_sessions.c
    engine = create_async_engine(parse_url(database_url))
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.count(c.outcome_at),
                        sa.func.sum(sa.case((c.exit_code == 0, 1), else_=0)),
                    ).select_from(exec_sessions)
                )
            ).one()
            events = await conn.scalar(sa.select(sa.func.count()).select_from(audit_events))
    finally:
        await engine.dispose()
    return {
        "intents": int(row[0]),
        "outcomes": int(row[1]),
        "exit_0": int(row[2] or 0),
        "chain_events": int(events or 0),
    }


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str | None]:
    """A fresh, empty PostgreSQL database (dropped afterwards), or None when no server
    answers at ``$EXECGATE_BENCH_DATABASE_URL`` or 127.0.0.1:5432."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            url: str | None = await stack.enter_async_context(
                scratch_database(os.environ.get(PG_ENV) or LOCAL_PG, prefix="execgate_bench")
            )
        except AuditUnavailable:
            url = None
        yield url
