"""The review console over plain HTTP against a real `execgate serve`: sign-in links,
cookies, CSRF, CSP, and who may see which record (decided by the service)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.console.conftest import Console

ALICE = "local:alice"
BOB = "local:bob"
AUDRA = "local:audra"


@asynccontextmanager
async def signed_in(console: Console, principal: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client signed in to the console as ``principal`` by a fresh link."""
    link = await console.link_for(principal)
    async with httpx.AsyncClient(base_url=console.url, timeout=60) as client:
        response = await client.get(link.removeprefix(console.url))
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


async def test_a_signin_link_signs_in_once_with_a_hardened_session_cookie(
    shared_console: Console,
) -> None:
    console = shared_console
    async with httpx.AsyncClient(base_url=console.url, timeout=60) as client:
        path = console.signin_link.removeprefix(console.url)
        first = await client.get(path)
        assert first.status_code == 303
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
        page = await client.get("/console/")
        assert page.status_code == 200
        assert 'id="me"' in page.text
    async with httpx.AsyncClient(base_url=console.url, timeout=60) as stranger:
        again = await stranger.get(path)
        assert again.status_code == 403
        assert 'data-code="signin_refused"' in again.text
        assert (await stranger.get("/console/")).status_code == 401


async def test_a_forged_or_altered_signin_link_signs_nobody_in(shared_console: Console) -> None:
    console = shared_console
    link = await console.link_for(ALICE)
    async with httpx.AsyncClient(base_url=console.url, timeout=60) as client:
        altered = link.removeprefix(console.url)[:-3] + "AAA"
        assert (await client.get(altered)).status_code == 403
        assert (await client.get("/console/")).status_code == 401


async def test_pages_send_a_strict_content_security_policy(shared_console: Console) -> None:
    console = shared_console
    async with signed_in(console, ALICE) as client:
        page = await client.get("/console/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"


async def test_a_non_auditor_cannot_open_another_principals_record_even_by_url(
    shared_console: Console,
) -> None:
    console = shared_console
    ran = await console.cli(
        "exec", "--json", console.instance, "--", "echo", "mine", principal=ALICE
    )
    assert ran.code == 0, ran.stderr
    audit_id = str(ran.json()["audit_id"])
    async with (
        signed_in(console, ALICE) as owner,
        signed_in(console, BOB) as other,
        signed_in(console, AUDRA) as auditor,
    ):
        # The record exists and its owner and an auditor can open it...
        assert (await owner.get(f"/console/execs/{audit_id}")).status_code == 200
        assert (await auditor.get(f"/console/execs/{audit_id}")).status_code == 200
        # ...but not another non-auditor, and it is not in their activity either.
        refused = await other.get(f"/console/execs/{audit_id}")
        assert refused.status_code == 403
        assert 'data-code="denied"' in refused.text
        assert audit_id not in (await other.get("/console/")).text
        assert audit_id not in (await other.get(f"/console/?principal={ALICE}")).text
        assert audit_id in (await auditor.get(f"/console/?principal={ALICE}")).text
        assert audit_id not in (await other.get("/console/export.jsonl")).text


async def test_a_form_posted_without_its_csrf_token_is_refused(shared_console: Console) -> None:
    console = shared_console
    held = await console.cli("exec", "--json", console.instance, "--", "uptime", principal=ALICE)
    approval_id = str(held.json()["approval_id"])
    async with signed_in(console, BOB) as approver:
        queue = await approver.get("/console/approvals")
        assert approval_id in queue.text
        vote = f"/console/approvals/{approval_id}/vote"
        refused = await approver.post(vote, data={"decision": "approve"})
        assert refused.status_code == 403
        assert 'data-code="csrf_failed"' in refused.text
        forged = await approver.post(vote, data={"decision": "approve", "csrf": "x" * 43})
        assert forged.status_code == 403
        # Nothing was approved: the request is still waiting, and the same form with
        # its token does approve it.
        assert approval_id in (await approver.get("/console/approvals")).text
        done = await approver.post(vote, data={"decision": "approve", "csrf": csrf_of(queue.text)})
        assert done.status_code == 303
        page = await approver.get(done.headers["location"])
        assert re.search(r'id="status">completed<', page.text), page.text


async def test_the_requester_cannot_approve_their_own_request_from_the_console(
    shared_console: Console,
) -> None:
    console = shared_console
    held = await console.cli("exec", "--json", console.instance, "--", "uptime", principal=BOB)
    approval_id = str(held.json()["approval_id"])
    async with signed_in(console, BOB) as requester:
        queue = await requester.get("/console/approvals")
        assert approval_id in queue.text
        refused = await requester.post(
            f"/console/approvals/{approval_id}/vote",
            data={"decision": "approve", "csrf": csrf_of(queue.text)},
        )
        assert refused.status_code == 403
        assert 'data-code="self_approval"' in refused.text
        # Still waiting for someone else.
        assert approval_id in (await requester.get("/console/approvals")).text


async def test_integrity_and_verify_now_are_for_auditors_only(shared_console: Console) -> None:
    console = shared_console
    async with signed_in(console, AUDRA) as auditor, signed_in(console, ALICE) as other:
        page = await auditor.get("/console/integrity")
        assert page.status_code == 200
        verified = await auditor.post(
            "/console/integrity/verify", data={"csrf": csrf_of(page.text)}
        )
        assert verified.status_code == 303
        assert "passed at" in (await auditor.get("/console/integrity")).text
        assert (await other.get("/console/integrity")).status_code == 403
