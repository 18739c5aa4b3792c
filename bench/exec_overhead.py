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
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, median, percentile, result, rounded
from bench.rig import Rig, Sandbox, discard, fresh_postgres, serving
from policies.types import Limits

NAME = "exec_overhead"
TARGET_RATIO = 1.15
# On PostgreSQL one durable commit (the intent, before the command runs) is the floor:
# the intent is one statement, one round trip (policies.audit.single); the outcome's
# commit does not wait for the disk and the exec does not wait for it (policies.audit.db).
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


async def _measure(sandbox: Sandbox, database_url: str, pairs: int) -> dict[str, Any]:
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
            sandboxed = rig.running.manager.sandboxed
    base, mid = median(raw), median(ours)
    return {
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
        pg = await _measure("auto", pg_url, pairs) if pg_url else None
    figures: dict[str, Any] = {
        **headline,
        "database": "sqlite",
        "execs_per_side": pairs,
        "command": " ".join(ARGV),
        "baseline": "the same exec by the FC client straight to the same host and instance",
        "subprocess": {k: plain[k] for k in ("ratio", "baseline_ms", "median_ms", "overhead_ms")},
        "postgresql": (
            {
                **{k: pg[k] for k in ("ratio", "baseline_ms", "median_ms", "overhead_ms")},
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
