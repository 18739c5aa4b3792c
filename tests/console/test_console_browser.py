"""The review console in a real browser (the system's Chromium, driven by Playwright)
against a real `execgate serve`, with execs run through the real CLI."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.console.conftest import CHROMIUM_ARGS, Console, require_chromium, screenshot_dir

ALICE = "local:alice"
BOB = "local:bob"


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Chromium, shared by the module's tests: each opens contexts of its own (their own
    cookies)."""
    executable = require_chromium()
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser: Browser, link: str) -> Page:
    """A fresh browser context (its own cookies) signed in through ``link``."""
    context = await browser.new_context(
        accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    page = await context.new_page()
    response = await page.goto(link)
    assert response is not None and response.status == 200
    return page


async def audit_id_of(console: Console, *argv: str, principal: str | None = None) -> str:
    done = await console.cli("exec", "--json", console.instance, "--", *argv, principal=principal)
    assert done.code in (0, 75, 77), done.stderr
    return str(done.json()["audit_id"])


async def test_a_reviewer_signs_in_filters_opens_an_exec_and_downloads_its_artifact(
    shared_console: Console, browser: Browser, tmp_path: Path
) -> None:
    console = shared_console
    shots = screenshot_dir(tmp_path)
    page = await new_page(browser, console.signin_link)
    blocked: list[str] = []  # what the Content-Security-Policy refused (htmx included)
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    me = (await page.text_content("#me")) or ""
    assert me.startswith("local:")
    env_id = await audit_id_of(console, "env")
    await audit_id_of(console, "echo", "hello", "console")
    colour_id = await audit_id_of(console, "printf", "\\033[31mred\\033[0m done\\n")
    denied_id = await audit_id_of(console, "sh", "-c", "id")
    blob = os.urandom(200_000)
    (console.state_tmp() / "blob.bin").write_bytes(blob)
    collected = await console.cli("collect", "--json", console.instance, "/tmp/blob.bin")
    assert collected.code == 0, collected.stderr
    collect_id = str(collected.json()["audit_id"])

    # Activity, filtered by effect, then by text in the command: htmx swaps the results
    # in place (the page is not loaded again) and puts the filter in the address bar.
    await page.goto(f"{console.url}/console/")
    assert await page.locator(f'tr[data-audit-id="{env_id}"]').count() == 1
    await page.evaluate("document.body.dataset.loaded = 'once'")
    await page.fill('input[name="effect"]', "deny")
    await page.click('#filters button[type="submit"]')
    await page.wait_for_selector('#results[data-query="effect=deny"]')
    await page.wait_for_url("**effect=deny**")
    rows = page.locator("#activity tr.row")
    assert await rows.count() == 1
    assert await rows.first.get_attribute("data-audit-id") == denied_id
    assert "no-shells" in ((await page.text_content("#top-denied")) or "")
    await page.fill('input[name="effect"]', "")
    await page.fill('input[name="q"]', "HELLO")
    await page.click('#filters button[type="submit"]')
    await page.wait_for_selector('#results[data-query="q=HELLO"]')
    assert await rows.count() == 1
    assert "hello console" in ((await rows.first.text_content()) or "")
    assert await page.evaluate("document.body.dataset.loaded") == "once"
    await page.goto(f"{console.url}/console/")
    await page.screenshot(path=str(shots / "activity.png"), full_page=True)

    # One exec: the env output is scrubbed (the variables are there, their secrets not).
    await page.click(f'tr[data-audit-id="{env_id}"] a')
    await page.wait_for_url(f"**/console/execs/{env_id}")
    stdout = (await page.text_content("#stdout")) or ""
    assert "APP_ENV=demo" in stdout and "DB_PASSWORD=" in stdout
    assert "hunter2-demo-password" not in stdout
    assert "dEmOsEcReTnOtReAl" not in stdout
    assert (await page.text_content("#effect")) == "allow"
    await page.screenshot(path=str(shots / "exec.png"), full_page=True)

    # ANSI colour codes are removed from the output shown.
    await page.goto(f"{console.url}/console/execs/{colour_id}")
    shown = (await page.text_content("#stdout")) or ""
    assert "red done" in shown and "\x1b" not in shown

    # The artifact link downloads the same bytes.
    await page.goto(f"{console.url}/console/execs/{collect_id}")
    sha = (await page.text_content("#artifacts .sha")) or ""
    assert sha == hashlib.sha256(blob).hexdigest()
    async with page.expect_download() as waiting:
        await page.click("#artifacts a.artifact-link")
    download = await waiting.value
    saved = Path(await download.path())
    assert saved.read_bytes() == blob
    assert blocked == []


async def test_a_second_principal_approves_from_the_page_and_sees_it_run(
    shared_console: Console, browser: Browser
) -> None:
    console = shared_console
    mine = await audit_id_of(console, "echo", "alice only", principal=ALICE)
    held = await console.cli("exec", "--json", console.instance, "--", "uptime", principal=ALICE)
    assert held.code == 75, held.stderr
    approval_id = str(held.json()["approval_id"])
    page = await new_page(browser, await console.link_for(BOB))
    await page.goto(f"{console.url}/console/approvals")
    row = page.locator(f'tr[data-approval-id="{approval_id}"]')
    assert "uptime" in ((await row.text_content()) or "")
    await row.locator("button.approve").click()
    # The row itself answers (htmx swaps it): the command ran; its link opens the exec.
    await page.wait_for_selector(f"#approval-{approval_id} #vote-result")
    assert "Approved and run: completed, exit code 0" in (
        (await page.text_content(f"#approval-{approval_id} #vote-result")) or ""
    )
    await page.click(f"#approval-{approval_id} a.exec-link")
    await page.wait_for_url("**/console/execs/*")
    assert (await page.text_content("#status")) == "completed"
    assert "load average" in ((await page.text_content("#stdout")) or "")
    assert (await page.text_content("#exit-code")) == "0"

    # Bob is no auditor: Alice's own record is refused even when he types its URL.
    response = await page.goto(f"{console.url}/console/execs/{mine}")
    assert response is not None and response.status == 403
    assert await page.locator('[data-code="denied"]').count() == 1


async def test_a_form_posted_from_the_browser_without_its_csrf_token_is_refused(
    shared_console: Console, browser: Browser
) -> None:
    console = shared_console
    held = await console.cli("exec", "--json", console.instance, "--", "uptime", principal=ALICE)
    approval_id = str(held.json()["approval_id"])
    page = await new_page(browser, await console.link_for(BOB))
    refused = await page.request.post(
        f"{console.url}/console/approvals/{approval_id}/vote", form={"decision": "approve"}
    )
    assert refused.status == 403
    assert 'data-code="csrf_failed"' in await refused.text()
    # The request is still pending and the page's own form (with its token) can approve it.
    await page.goto(f"{console.url}/console/approvals")
    await page.locator(f'tr[data-approval-id="{approval_id}"] button.approve').click()
    await page.wait_for_selector(f"#approval-{approval_id} #vote-result")
    assert "Approved and run" in ((await page.text_content("#vote-result")) or "")


async def test_every_page_works_without_javascript(
    shared_console: Console, browser: Browser
) -> None:
    console = shared_console
    held = await console.cli("exec", "--json", console.instance, "--", "uptime", principal=ALICE)
    approval_id = str(held.json()["approval_id"])
    await audit_id_of(console, "echo", "plain", "html", principal=BOB)
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    response = await page.goto(await console.link_for(BOB))
    assert response is not None and response.status == 200
    # The filter form loads the filtered page.
    await page.fill('input[name="q"]', "plain")
    await page.click('#filters button[type="submit"]')
    await page.wait_for_url("**q=plain**")
    assert "echo plain html" in ((await page.text_content("#activity")) or "")
    # Approve posts the form and lands on the exec it ran.
    await page.goto(f"{console.url}/console/approvals")
    await page.locator(f'tr[data-approval-id="{approval_id}"] button.approve').click()
    await page.wait_for_url("**/console/execs/*")
    assert (await page.text_content("#status")) == "completed"
    await context.close()
