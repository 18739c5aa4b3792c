"""Signing in to the console through OpenID Connect, against a real provider (the
certified `oidc-provider` from npm, run with the machine's Node.js on port 0)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from playwright.async_api import async_playwright

from tests.console.conftest import (
    CHROMIUM_ARGS,
    HERE,
    Console,
    console_server,
    require_chromium,
)
from tests.e2e.conftest import write_config

PROVIDER_DIR = HERE / "oidc"
CLIENT_ID = "execgate-console"
CLIENT_SECRET = "test-secret-not-for-production"


def require_provider() -> str:
    """Node.js and the pinned provider; missing ones fail with the installing command."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is missing: install it with `apt-get install -y nodejs npm`")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            f"the test OpenID provider is not installed: run `npm ci --prefix {PROVIDER_DIR}`"
        )
    return node


@pytest.fixture
async def oidc_console(tmp_path: Path, database_url: str) -> AsyncIterator[Console]:
    node = require_provider()
    provider = await asyncio.create_subprocess_exec(
        node,
        str(PROVIDER_DIR / "provider.js"),
        cwd=PROVIDER_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert provider.stdin is not None and provider.stdout is not None
    try:
        with anyio.fail_after(30):
            issuer = json.loads(await provider.stdout.readline())["issuer"]
        extra = (
            f'[console.oidc]\nissuer = "{issuer}"\nclient_id = "{CLIENT_ID}"\n'
            'principal_kind = "slack"\nprincipal_claim = "sub"\nlabel = "Sign in with Slack"\n'
        )
        config, data_dir = write_config(
            tmp_path, database_url, policy=HERE / "policy.yaml", extra=extra
        )
        env = {"EXECGATE_CONSOLE_OIDC_CLIENT_SECRET": CLIENT_SECRET}
        async with console_server(config, data_dir, env) as running:
            provider.stdin.write(f"{running.url}/console/oidc/callback\n".encode())
            await provider.stdin.drain()
            with anyio.fail_after(30):
                assert json.loads(await provider.stdout.readline()) == {"ready": True}
            yield running
    finally:
        if provider.returncode is None:
            provider.terminate()
            with anyio.fail_after(30):
                await provider.wait()


async def test_a_slack_user_signs_in_through_openid_connect_as_their_policy_principal(
    oidc_console: Console,
) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=require_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            response = await page.goto(f"{oidc_console.url}/console/")
            assert response is not None and response.status == 401
            await page.click("#oidc-signin")
            # The provider's own login and consent pages.
            await page.fill('input[name="login"]', "U0AUDITOR")
            await page.fill('input[name="password"]', "any")
            await page.click('button[type="submit"]')
            await page.click('button[type="submit"]')
            await page.wait_for_url(f"{oidc_console.url}/console/")
            assert (await page.text_content("#me")) == "slack:U0AUDITOR"
            # The policy names this Slack user an auditor: the integrity page opens.
            integrity = await page.goto(f"{oidc_console.url}/console/integrity")
            assert integrity is not None and integrity.status == 200
        finally:
            await browser.close()
