"""replicas_throughput: audited execs per second through two replicas behind haproxy.

The deployment of ``bench.deployment``: two `execgate serve` replicas (``local_host``
disabled) on one fresh PostgreSQL database behind haproxy (round robin), reaching the
instance of a third `execgate serve`, the local FC host (unsandboxed: plain
subprocesses). 50 clients in this process call the MCP ``exec`` tool (``true``) over
streamable HTTP (stateless: one POST per call, its answer on that POST's stream), each
client on one keep-alive connection, again and again.

Baseline, in the same run and alternating stretch by stretch with the proxied one: the
same 50 clients straight to one replica (no proxy, one replica's worth of work). After
the last stretch every exec row must have its outcome, and there must be as many rows
as calls made. Also reported: the CPU time per exec of each process (the host's
children are the commands and their exit-status wrappers) during the proxied stretches,
and the rate the machine's cores would allow at that cost, which load from elsewhere
does not move.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import Result, cores, result, rounded, skipped
from bench.deployment import (
    HostAccess,
    Proxy,
    first_instance,
    free_port,
    local_host_config,
    replica_config,
    replicas,
    running,
    serve_process,
)
from bench.rig import FUNCTION, count_audit, fresh_postgres, write_policy
from policies.audit.migrate import upgrade
from server.mcp.auth import token_sha256

NAME = "replicas_throughput"
TARGET_PER_S = 600.0
CLIENTS = 50
ROUNDS = 3
STRETCH_S = 8.0
QUICK_STRETCH_S = 2.0
TOKEN = "bench-token-for-the-replicated-assistant"
CLIENT = "bench-assistant"
# Replica leases as a deployment would set them (the defaults).
LEASE_TTL = 20.0
HEARTBEAT = 5.0


@dataclass
class Stretch:
    ok: int = 0
    failed: int = 0
    elapsed: float = 0.0

    @property
    def per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


def _mcp_token() -> str:
    return f'[[mcp.tokens]]\nclient = "{CLIENT}"\nsha256 = "{token_sha256(TOKEN)}"\n'


def _call_body(target: str) -> bytes:
    arguments = {"target": target, "argv": ["true"], "reason": "bench"}
    call = {"name": "exec", "arguments": arguments}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}).encode()


def _succeeded(body: str) -> bool:
    """Whether a tools/call answer (an SSE stream or plain JSON) reports exit 0."""
    for line in body.splitlines():
        text = line[5:].strip() if line.startswith("data:") else line.strip()
        if not text.startswith("{"):
            continue
        message = json.loads(text)
        if "result" in message:
            content = message["result"].get("structuredContent") or {}
            return bool(content.get("exit_code") == 0 and not message["result"].get("isError"))
        if "error" in message:
            return False
    return False


async def _stretch(base: str, body: bytes, seconds: float) -> Stretch:
    """``CLIENTS`` loops of tools/call against ``base`` for ``seconds``."""
    out = Stretch()
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    deadline = time.monotonic() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=60, trust_env=False
        ) as http:
            while time.monotonic() < deadline:
                try:
                    response = await http.post("/mcp", content=body)
                    ok = response.status_code == 200 and _succeeded(response.text)
                except httpx.HTTPError:
                    ok = False
                if ok:
                    out.ok += 1
                else:
                    out.failed += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    out.elapsed = time.monotonic() - started
    return out


@dataclass
class Deployed:
    proxy_url: str
    direct_url: str
    target: str
    database_url: str
    pids: dict[str, int]  # the processes whose CPU time is counted, by role


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

        def config_of(data_dir: Path, port: int) -> str:
            return replica_config(
                data_dir,
                policy=policy,
                database_url=database_url,
                port=port,
                public_url=proxy.url,
                host_url=access.url,
                lease_ttl=LEASE_TTL,
                heartbeat=HEARTBEAT,
                extra=_mcp_token(),
            )

        both = replicas(root, ("a", "b"), access, config_of)
        async with running(both, proxy):
            pids = {"host": host.pid, "haproxy": _pid(proxy.proc)}
            pids.update({f"replica {r.name}": _pid(r.proc) for r in both})
            yield Deployed(proxy.url, both[0].url, instance, database_url, pids)


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
    body = _call_body(d.target)
    seconds = QUICK_STRETCH_S if quick else STRETCH_S
    warm_up = await _stretch(d.proxy_url, body, 1.0)  # connections, caches, both replicas
    proxied: list[Stretch] = []
    direct: list[Stretch] = []
    spent: dict[str, float] = {}
    for _ in range(1 if quick else ROUNDS):
        before = _cpu_by_role(d.pids)
        proxied.append(await _stretch(d.proxy_url, body, seconds))
        after = _cpu_by_role(d.pids)
        for role in after:
            spent[role] = spent.get(role, 0.0) + after[role] - before[role]
        direct.append(await _stretch(d.direct_url, body, seconds))
    audit = await count_audit(d.database_url)
    execs = max(_total(proxied).ok, 1)
    cpu_ms = {role: round(1000 * s / execs, 2) for role, s in spent.items()}
    total_ms = sum(cpu_ms.values())
    return {
        **_figures(proxied, direct, warm_up, audit, quick),
        # CPU time per exec of every process but PostgreSQL's (shared with others):
        # what the machine's cores would allow at most, whatever else runs on them.
        "cpu_ms_per_exec": {**cpu_ms, "total": round(total_ms, 2)},
        "cpu_bound_per_s": rounded(cores() * 1000 / total_ms, 3) if total_ms else None,
    }


def _total(stretches: list[Stretch]) -> Stretch:
    return Stretch(
        sum(s.ok for s in stretches),
        sum(s.failed for s in stretches),
        sum(s.elapsed for s in stretches),
    )


def _figures(
    proxied: list[Stretch],
    direct: list[Stretch],
    warm_up: Stretch,
    audit: dict[str, int],
    quick: bool,
) -> Result:
    ours, base = _total(proxied), _total(direct)
    calls = _total([*proxied, *direct, warm_up])
    per_s = [round(s.per_s, 1) for s in proxied]
    ratios = [round(p.per_s / b.per_s, 3) for p, b in zip(proxied, direct, strict=True) if b.per_s]
    # Every call made (warm-up included) asked for one exec: its intent, then its outcome.
    audited = audit["intents"] == audit["outcomes"] == calls.ok + calls.failed
    return result(
        NAME,
        quick=quick,
        execs_per_s=rounded(ours.per_s, 4),
        per_stretch=per_s,
        baseline_one_replica_direct_per_s=rounded(base.per_s, 4),
        ratio_to_baseline=ratios,
        clients=CLIENTS,
        calls=calls.ok + calls.failed,
        failed=calls.failed,
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
