"""htmx requests get the part of a page they swap: the activity results alone, a
refusal in place of its target, a reload when the session ended. The same URLs without
htmx answer whole pages (the console works without JavaScript)."""

from __future__ import annotations

from pathlib import Path

from policies.audit import SqlAuditStore
from policies.service.intents import intent_for
from policies.types import Decision, Effect, Surface, Target
from server.console.signin import console_key, make_link
from tests.console.conftest import BASE, replica, shared_settings

HTMX = {"HX-Request": "true", "HX-Target": "results"}


async def test_an_htmx_filter_gets_the_results_alone_and_a_page_load_the_whole_page(
    tmp_path: Path, audit_store: SqlAuditStore
) -> None:
    await audit_store.record_intent(
        intent_for(
            "local:alice",
            Surface.CLI,
            Target.parse("local:demo-api/c-1"),
            ("echo", "swapped"),
            Decision(Effect.ALLOW, "diagnostics", "test"),
        )
    )
    async with replica(shared_settings(tmp_path), audit_store) as client:
        link = make_link(console_key(tmp_path), BASE, "local:audra")
        assert (await client.get(link.removeprefix(BASE))).status_code == 303
        part = await client.get("/console/?q=swapped", headers=HTMX)
        whole = await client.get("/console/?q=swapped")
        restore = await client.get(
            "/console/?q=swapped", headers={**HTMX, "HX-History-Restore-Request": "true"}
        )
        refused = await client.get("/console/?since=yesterday-ish", headers=HTMX)
    assert part.status_code == 200
    assert part.text.strip().startswith('<div id="results" data-query="q=swapped">')
    assert "<html" not in part.text and "echo swapped" in part.text
    assert "<html" in whole.text and 'id="results"' in whole.text
    assert "<html" in restore.text
    assert "HX-Request" in part.headers["vary"]
    assert refused.status_code == 400
    assert refused.text.strip().startswith('<div id="results">')
    assert 'data-code="bad_filter"' in refused.text


async def test_an_htmx_request_after_the_session_ended_reloads_the_page(
    tmp_path: Path, audit_store: SqlAuditStore
) -> None:
    async with replica(shared_settings(tmp_path), audit_store) as client:
        answer = await client.get("/console/", headers=HTMX)
        page = await client.get("/console/")
    assert answer.status_code == 204 and answer.headers["hx-refresh"] == "true"
    assert page.status_code == 401 and "<html" in page.text
