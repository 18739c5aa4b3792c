"""Console fixtures: a real `execgate serve` with the console policy, its banner's
sign-in link, and the system's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from bench.deployment import clean_environ, serve_process
from policies.audit import SqlAuditStore
from policies.audit.anchors import AnchorStore
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from server.console import console_mount
from server.settings import Settings
from tests.e2e.conftest import Served, write_config
from tests.support.databases import MigratedDatabase

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOTS = HERE.parent.parent / "docs" / "console"
# Set to 1 to refresh the README's screenshots in docs/console; otherwise the browser
# tests write theirs under the test's temporary directory and leave the tree clean.
UPDATE_SCREENSHOTS = "EXECGATE_UPDATE_SCREENSHOTS"


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the browser tests save their screenshots."""
    wanted = os.environ.get(UPDATE_SCREENSHOTS, "") == "1"
    folder = DOCS_SCREENSHOTS if wanted else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class Console(Served):
    """A served ExecGate (its CLI and instance /tmp as for e2e tests) with its console."""

    url: str = ""
    signin_link: str = ""  # from the banner, for the OS user running the server

    async def link_for(self, principal: str) -> str:
        """A sign-in link made by `execgate console link --as PRINCIPAL`."""
        done = await self.cli("console", "link", "--as", principal)
        assert done.code == 0, done.stderr
        return done.stdout.strip()


@asynccontextmanager
async def console_server(
    config: Path, data_dir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Console]:
    async with serve_process(config, environ=clean_environ(env or {})) as (_, text):
        address = json.loads((data_dir / "local-host.json").read_text())
        link = re.search(r"review console\s+(\S+)", text)
        found = re.search(r"execgate exec (demo-api/\S+) env", text)
        assert link and found, text
        yield Console(
            config=config,
            data_dir=data_dir,
            instance=found[1],
            instance_id=found[1].split("/", 1)[1],
            url=address["url"],
            signin_link=link[1],
        )


@pytest_asyncio.fixture(scope="module")
async def shared_console(
    tmp_path_factory: pytest.TempPathFactory, migrated_database: MigratedDatabase
) -> AsyncIterator[Console]:
    """A console server shared by a module's tests: each signs in through links of its
    own and reads its own audit ids and approval ids. The banner's sign-in link works
    once, so one test of a module at most uses it."""
    directory = tmp_path_factory.mktemp("console")
    async with migrated_database(directory) as url:
        config, data_dir = write_config(directory, url, policy=HERE / "policy.yaml")
        async with console_server(config, data_dir) as running:
            yield running


def require_chromium() -> str:
    """The system Chromium; a missing one fails with the command that installs it."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("Chromium is missing: install it with `apt-get install -y chromium`")
    return CHROMIUM


BASE = "http://console"


def shared_settings(data_dir: Path) -> Settings:
    """Settings of an in-process console on the console policy; replicas given the same
    ``data_dir`` share its console key (as a mounted Secret would)."""
    return Settings(data_dir=data_dir, policy=HERE / "policy.yaml")


def console_app(
    settings: Settings, store: SqlAuditStore, anchors: AnchorStore | None = None
) -> Starlette:
    """The console app of a server over ``store`` (in process: one replica)."""
    service = ExecService(
        policies=PolicyHolder(settings.policy_path),
        audit=store,
        providers={},
        default_provider="local",
        anchors=anchors,
    )
    mounted = console_mount(settings, service)
    assert mounted is not None
    return Starlette(routes=mounted.routes)


def replica(
    settings: Settings, store: SqlAuditStore, anchors: AnchorStore | None = None
) -> httpx.AsyncClient:
    """A client of a console app over ``store`` (no cookies shared with others)."""
    transport = httpx.ASGITransport(app=console_app(settings, store, anchors))
    return httpx.AsyncClient(transport=transport, base_url=BASE)
