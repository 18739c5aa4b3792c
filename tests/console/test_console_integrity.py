"""The integrity page lists the anchors (signed checkpoints published to the artifact
store) with whether each still agrees with the log."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.artifacts.anchors import local_anchors
from policies.audit import open_audit_store
from policies.audit.anchors import AnchorPublisher
from policies.audit.chain import GENESIS_HASH
from policies.audit.checkpoint import Segment, encode_checkpoint
from policies.service.intents import intent_for
from policies.types import Decision, Effect, Surface, Target
from server.console.signin import console_key, make_link
from tests.conftest import CHECKPOINT_KEY
from tests.console.conftest import BASE, replica, shared_settings

INTENT = intent_for(
    "local:alice",
    Surface.CLI,
    Target.parse("local:demo-api/c-1"),
    ("echo", "anchored"),
    Decision(Effect.ALLOW, "diagnostics", "test"),
)


async def test_the_integrity_page_lists_each_anchor_with_whether_it_agrees_with_the_log(
    tmp_path: Path, migrated_url: str
) -> None:
    anchors = local_anchors(tmp_path / "artifacts")
    store = await open_audit_store(
        migrated_url,
        checkpoint_path=tmp_path / "checkpoint.json",
        checkpoint_key=CHECKPOINT_KEY,
        publish=AnchorPublisher(anchors),
        anchor_interval_s=0,
        new_log=True,
    )
    try:
        for _ in range(3):
            await store.record_intent(INTENT)
        assert (await store.verify()).ok  # writes the checkpoint and publishes it
        published = await anchors.list_anchors()
        assert published
        # One signed by another key, one signed by ours recording a hash the log lacks.
        forged = encode_checkpoint(
            [Segment(1, GENESIS_HASH, 1, "c" * 64)], Ed25519PrivateKey.generate()
        )
        await AnchorPublisher(anchors)(1, forged)
        rewritten = encode_checkpoint([Segment(1, GENESIS_HASH, 2, "d" * 64)], CHECKPOINT_KEY)
        await AnchorPublisher(anchors)(2, rewritten)
        ahead = encode_checkpoint([Segment(1, GENESIS_HASH, 999, "e" * 64)], CHECKPOINT_KEY)
        await AnchorPublisher(anchors)(999, ahead)

        settings = shared_settings(tmp_path)
        async with replica(settings, store, anchors) as client:
            link = make_link(console_key(tmp_path), BASE, "local:audra")
            assert (await client.get(link.removeprefix(BASE))).status_code == 303
            page = await client.get("/console/integrity")
        assert page.status_code == 200
        verdicts = dict(
            line.split('data-anchor="', 1)[1].split('" data-verdict="')
            for line in page.text.splitlines()
            if "data-anchor=" in line
        )
        verdicts = {name: v.split('"', 1)[0] for name, v in verdicts.items()}
        assert {verdicts[name] for name in published} == {"agrees"}
        assert sorted(verdicts.values()) == sorted(
            ["agrees"] * len(published) + ["invalid", "differs", "ahead"]
        )
        assert "AHEAD of the log" in page.text and "DIFFERS from the log" in page.text
    finally:
        await store.aclose()


async def test_the_integrity_page_says_when_no_anchors_are_published(
    tmp_path: Path, migrated_url: str
) -> None:
    store = await open_audit_store(migrated_url, checkpoint_path=None)
    try:
        async with replica(shared_settings(tmp_path), store) as client:
            link = make_link(console_key(tmp_path), BASE, "local:audra")
            assert (await client.get(link.removeprefix(BASE))).status_code == 303
            page = await client.get("/console/integrity")
        assert page.status_code == 200 and 'id="anchors-off"' in page.text
    finally:
        await store.aclose()
