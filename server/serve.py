"""`execgate serve`: the local instance host, and the HTTP app around it.

Several `execgate serve` replicas may share one PostgreSQL database behind a load
balancer (README, "Running several replicas"): each holds a lease on the execs it runs
(``policies.audit.keeper``) and answers ``/healthz`` (the process is up) and
``/readyz`` (it can serve: see ``server.health``). Replicas set
``local_host.enabled = false`` and reach instances through a provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from policies.audit import SqlAuditStore
from policies.audit.keeper import LeaseKeeper, Leases
from policies.instances.local import InstanceManager
from policies.service.core import ExecService
from server.artifact_http import artifact_mount
from server.asgi_runner import RunningAsgi, run_asgi
from server.cli.relay_server import cli_relay
from server.console import console_mount
from server.fchost import build_fc_host_app
from server.health import health_routes
from server.localstate import LocalKeys, clear_address, local_keys, write_address
from server.mcp.http import mcp_mount
from server.metrics import ExecMetrics, metrics_route
from server.settings import Settings
from server.slack_http import slack_mount
from server.telemetry import IncomingTrace
from server.wiring import build_manager, open_service, prepare_database

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)


@dataclass
class Running:
    """What a started server exposes (tests and the banner read it)."""

    url: str
    service: ExecService
    manager: InstanceManager
    keys: LocalKeys
    asgi: RunningAsgi
    surfaces: list[str]


def build_app(
    settings: Settings, manager: InstanceManager, keys: LocalKeys, service: ExecService
) -> Starlette:
    """The one HTTP app: health, the surfaces' mounts, and the local FC host last (its
    routes answer everything else with FC-shaped errors) unless it is disabled."""
    mounts = [
        m
        for m in (
            mcp_mount(settings, service),
            slack_mount(settings, service),
            artifact_mount(settings, service),
            console_mount(settings, service),
        )
        if m is not None
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for mount in mounts:
                if mount.lifespan is not None:
                    await stack.enter_async_context(mount.lifespan())
            yield

    metrics = ExecMetrics()
    if isinstance(service.audit, SqlAuditStore):
        service.audit.observer = metrics
    routes: list[BaseRoute] = [
        *health_routes(settings, service),
        metrics_route(metrics, service.audit),
    ]
    for mount in mounts:
        routes.extend(mount.routes)
    if settings.local_host.enabled:
        fc_host = build_fc_host_app(
            manager,
            {keys.access_key_id: keys.access_key_secret},
            account_id=settings.local_host.account_id,
        )
        routes.append(Mount("/", app=fc_host))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(IncomingTrace)])
    app.state.surfaces = [
        str(getattr(route, "path", "")) for mount in mounts for route in mount.routes
    ]
    return app


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Running]:
    """Start everything `execgate serve` runs and yield once it listens
    (``tracer_provider``: see ``open_service``)."""
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    await prepare_database(settings)
    keys = local_keys(settings.data_dir)
    manager = build_manager(settings)
    if settings.local_host.enabled:
        await manager.start()
    box: dict[str, str] = {}
    try:
        async with (
            open_service(
                settings,
                local_url=lambda: box["url"],
                manager=manager,
                tracer_provider=tracer_provider,
            ) as svc,
            _lease(settings, svc),
        ):
            app = build_app(settings, manager, keys, svc)
            async with (
                cli_relay(settings, svc),
                run_asgi(app, host=bind_host, port=bind_port, lifespan="on") as asgi,
            ):
                box["url"] = asgi.url
                url = settings.server.public_url or asgi.url
                write_address(settings.data_dir, asgi.url, settings.local_host.account_id)
                yield Running(url, svc, manager, keys, asgi, list(app.state.surfaces))
    finally:
        clear_address(settings.data_dir)
        await manager.aclose()


@contextlib.asynccontextmanager
async def _lease(settings: Settings, service: ExecService) -> AsyncIterator[None]:
    """Hold this replica's lease on its execs while it serves (when the store has leases)."""
    audit = service.audit
    if not isinstance(audit, Leases):
        yield
        return
    replica = settings.replica
    keeper = LeaseKeeper(audit, ttl=replica.lease_ttl_seconds, every=replica.heartbeat_seconds)
    async with keeper.running():
        yield


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def console_signin_link(settings: Settings, url: str) -> str:
    """A one-time link signing the local OS user in to the console (like a notebook
    server's token URL)."""
    import os
    import pwd

    from server.console.signin import console_key, make_link

    user = pwd.getpwuid(os.geteuid()).pw_name
    return make_link(console_key(settings.data_dir), url, f"local:{user}")


def banner(settings: Settings, running: Running) -> str:
    lines = [f"ExecGate is serving on {running.url}"]
    enabled = settings.local_host.enabled
    if enabled:
        lines.append(
            f"  local FC host   {running.url}/2023-03-30/functions  "
            f"(account {settings.local_host.account_id}, key {running.keys.access_key_id})"
        )
    else:
        lines.append("  local FC host   disabled (instances are reached through providers)")
    for path in running.surfaces:
        lines.append(f"  surface         {running.url}{path}")
    if enabled:
        lines.append(f"  instances       {running.manager.runner.description}")
    example = None
    for fn in settings.local_host.functions if enabled else ():
        live = running.manager.list(fn.name)
        ids = ", ".join(i.instance_id for i in live) or "none live; started on invoke"
        lines.append(f"    {fn.name:14} {ids}")
        if live and example is None:
            example = f"{fn.name}/{live[0].instance_id}"
    if settings.console.enabled:
        lines.append(f"  review console  {console_signin_link(settings, running.url)}")
    lines.append(f"  audit database  {settings.database_url}")
    lines.append(f"  policy          {settings.policy_path}")
    lines.append(f"  data            {settings.data_dir.resolve()}")
    if example:
        lines.append("Try, in another terminal:")
        lines.append(f"  .venv/bin/execgate exec {example} env")
        lines.append(f"  .venv/bin/execgate exec {example} 'cat /etc/passwd; id'")
    return "\n".join(lines)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    async def main() -> None:
        async with running_server(settings, host=host, port=port) as running:
            print(banner(settings, running), flush=True)
            if settings.local_host.enabled and not running.manager.sandboxed:
                logger.warning("UNSANDBOXED: sandbox = 'none'; commands run on this host as nobody")
            await running.asgi.stopped()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    print("ExecGate stopped", file=sys.stderr)
    return 0
