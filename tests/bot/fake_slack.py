"""A fake Slack for tests: the Web API methods ExecGate calls, response URLs, file uploads.

Served on loopback (port 0) by ``serve_asgi``; point ``AsyncWebClient`` at
``fake.api_url`` (with its trailing slash). Every call is recorded in order;
``wait_for`` blocks until a predicate over the recorded calls holds (no sleeps).
``fake.since_now()`` is the same fake seeing only the calls made from then on: one
test's view of a fake that several tests share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.bot.blockkit import block_errors

T = TypeVar("T")

TEAM_ID = "T0FAKE"
BOT_USER_ID = "UEXECGATE"
BOT_ID = "BEXECGATE"


@dataclass(frozen=True)
class Call:
    """One request the fake received: a Web API method, a response URL or an upload."""

    method: str
    data: dict[str, Any]
    token: str | None = None
    body: bytes = b""
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def ts(self) -> str:
        """The ts Slack gave the message this call posted."""
        return str(self.answer.get("ts", ""))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.data.get("blocks") or []
        parsed: list[dict[str, Any]] = json.loads(blocks) if isinstance(blocks, str) else blocks
        return parsed

    @property
    def rendered(self) -> str:
        """Everything a person could read in the message (fallback text and blocks)."""
        return str(self.data.get("text", "")) + "\n" + json.dumps(self.blocks, ensure_ascii=False)

    def has_action(self, action_id: str) -> bool:
        return any(
            element.get("action_id") == action_id
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        )


_BLOCK_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})


def _blocks_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks = data.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return list(blocks)


class _Log:
    """What a fake Slack server received, shared by every view of it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.changed = asyncio.Condition()
        self.ts = itertools.count(1)
        self.files = itertools.count(1)


@dataclass
class FakeSlack:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    # chat.postMessage to these channels fails as Slack does for a bot not in them.
    closed_channels: set[str] = field(default_factory=set)
    ws_url: str = ""
    url: str = ""
    _log: _Log = field(default_factory=_Log, repr=False)
    _start: int = 0  # calls before this one are not this view's

    @property
    def calls(self) -> list[Call]:
        """The calls this view has seen, in order."""
        return self._log.calls[self._start :]

    def since_now(self) -> FakeSlack:
        """This fake (same server, users and groups), seeing only calls made from now on."""
        return dataclasses.replace(self, _start=len(self._log.calls))

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[list[Call]], T | None], timeout: float = 30) -> T:
        """The first truthy value of ``predicate(calls)``, waiting for new calls."""
        with anyio.fail_after(timeout):
            async with self._log.changed:
                while True:
                    found = predicate(self.calls)
                    if found:
                        return found
                    await self._log.changed.wait()

    async def wait_call(
        self, method: str, where: Callable[[Call], bool] = lambda c: True, timeout: float = 30
    ) -> Call:
        """The first recorded call of ``method`` that satisfies ``where``."""

        def first(calls: list[Call]) -> Call | None:
            return next((c for c in calls if c.method == method and where(c)), None)

        return await self.wait_for(first, timeout)

    async def _record(self, call: Call) -> None:
        async with self._log.changed:
            self._log.calls.append(call)
            self._log.changed.notify_all()

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._log.ts):06d}"

    # ------------------------------------------------------------------ HTTP

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/response/{name}", self._response, methods=["POST"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
            ]
        )

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        body = await request.body()
        data: dict[str, Any] = dict(request.query_params)
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json") and body:
            data.update(json.loads(body))
        elif kind.startswith("application/x-www-form-urlencoded"):
            data.update(urllib.parse.parse_qsl(body.decode()))
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") or data.get("token")
        answer = self._answer(method, data)
        if answer.get("ok") and method in _BLOCK_METHODS:
            errors = block_errors(_blocks_of(data))
            if errors:
                answer = {"ok": False, "error": "invalid_blocks", "errors": errors}
        await self._record(Call(method, data, token, answer=answer))
        return JSONResponse(answer)

    def _answer(self, method: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.test/",
                "team": "Fake",
                "team_id": TEAM_ID,
                "user": "execgate",
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method == "chat.postMessage":
            channel = str(data.get("channel"))
            if channel in self.closed_channels:
                return {"ok": False, "error": "not_in_channel"}
            return {"ok": True, "channel": channel, "ts": self._next_ts(), "message": {}}
        if method == "chat.update":
            return {"ok": True, "channel": data.get("channel"), "ts": data.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "users.info":
            user_id = str(data.get("user"))
            user = self.users.get(user_id)
            if user is None:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": user_id, "deleted": False, "is_bot": False, **user}}
        if method == "users.list":
            members = [
                {
                    "id": user_id,
                    "name": user.get("name", user_id[1:].lower()),
                    "deleted": bool(user.get("deleted", False)),
                    "is_bot": False,
                    "profile": {"display_name": user.get("display_name", "")},
                }
                for user_id, user in self.users.items()
            ]
            return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.groups.get(str(data.get("usergroup")), [])}
        if method == "usergroups.list":
            groups = [{"id": g, "users": users} for g, users in self.groups.items()]
            return {"ok": True, "usergroups": groups}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._log.files):08d}"
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = json.loads(str(data.get("files", "[]")))
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        return {"ok": False, "error": "unknown_method"}

    async def _response(self, request: Request) -> Response:
        data = json.loads(await request.body())
        data["_name"] = request.path_params["name"]
        errors = block_errors(_blocks_of(data))
        if errors:
            # Slack answers a response_url post with bad blocks this way, and shows nothing.
            await self._record(Call("response_url", data, answer={"ok": False, "errors": errors}))
            return PlainTextResponse("invalid_blocks", status_code=400)
        await self._record(Call("response_url", data))
        return PlainTextResponse("ok")

    def rejected(self) -> list[Call]:
        """Calls Slack would have refused for breaking its Block Kit limits."""
        return [
            c
            for c in self.calls
            if c.answer and c.answer.get("ok") is False and "errors" in c.answer
        ]

    async def _upload(self, request: Request) -> Response:
        body = await request.body()
        await self._record(Call("upload", {"file_id": request.path_params["file_id"]}, body=body))
        return PlainTextResponse(f"OK - {len(body)}")
