"""``execgate invoke``: traffic for a local function, through the local host's FC API.

    execgate invoke demo-api                          one invocation, its answer printed
    execgate invoke demo-api --path /checkout --rate 5 --duration 60
    execgate invoke demo-api --rate 300 --duration 10 --json

Every invocation is FC 3.0's ``POST /2023-03-30/functions/{fn}/invocations``, signed
like exec with the local host's key; ``--path`` is the HTTP path the function's server
is called with (header ``x-fc-invocation-path``). Under ``--rate`` requests start on an
open-loop schedule (a slow function does not slow the sender down), a progress line
goes to stderr every second and the summary (count, errors, p50/p99) to stdout.

The schedule is kept with up to MAX_IN_FLIGHT invocations open at once over keep-alive
connections; an invocation's latency runs from the moment the schedule said to send it,
so a sender or host that falls behind shows in p50/p99 rather than hiding in them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from policies.instances.fc.endpoint import FC3
from policies.instances.fc.signing import HEADER_ACCOUNT_ID, authorization, http_date, sign
from server.cli.exits import EXIT_UNAVAILABLE, EXIT_USAGE
from server.localstate import local_keys, read_address
from server.settings import Settings

EXIT_OK = 0
HEADER_INVOCATION_PATH = "x-fc-invocation-path"
MAX_IN_FLIGHT = 512
TIMEOUT = 30.0


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.latencies) + self.errors

    def record(self, status: str, seconds: float | None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if seconds is None:
            self.errors += 1
        else:
            self.latencies.append(seconds)

    def summary(self, function: str, path: str, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:  # nearest rank: the smallest value >= p of all
            if not ordered:
                return None
            return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 2)

        return {
            "function": function,
            "path": path,
            "count": self.count,
            "ok": len(self.latencies),
            "errors": self.errors,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "rate": round(self.count / elapsed, 1) if elapsed > 0 else None,
            "seconds": round(elapsed, 2),
            "statuses": self.statuses,
        }


class Invoker:
    """Signed invocations of one function over one keep-alive connection pool."""

    def __init__(self, settings: Settings, function: str, path: str) -> None:
        address = read_address(settings.data_dir)
        self._keys = local_keys(settings.data_dir)
        self._account = str(address.get("account_id", settings.local_host.account_id))
        self._path = f"/{FC3}/functions/{function}/invocations"
        self._invocation_path = path
        self._url = str(address["url"]) + self._path
        # aiohttp rather than httpx: at hundreds of invocations a second on a small
        # machine the sender's own CPU time matters.
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            trust_env=False,
        )
        self._signed: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        """The signed headers; the same within one second of the Date header."""
        date = http_date(time.time())
        if self._signed.get("Date") != date:
            headers = {
                "Date": date,
                HEADER_ACCOUNT_ID: self._account,
                HEADER_INVOCATION_PATH: self._invocation_path,
                "Content-Type": "application/octet-stream",
            }
            signature = sign("POST", self._path, headers, self._keys.access_key_secret)
            headers["Authorization"] = authorization(self._keys.access_key_id, signature)
            self._signed = headers
        return self._signed

    async def once(self, body: bytes) -> Answer:
        async with self.client.post(self._url, data=body, headers=self._headers()) as response:
            text = await response.text(errors="replace")
            return Answer(response.status, dict(response.headers), text)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def function_status(self) -> str:
        return self.headers.get("x-fc-function-status", str(self.status))

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.function_status.startswith("2")


async def _one(invoker: Invoker, args: argparse.Namespace) -> int:
    answer = await invoker.once(args.data.encode())
    sys.stdout.write(answer.text + ("\n" if not answer.text.endswith("\n") else ""))
    instance = answer.headers.get("x-fc-instance-id", "?")
    print(f"status {answer.function_status}, instance {instance}", file=sys.stderr)
    return EXIT_OK if answer.ok else EXIT_UNAVAILABLE


async def _load(invoker: Invoker, args: argparse.Namespace) -> int:
    tally = Tally()
    body = args.data.encode()
    total = int(args.rate * args.duration)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def fire(due: float) -> None:
        async with gate:
            try:
                answer = await invoker.once(body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.record(type(exc).__name__, None)
                return
            tally.record(answer.function_status, loop.time() - due if answer.ok else None)

    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    next_report = start + 1.0
    for i in range(total):
        due = start + i / args.rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)  # the open-loop schedule
        task = asyncio.create_task(fire(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if loop.time() >= next_report:
            next_report += 1.0
            _progress(tally, loop.time() - start, len(tasks))
    await asyncio.gather(*tasks)
    summary = tally.summary(args.function, args.path, loop.time() - start)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['count']} invocations of {args.function}{args.path} in "
            f"{summary['seconds']} s ({summary['rate']}/s): {summary['ok']} ok, "
            f"{summary['errors']} errors, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms"
        )
    return EXIT_OK if tally.errors == 0 else EXIT_UNAVAILABLE


def _progress(tally: Tally, elapsed: float, in_flight: int) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    sys.stderr.write(
        f"{elapsed:5.0f} s  sent {tally.count + in_flight}  done {tally.count}  "
        f"errors {tally.errors}  in flight {in_flight}{end}"
    )
    sys.stderr.flush()


async def run_invoke(args: argparse.Namespace, settings: Settings) -> int:
    """Raises: ProviderUnavailable when the local host is not running."""
    if args.rate < 0 or args.duration <= 0 or not args.path.startswith("/"):
        print("execgate: --rate >= 0, --duration > 0, --path starting with /", file=sys.stderr)
        return EXIT_USAGE
    invoker = Invoker(settings, args.function, args.path)
    try:
        if args.rate == 0:
            return await _one(invoker, args)
        return await _load(invoker, args)
    except (aiohttp.ClientError, TimeoutError):
        print("execgate: the local instance host did not answer", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        await invoker.client.close()
