"""exec_overhead: one trivial exec through ExecGate versus the same exec sent raw.

ExecGate: ``ExecService.exec`` (policy decision on the 200-rule policy, rate check,
audit intent and outcome in the database, redaction, truncation) through the FC client
to the local instance host of an in-process ``execgate serve``. Raw: the FC client
(``FcProvider``) straight to the same host and instance over the same WebSocket
protocol, nothing in between. The two alternate exec by exec, so load from elsewhere on
the machine hits both alike; the ratio is of the medians.

Three set-ups: SQLite with the default sandbox (bubblewrap when it works: the headline),
SQLite with plain-subprocess instances (the smallest exec, so the largest ratio), and
PostgreSQL with the default sandbox when a server is reachable.

On PostgreSQL the intent's commit waits for its WAL flush, whose cost is the disk's (and
grows with other load on the server). Between pairs the run also times a one-row commit
that waits for the flush against one that does not, on the same server: ``flush_ms``,
the difference of their medians, is that floor as it was during the run, and
``ratio_less_flush`` the ratio with it taken out.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.common import Result, median, percentile, result, rounded
from bench.rig import Rig, Sandbox, discard, fresh_postgres, serving
from policies.audit.db_engine import parse_url
from policies.types import Limits

NAME = "exec_overhead"
TARGET_RATIO = 1.15
# On PostgreSQL one durable commit (the intent, before the command runs) is the floor:
# the intent is one statement, one round trip (policies.audit.single); the outcome's
# commit, waited for before the result is returned, does not wait for the disk.
PG_TARGET_RATIO = 1.25
ARGV = ("true",)


async def _through_execgate(rig: Rig) -> float:
    start = time.perf_counter()
    out = await rig.service.exec(rig.request(*ARGV))
    elapsed = (time.perf_counter() - start) * 1000
    if out.exit_code != 0 or out.error_code is not None:
        raise RuntimeError(f"ExecGate exec failed: {out.error_code} {out.exit_code}")
    return elapsed


async def _raw(rig: Rig) -> float:
    start = time.perf_counter()
    run = await rig.raw.exec(rig.target(), ARGV, limits=Limits(), on_output=discard)
    elapsed = (time.perf_counter() - start) * 1000
    if run.exit_code != 0:
        raise RuntimeError(f"raw exec failed: {run}")
    return elapsed


Probe = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def _commit_probes(database_url: str) -> AsyncIterator[tuple[Probe, Probe]]:
    """A one-row commit on ``database_url`` that waits for the WAL flush, and one that
    does not."""
    url = parse_url(database_url).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    waits = await asyncpg.connect(dsn)
    not_waiting = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "off"})
    try:
        await waits.execute("CREATE TABLE bench_commit_probe (at timestamptz DEFAULT now())")
        insert = "INSERT INTO bench_commit_probe DEFAULT VALUES"

        async def durable() -> None:
            await waits.execute(insert)

        async def not_durable() -> None:
            await not_waiting.execute(insert)

        yield durable, not_durable
    finally:
        await not_waiting.close()
        await waits.close()


async def _timed(probe: Probe) -> float:
    start = time.perf_counter()
    await probe()
    return (time.perf_counter() - start) * 1000


async def _measure(
    sandbox: Sandbox, database_url: str, pairs: int, probes: tuple[Probe, Probe] | None = None
) -> dict[str, Any]:
    flushed: list[float] = []
    unflushed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with serving(Path(root), sandbox=sandbox, database_url=database_url) as rig:
            for _ in range(max(5, pairs // 10)):
                await _raw(rig)
                await _through_execgate(rig)
            raw: list[float] = []
            ours: list[float] = []
            for i in range(pairs):
                if i % 2:
                    raw.append(await _raw(rig))
                    ours.append(await _through_execgate(rig))
                else:
                    ours.append(await _through_execgate(rig))
                    raw.append(await _raw(rig))
                if probes is not None:
                    flushed.append(await _timed(probes[0]))
                    unflushed.append(await _timed(probes[1]))
            sandboxed = rig.running.manager.sandboxed
    base, mid = median(raw), median(ours)
    floor: dict[str, Any] = {}
    if flushed:
        flush = median(flushed) - median(unflushed)
        floor = {"flush_ms": rounded(flush), "ratio_less_flush": round((mid - flush) / base, 3)}
    return {
        **floor,
        "ratio": round(mid / base, 3),
        "baseline_ms": rounded(base),
        "median_ms": rounded(mid),
        "overhead_ms": rounded(mid - base),
        "baseline_p90_ms": rounded(percentile(raw, 90)),
        "p90_ms": rounded(percentile(ours, 90)),
        "sandbox": "bwrap" if sandboxed else "subprocess",
    }


async def _run(quick: bool) -> Result:
    pairs = 20 if quick else 300
    headline = await _measure("auto", "", pairs)
    plain = await _measure("subprocess", "", pairs)
    async with fresh_postgres() as pg_url:
        pg = None
        if pg_url:
            async with _commit_probes(pg_url) as probes:
                pg = await _measure("auto", pg_url, pairs, probes)
    figures: dict[str, Any] = {
        **headline,
        "database": "sqlite",
        "execs_per_side": pairs,
        "command": " ".join(ARGV),
        "baseline": "the same exec by the FC client straight to the same host and instance",
        "subprocess": {k: plain[k] for k in ("ratio", "baseline_ms", "median_ms", "overhead_ms")},
        "postgresql": (
            {
                **{
                    k: pg[k]
                    for k in (
                        "ratio",
                        "baseline_ms",
                        "median_ms",
                        "overhead_ms",
                        "flush_ms",
                        "ratio_less_flush",
                    )
                },
                "target": f"median ratio <= {PG_TARGET_RATIO:g}",
                "met": pg["ratio"] <= PG_TARGET_RATIO,
            }
            if pg
            else "no PostgreSQL reachable (set EXECGATE_BENCH_DATABASE_URL)"
        ),
    }
    return result(
        NAME,
        **figures,
        target=f"median ratio <= {TARGET_RATIO:g}",
        met=headline["ratio"] <= TARGET_RATIO,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))
