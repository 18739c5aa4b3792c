"""Slack's side of the slack_ack benchmark: a fake Slack Web API (the methods
ExecGate's bot calls, and response URLs) and the sender of signed slash commands. It
runs in the bench process; ExecGate runs in a process of its own.

    async with SlackSide({"S0SRE": users}) as side:   # side.api_url for the settings
        acks = await side.burst(events_url, commands, results=50)  # ms; results awaited
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from server.asgi_runner import run_asgi

TEAM_ID = "T0BENCH"
CHANNEL = "C0WARROOM"
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench-bot-token"
RESULT_TIMEOUT_S = 120.0


class SlackSide:
    """A fake Slack on loopback, and signed slash commands sent to ExecGate."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        self._groups = {g: list(members) for g, members in groups.items()}
        self._stack = contextlib.AsyncExitStack()
        self._results = 0
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def __aenter__(self) -> SlackSide:
        running = await self._stack.enter_async_context(
            run_asgi(self._app(), host="127.0.0.1", port=0)
        )
        self.url = running.url
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    # ------------------------------------------------------------------ sending

    def _command(self, url: str, user: str, text: str) -> tuple[bytes, dict[str, str]]:
        n = next(self._ids)
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "bench",
            "channel_id": CHANNEL,
            "channel_name": "war-room",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/exec",
            "text": text,
            "api_app_id": "A0EXECGATE",
            "response_url": f"{self.url}/response/cmd-{n}",
            "trigger_id": f"trigger-{n}",
        }
        body = urllib.parse.urlencode(form).encode()
        ts = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or "",
        }
        return body, headers

    async def burst(self, url: str, commands: list[tuple[str, str]], results: int) -> list[float]:
        """Send every (user, text) at once; the milliseconds until each was acknowledged.
        Then wait until ``results`` more results were posted back (the execs finished).

        Raises: RuntimeError when a command is not acknowledged with 200.
        """
        expected = self._results + results
        limits = httpx.Limits(max_connections=len(commands))
        async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as http:

            async def one(user: str, text: str) -> float:
                body, headers = self._command(url, user, text)
                start = time.perf_counter()
                response = await http.post(url, content=body, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"slash command answered {response.status_code}")
                return elapsed

            acks = await asyncio.gather(*(one(user, text) for user, text in commands))
        async with asyncio.timeout(RESULT_TIMEOUT_S), self._changed:
            await self._changed.wait_for(lambda: self._results >= expected)
        return list(acks)

    # ------------------------------------------------------------------ the fake API

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/response/{name}", self._response, methods=["POST"]),
            ]
        )

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        body = await request.body()
        data: dict[str, Any] = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/json") and body:
            data.update(json.loads(body))
        else:
            data.update(urllib.parse.parse_qsl(body.decode()))
        return JSONResponse(self._answer(method, data))

    def _answer(self, method: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team_id": TEAM_ID, "user_id": "U0EXECGATE", "bot_id": "B0EG"}
        if method == "users.info":
            user = str(data.get("user"))
            return {"ok": True, "user": {"id": user, "deleted": False, "is_bot": False}}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self._groups.get(str(data.get("usergroup")), [])}
        if method == "usergroups.list":
            groups = [{"id": g, "users": users} for g, users in self._groups.items()]
            return {"ok": True, "usergroups": groups}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            ts = f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": data.get("channel"), "ts": ts, "message_ts": ts}
        return {"ok": False, "error": "unknown_method"}

    async def _response(self, request: Request) -> Response:
        data = json.loads(await request.body())
        # The result of an exec is posted to the channel; the ack itself was the reply.
        if data.get("response_type") == "in_channel":
            async with self._changed:
                self._results += 1
                self._changed.notify_all()
        return PlainTextResponse("ok")
