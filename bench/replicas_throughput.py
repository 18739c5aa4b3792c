"""replicas_throughput: audited execs per second through two replicas behind haproxy.

The deployment of ``bench.deployment``: two `execgate serve` replicas (``local_host``
disabled) on one fresh PostgreSQL database behind haproxy (round robin), reaching the
instance of a third `execgate serve`, the local FC host (unsandboxed: plain
subprocesses). 50 clients in this process call the MCP ``exec`` tool (``true``) over
streamable HTTP (stateless: one POST per call, its answer on that POST's stream), each
client on one keep-alive connection, again and again.

In the same run, alternating stretch by stretch with the proxied one:

- the floor: the same 50 clients running the same command through the FC client
  straight to the host (no ExecGate: no MCP, no policy, no audit, no proxy): what this
  machine allows for "start a command per exec" with ExecGate's exit-status wrapper.
  Where the floor is under the target, no change to ExecGate can reach it here;
- the baseline: the same 50 clients straight to one replica (no proxy, one replica's
  worth of work).

After the last stretch every exec row must have its outcome, and there must be as many
rows as calls made. Also reported: the CPU time per exec of each process (the host's
children are the commands and their exit-status wrappers) during the proxied
stretches, and the rate the machine's cores would allow at that cost, which load from
elsewhere does not move; and, from PostgreSQL during the proxied stretches, the
transactions per exec and how often the audit chain's lock had a waiter while its
holder was idle in a transaction (the lock held across a round trip to a replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.common import Result, cores, result, rounded, skipped
from bench.deployment import (
    HostAccess,
    Proxy,
    first_instance,
    free_port,
    local_host_config,
    replica_pair,
    running,
    serve_process,
)
from bench.rig import FUNCTION, count_audit, discard, fresh_postgres, write_policy
from policies.audit.db_engine import CHAIN_LOCK_KEY, parse_url
from policies.audit.migrate import upgrade
from policies.errors import ExecGateError
from policies.instances.fc import Credentials, FcEndpoint, FcProvider
from policies.types import Limits, Target
from server.mcp.auth import token_sha256

NAME = "replicas_throughput"
TARGET_PER_S = 600.0
CLIENTS = 50
ROUNDS = 3
STRETCH_S = 8.0
QUICK_STRETCH_S = 2.0
TOKEN = "bench-token-for-the-replicated-assistant"
CLIENT = "bench-assistant"
# The floor's limits: those of the bench policy's rule, which the replicas apply.
FLOOR_LIMITS = Limits(timeout=300, idle_timeout=300, max_output_bytes=512 << 20)
# How often PostgreSQL's locks are looked at during the proxied stretches.
LOCK_SAMPLE_S = 0.05
# Replica leases as a deployment would set them (the defaults).
LEASE_TTL = 20.0
HEARTBEAT = 5.0


@dataclass
class Stretch:
    ok: int = 0
    failed: int = 0
    elapsed: float = 0.0
    why: Counter[str] = field(default_factory=Counter)  # failed calls by what failed

    @property
    def per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


def _mcp_token() -> str:
    return f'[[mcp.tokens]]\nclient = "{CLIENT}"\nsha256 = "{token_sha256(TOKEN)}"\n'


def _call_body(target: str) -> bytes:
    arguments = {"target": target, "argv": ["true"], "reason": "bench"}
    call = {"name": "exec", "arguments": arguments}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}).encode()


def _failure(body: str) -> str | None:
    """What went wrong in a tools/call answer (an SSE stream or plain JSON), or None
    when it reports exit 0."""
    for line in body.splitlines():
        text = line[5:].strip() if line.startswith("data:") else line.strip()
        if not text.startswith("{"):
            continue
        message = json.loads(text)
        if "result" in message:
            result = message["result"]
            content = result.get("structuredContent") or {}
            if result.get("isError"):
                return f"tool error {content.get('error_code')}"
            return None if content.get("exit_code") == 0 else "exit code not 0"
        if "error" in message:
            return f"JSON-RPC error {message['error'].get('code')}"
    return "no answer in the response"


# One call: None when it succeeded, else what failed.
OneCall = Callable[[], Awaitable[str | None]]


async def _loops(one: OneCall, seconds: float) -> Stretch:
    """``CLIENTS`` loops of ``one`` for ``seconds``."""
    out = Stretch()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            failure = await one()
            if failure is None:
                out.ok += 1
            else:
                out.failed += 1
                out.why[failure] += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    out.elapsed = time.monotonic() - started
    return out


async def _floor(raw: FcProvider, target: Target, seconds: float) -> Stretch:
    """``CLIENTS`` loops of the raw FC exec of ``true`` (no ExecGate) for ``seconds``."""

    async def one() -> str | None:
        try:
            run = await raw.exec(target, ("true",), limits=FLOOR_LIMITS, on_output=discard)
        except ExecGateError as exc:
            return exc.code
        return None if run.exit_code == 0 else "exit code not 0"

    return await _loops(one, seconds)


@asynccontextmanager
async def _clients(base: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``CLIENTS`` HTTP clients of ``base``, each with its keep-alive connection."""
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base, headers=headers, timeout=60, trust_env=False)
            )
            for _ in range(CLIENTS)
        ]


async def _stretch(clients: list[httpx.AsyncClient], body: bytes, seconds: float) -> Stretch:
    """``CLIENTS`` loops of tools/call on ``clients`` for ``seconds``."""
    free = list(clients)

    async def one() -> str | None:
        http = free.pop()
        try:
            response = await http.post("/mcp", content=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        finally:
            free.append(http)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return _failure(response.text)

    return await _loops(one, seconds)


@dataclass
class Deployed:
    proxy_url: str
    direct_url: str
    target: str
    database_url: str
    pids: dict[str, int]  # the processes whose CPU time is counted, by role
    raw: FcProvider  # the FC client straight to the host, for the floor

    def raw_target(self) -> Target:
        function, instance = self.target.split("/", 1)
        return Target(function, instance)


@dataclass
class LockSamples:
    """What PostgreSQL's views showed of the audit chain's lock, sample by sample."""

    samples: int = 0
    waiting: int = 0  # samples where a writer waited for the chain's lock
    held_idle: int = 0  # ... while its holder was idle in a transaction (a round trip)
    commits: int = 0
    rollbacks: int = 0

    def figures(self, execs: int) -> dict[str, float]:
        n = max(self.samples, 1)
        return {
            "transactions_per_exec": round(self.commits / max(execs, 1), 2),
            "rollbacks_per_exec": round(self.rollbacks / max(execs, 1), 2),
            "lock_waited_share": round(self.waiting / n, 2),
            "lock_waited_on_idle_holder_share": round(self.held_idle / n, 2),
        }


_LOCKS = """
SELECT bool_or(NOT l.granted) AS waiting,
       bool_or(l.granted AND a.state = 'idle in transaction') AS held_idle
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2
  AND a.datname = current_database()
"""
_XACTS = "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1"


@asynccontextmanager
async def _watching_locks(database_url: str, into: LockSamples) -> AsyncIterator[None]:
    """Sample the chain lock's waiters every ``LOCK_SAMPLE_S`` while the block runs, and
    count the database's transactions (statistics are flushed within a second)."""
    url = parse_url(database_url)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            row = await conn.fetchrow(_LOCKS, CHAIN_LOCK_KEY >> 32, CHAIN_LOCK_KEY & 0xFFFFFFFF)
            into.samples += 1
            into.waiting += bool(row["waiting"])
            into.held_idle += bool(row["waiting"] and row["held_idle"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_SAMPLE_S)

    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        before = await conn.fetchrow(_XACTS, url.database)
        sampler = asyncio.create_task(sample())
        try:
            yield
        finally:
            stop.set()
            await sampler
        # The counters lag behind by up to a second (PostgreSQL's stats flush).
        await asyncio.sleep(1.1)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = await conn.fetchrow(_XACTS, url.database)
        into.commits += after["xact_commit"] - before["xact_commit"]
        into.rollbacks += after["xact_rollback"] - before["xact_rollback"]
    finally:
        await conn.close()


def _cpu_s(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _cpu_by_role(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds by role; a role's children (the host's commands) as ``ROLE children``."""
    seconds: dict[str, float] = {"client": time.process_time()}
    for role, pid in pids.items():
        own, children = _cpu_s(pid)
        seconds[role] = seconds.get(role, 0.0) + own
        if role == "host":
            seconds["host children"] = children
    return seconds


@asynccontextmanager
async def _deployed(root: Path, haproxy: str, database_url: str) -> AsyncIterator[Deployed]:
    policy = write_policy(root / "bench-policy.yaml")
    await upgrade(database_url)
    config = local_host_config(root, policy=policy, function=FUNCTION)
    async with serve_process(config) as (host, banner):
        access = HostAccess.of(root / "host")
        instance = first_instance(banner, FUNCTION)
        proxy = Proxy(haproxy, root / "haproxy.cfg", free_port())

        both = replica_pair(
            root,
            access,
            proxy,
            policy=policy,
            database_url=database_url,
            lease_ttl=LEASE_TTL,
            heartbeat=HEARTBEAT,
            extra=_mcp_token(),
        )
        async with running(both, proxy):
            pids = {"host": host.pid, "haproxy": _pid(proxy.proc)}
            pids.update({f"replica {r.name}": _pid(r.proc) for r in both})
            endpoint = FcEndpoint(
                account_id="1000000000000000", region="local", endpoint=access.url
            )
            credentials = Credentials(access.access_key_id, access.access_key_secret)
            raw = FcProvider("floor", endpoint, credentials)
            try:
                yield Deployed(proxy.url, both[0].url, instance, database_url, pids, raw)
            finally:
                await raw.aclose()


def _pid(proc: asyncio.subprocess.Process | None) -> int:
    assert proc is not None
    return proc.pid


async def _measure(quick: bool) -> Result:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        return skipped(NAME, "haproxy is not installed (apt-get install -y haproxy)")
    async with fresh_postgres() as database_url:
        if database_url is None:
            return skipped(NAME, "no PostgreSQL at $EXECGATE_BENCH_DATABASE_URL or 127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="execgate-bench-") as tmp:
            async with _deployed(Path(tmp), haproxy, database_url) as d:
                return await _rounds(d, quick)


async def _rounds(d: Deployed, quick: bool) -> Result:
    async with _clients(d.proxy_url) as through_proxy, _clients(d.direct_url) as direct_to_a:
        return await _alternated(d, through_proxy, direct_to_a, quick)


async def _alternated(
    d: Deployed,
    through_proxy: list[httpx.AsyncClient],
    direct_to_a: list[httpx.AsyncClient],
    quick: bool,
) -> Result:
    body = _call_body(d.target)
    seconds = QUICK_STRETCH_S if quick else STRETCH_S
    warm_up = await _stretch(through_proxy, body, 1.0)  # connections, caches, both replicas
    proxied: list[Stretch] = []
    direct: list[Stretch] = []
    floor: list[Stretch] = []
    spent: dict[str, float] = {}
    floor_spent: dict[str, float] = {}
    locks = LockSamples()
    for _ in range(1 if quick else ROUNDS):
        before = _cpu_by_role(d.pids)
        async with _watching_locks(d.database_url, locks):
            proxied.append(await _stretch(through_proxy, body, seconds))
        after = _cpu_by_role(d.pids)
        _add(spent, before, after)
        direct.append(await _stretch(direct_to_a, body, seconds))
        before = _cpu_by_role(d.pids)
        floor.append(await _floor(d.raw, d.raw_target(), seconds))
        _add(floor_spent, before, _cpu_by_role(d.pids))
    audit = await count_audit(d.database_url)
    execs = max(_total(proxied).ok, 1)
    cpu_ms = {role: round(1000 * s / execs, 2) for role, s in spent.items()}
    total_ms = sum(cpu_ms.values())
    floor_execs = max(_total(floor).ok, 1)
    floor_ms = {
        role: round(1000 * floor_spent[role] / floor_execs, 2)
        for role in ("client", "host", "host children")
    }
    floor_total_ms = sum(floor_ms.values())
    return {
        **_figures(proxied, direct, floor, warm_up, audit, quick),
        # The chain's lock (policies.audit): how often a writer waited for it, and for a
        # holder idle in its transaction, i.e. waiting on a round trip to its replica.
        "audit_chain_lock": locks.figures(execs),
        # CPU time per exec of every process but PostgreSQL's (shared with others):
        # what the machine's cores would allow at most, whatever else runs on them.
        "cpu_ms_per_exec": {**cpu_ms, "total": round(total_ms, 2)},
        "cpu_bound_per_s": rounded(cores() * 1000 / total_ms, 3) if total_ms else None,
        "floor_cpu_ms_per_exec": {**floor_ms, "total": round(floor_total_ms, 2)},
        # The floor's rate on this machine's cores with nothing else running on them.
        "floor_cpu_bound_per_s": (
            rounded(cores() * 1000 / floor_total_ms, 3) if floor_total_ms else None
        ),
    }


def _add(spent: dict[str, float], before: dict[str, float], after: dict[str, float]) -> None:
    for role in after:
        spent[role] = spent.get(role, 0.0) + after[role] - before[role]


def _total(stretches: list[Stretch]) -> Stretch:
    return Stretch(
        sum(s.ok for s in stretches),
        sum(s.failed for s in stretches),
        sum(s.elapsed for s in stretches),
        sum((s.why for s in stretches), Counter()),
    )


def _figures(
    proxied: list[Stretch],
    direct: list[Stretch],
    floor: list[Stretch],
    warm_up: Stretch,
    audit: dict[str, int],
    quick: bool,
) -> Result:
    ours, base, least = _total(proxied), _total(direct), _total(floor)
    calls = _total([*proxied, *direct, warm_up])
    per_s = [round(s.per_s, 1) for s in proxied]
    ratios = [round(p.per_s / b.per_s, 3) for p, b in zip(proxied, direct, strict=True) if b.per_s]
    to_floor = [round(p.per_s / f.per_s, 3) for p, f in zip(proxied, floor, strict=True) if f.per_s]
    # Every call made (warm-up included) asked for one exec: its intent, then its outcome.
    audited = audit["intents"] == audit["outcomes"] == calls.ok + calls.failed
    return result(
        NAME,
        quick=quick,
        execs_per_s=rounded(ours.per_s, 4),
        per_stretch=per_s,
        baseline_one_replica_direct_per_s=rounded(base.per_s, 4),
        ratio_to_baseline=ratios,
        # The raw FC exec straight to the host: this machine's ceiling for the target.
        floor_raw_fc_exec_per_s=rounded(least.per_s, 4),
        floor_per_stretch=[round(f.per_s, 1) for f in floor],
        floor_failed=least.failed,
        ratio_to_floor=to_floor,
        floor_below_target=least.per_s < TARGET_PER_S,
        clients=CLIENTS,
        calls=calls.ok + calls.failed,
        failed=calls.failed,
        # Failed calls by what failed: through the proxy, straight to one replica, floor.
        failures={
            "proxied": dict(_total([*proxied, warm_up]).why),
            "direct": dict(base.why),
            "floor": dict(least.why),
        },
        audit=audit,
        every_intent_has_its_outcome=audited,
        mode=(
            "2 execgate serve replicas on one PostgreSQL behind haproxy round robin -> FC "
            "client -> execgate serve local FC host (plain subprocess); MCP exec over HTTP"
        ),
        target=f">= {TARGET_PER_S:g} audited execs/s through the proxy, every intent with its "
        "outcome, no failed call",
        met=ours.per_s >= TARGET_PER_S and audited and calls.failed == 0,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_measure(quick))
