"""The Slack rig: the whole `execgate serve` (local FC host, sandboxed demo instances,
the real bolt app at /slack/events) with a fake Slack Web API, and signed requests.

One rig serves every test of a module (``rig``); each test gets a view of it that sees
only its own fake-Slack calls (``rig.fake``), audit records (``rig.audit()``) and
approvals, starts with the demo instance's /tmp as the rig found it, and ends once the
work its requests left running has finished. A test that changes the server (settings,
restarts, tracing) or counts look-ups the shared server may have cached opens its own
(``fresh_rig``, or ``open_rig`` with ``fake_slack``) and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from slack_sdk.signature import SignatureVerifier

from policies.ports import ApprovalRecord, ApprovalState, AuditFilter, ExecRecord
from policies.types import AuditId
from server.serve import Running, running_server
from server.settings import DatabaseSettings, SecretRef, ServerSettings, Settings, SlackSettings
from tests.bot.fake_slack import TEAM_ID, Call, FakeSlack
from tests.support.servers import serve_asgi

HERE = Path(__file__).resolve().parent
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-bot-token"
APPROVALS = "CAPPROVALS"
WAR_ROOM = "CWARROOM"
# More audit records than a module's tests make; `Rig.audit` reads them all.
MAX_RECORDS = 10_000

USERS: dict[str, dict[str, Any]] = {
    name: {} for name in ("UALICE", "UBOB", "UCAROL", "UDAVE", "UERIN", "UAUDITOR", "UNOBODY")
}
USERS["UGHOST"] = {"deleted": True}
USERS["UBOB"] = {"name": "bob", "display_name": "Bobby"}
GROUPS = {"SAPPROVERS": ["UCAROL"], "SOPS": ["UERIN"]}


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def slack_settings(tmp_path: Path, database_url: str, fake: FakeSlack) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "signing").write_text(SIGNING_SECRET)
    (secrets / "bot").write_text(BOT_TOKEN)
    (secrets / "app").write_text("xapp-test-app-token")
    return Settings(
        data_dir=tmp_path / "data",
        policy=HERE / "policy.yaml",
        database=DatabaseSettings(url=database_url),
        server=ServerSettings(port=0),
        slack=SlackSettings(
            signing_secret=SecretRef(file=secrets / "signing"),
            bot_token=SecretRef(file=secrets / "bot"),
            app_token=SecretRef(file=secrets / "app"),
            approvals_channel=APPROVALS,
            api_base_url=fake.api_url,
        ),
    )


@dataclass
class Rig:
    """ExecGate with its Slack mount, the fake Slack, and a way to send Slack requests."""

    running: Running
    fake: FakeSlack
    http: httpx.AsyncClient
    instance: str  # demo-api/<id>
    data_dir: Path
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Audit records already in the log when this view began (not this test's).
    _earlier: frozenset[AuditId] = frozenset()
    # What the instance's /tmp held when the rig started.
    _tmp_at_start: frozenset[str] = frozenset()

    async def view(self) -> Rig:
        """This rig as one test sees it: the fake Slack calls, audit records and approvals
        made from now on, and the instance's /tmp as the rig found it."""
        tmp = self.state_tmp()
        for path in tmp.iterdir():
            if path.name not in self._tmp_at_start:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        earlier = await self._all_records()
        return dataclasses.replace(
            self, fake=self.fake.since_now(), _earlier=frozenset(r.audit_id for r in earlier)
        )

    async def _all_records(self) -> list[ExecRecord]:
        records = await self.running.service.audit_list(AuditFilter(limit=MAX_RECORDS))
        assert len(records) < MAX_RECORDS, "the shared rig's audit log outgrew the marks"
        return records

    async def audit(self) -> list[ExecRecord]:
        """The audit records made since this view began, newest first."""
        return [r for r in await self._all_records() if r.audit_id not in self._earlier]

    async def pending_approvals(self) -> list[ApprovalRecord]:
        """The pending approvals of requests made since this view began."""
        mine = {r.audit_id for r in await self.audit()}
        pending = await self.running.service.audit.list_approvals(ApprovalState.PENDING)
        return [a for a in pending if a.audit_id in mine]

    async def settled(self) -> None:
        """Wait until the work the bot started after acking requests (commands, clicks,
        thread replies) has finished, so none of it lands in the next test's view. Idle
        watches of open session threads are long-lived and not waited for."""
        with anyio.fail_after(60):
            while busy := [t for t in asyncio.all_tasks() if _is_bot_work(t)]:
                await asyncio.wait(busy)

    @property
    def events_url(self) -> str:
        return f"{self.running.url}/slack/events"

    def state_tmp(self) -> Path:
        instance_id = self.instance.split("/", 1)[1]
        found = list(self.data_dir.glob(f"instances/**/{instance_id}/tmp"))
        assert found, "instance state directory not found"
        return found[0]

    async def post(
        self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **signed_headers(body), **(headers or {})}
        return await self.http.post(self.events_url, content=body, headers=sent)

    def command_body(self, user: str, text: str, *, channel: str = WAR_ROOM) -> tuple[bytes, str]:
        """A slash command's form body and its response URL name."""
        n = next(self._ids)
        name = f"cmd-{n}"
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "war-room",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/exec",
            "text": text,
            "api_app_id": "AEXECGATE",
            "response_url": self.fake.response_url(name),
            "trigger_id": f"trigger-{n}",
        }
        return urllib.parse.urlencode(form).encode(), name

    async def command(
        self, user: str, text: str, *, channel: str = WAR_ROOM
    ) -> tuple[httpx.Response, str]:
        """Send `/exec text` as ``user``; the response and the response URL's name."""
        body, name = self.command_body(user, text, channel=channel)
        response = await self.post(body, "application/x-www-form-urlencoded")
        return response, name

    async def click(self, user: str, card: Call, action_id: str) -> httpx.Response:
        """Click a button of an approval card message."""
        n = next(self._ids)
        button = next(
            e
            for b in card.blocks
            if b.get("type") == "actions"
            for e in b["elements"]
            if e["action_id"] == action_id
        )
        channel, ts = str(card.data["channel"]), card.ts
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "AEXECGATE",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "trigger_id": f"click-{n}",
            "channel": {"id": channel, "name": "approvals"},
            "message": {"ts": ts, "type": "message", "text": card.data.get("text", "")},
            "response_url": self.fake.response_url(f"click-{n}"),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "approval",
                    "value": button["value"],
                    "type": "button",
                    "action_ts": "1700000000.1",
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, "application/x-www-form-urlencoded")

    def message_body(
        self, user: str, text: str, *, thread_ts: str, channel: str = WAR_ROOM
    ) -> bytes:
        """An Events API delivery of a message posted in a thread."""
        n = next(self._ids)
        return json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": TEAM_ID,
                "api_app_id": "AEXECGATE",
                "type": "event_callback",
                "event_id": f"Ev{n:08d}",
                "event_time": int(time.time()),
                "event": {
                    "type": "message",
                    "channel": channel,
                    "channel_type": "channel",
                    "user": user,
                    "text": text,
                    "ts": f"1700000100.{n:06d}",
                    "thread_ts": thread_ts,
                },
            }
        ).encode()

    async def message(
        self, user: str, text: str, *, thread_ts: str, channel: str = WAR_ROOM
    ) -> httpx.Response:
        body = self.message_body(user, text, thread_ts=thread_ts, channel=channel)
        return await self.post(body, "application/json")

    async def audited_control(self) -> None:
        """Control for a "this test recorded nothing" assertion: an allowed `/exec pwd`
        in the same rig runs and is the one record the test has then made."""
        _, name = await self.command("UALICE", f"{self.instance} pwd")
        await self.fake.wait_call(
            "response_url",
            lambda c: c.data.get("_name") == name and c.data.get("response_type") == "in_channel",
        )
        records = await self.audit()
        assert [(r.intent.argv, r.intent.effect) for r in records] == [(("pwd",), "allow")]

    async def card_for(self, approval: ApprovalRecord | str) -> Call:
        approval_id = approval if isinstance(approval, str) else approval.approval_id
        return await self.fake.wait_call(
            "chat.postMessage",
            lambda c: c.data.get("channel") == APPROVALS and approval_id in c.rendered,
        )


def _is_bot_work(task: asyncio.Task[Any]) -> bool:
    # The bot names the tasks it spawns after an ack "slack-…" (bot.app.SlackBot).
    name = task.get_name()
    return name.startswith("slack-") and not name.startswith("slack-session-idle-")


def _new_fake() -> FakeSlack:
    return FakeSlack(users=dict(USERS), groups={k: list(v) for k, v in GROUPS.items()})


def _nothing_refused(fake: FakeSlack) -> None:
    # Whatever a test did, Slack would have shown every message ExecGate sent.
    assert fake.rejected() == [], "messages Slack would refuse (Block Kit limits)"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack for this test alone."""
    fake = _new_fake()
    async with serve_asgi(fake.app()) as url:
        fake.url = url
        yield fake
    _nothing_refused(fake)


@contextlib.asynccontextmanager
async def open_rig(
    settings: Settings, fake: FakeSlack, *, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[Rig]:
    async with running_server(settings, port=0, tracer_provider=tracer_provider) as running:
        live = running.manager.list("demo-api")
        assert live, "the demo-api function has no provisioned instance"
        async with httpx.AsyncClient(timeout=30) as http:
            rig = Rig(running, fake, http, f"demo-api/{live[0].instance_id}", settings.data_dir)
            rig = dataclasses.replace(
                rig, _tmp_at_start=frozenset(p.name for p in rig.state_tmp().iterdir())
            )
            yield rig


@pytest_asyncio.fixture(scope="module")
async def shared_rig(
    tmp_path_factory: pytest.TempPathFactory, module_migrated_url: str
) -> AsyncIterator[Rig]:
    """One rig (and fake Slack) for the tests of a module; they use it through ``rig``."""
    fake = _new_fake()
    async with serve_asgi(fake.app()) as url:
        fake.url = url
        settings = slack_settings(tmp_path_factory.mktemp("slack-rig"), module_migrated_url, fake)
        async with open_rig(settings, fake) as rig:
            yield rig
    _nothing_refused(fake)  # tests that used the shared rig without a view included


@pytest.fixture
async def rig(shared_rig: Rig) -> AsyncIterator[Rig]:
    """This test's view of the module's shared rig (see ``Rig.view``)."""
    view = await shared_rig.view()
    yield view
    await view.settled()
    _nothing_refused(view.fake)


@pytest.fixture
async def fresh_rig(tmp_path: Path, database_url: str, fake_slack: FakeSlack) -> AsyncIterator[Rig]:
    """A rig (server, database, fake Slack) for this test alone."""
    async with open_rig(slack_settings(tmp_path, database_url, fake_slack), fake_slack) as rig:
        yield rig
