"""console_page: server time of the review console's activity page over 100,000 audit
rows (the first page, filtered pages, free text that matches many recent rows and one
that matches a single row far back, and a page deep in the log by its cursor).

The rows are written straight into a migrated database (the page reads the exec table
only; the text index of revision 0010 is kept by the database as rows go in), all
within the last 24 hours so the default chart counts every one. SQLite always;
PostgreSQL as well when one answers at $EXECGATE_BENCH_DATABASE_URL or 127.0.0.1:5432
(a fresh database, vacuumed and analyzed after the load as autovacuum would be).
Each request goes through the whole console app in process (session cookie, service
access decision, queries, template, SVG chart), timed from request to last byte; no
network. The baseline is the health check of the same app stack: a request that does
no audit work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import Result, median, percentile, result, rounded

NAME = "console_page"
ROWS = 100_000
TARGET_MS = 300.0
POLICY = """\
version: 1
roles:
  auditors: { local_users: [audra] }
  operators: { local_users: ["*"] }
targets:
  demo: { provider: "*", functions: ["demo-*"] }
rules:
  - id: diagnostics
    effect: allow
    who: [operators]
    where: [demo]
    commands: [[env]]
"""


async def _fill(url: str, rows: int) -> None:
    from policies.audit.db_engine import create_engine
    from policies.audit.tables import exec_sessions

    engine = create_engine(url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    effects = ("allow",) * 8 + ("deny", "approve")
    batch: list[dict[str, Any]] = []
    async with engine.begin() as conn:
        for i in range(rows):
            effect = effects[i % len(effects)]
            batch.append(
                {
                    "id": f"ex_bench{i:012d}",
                    "created_at": now - dt.timedelta(seconds=(rows - i) * 86_000 / rows),
                    "principal": f"local:user{i % 50}",
                    "surface": ("cli", "slack", "mcp")[i % 3],
                    "target": f"local:demo-api/c-{i % 7}",
                    "provider": "local",
                    "function": "demo-api",
                    "instance": f"c-{i % 7}",
                    "argv": ["echo", f"request {i}"],
                    "command_text": f"echo request {i}",
                    "reason": "bench",
                    "effect": effect,
                    "rule_id": f"rule-{i % 13}",
                    "decision_reason": "bench",
                    "status": "completed" if effect == "allow" else "denied",
                    "outcome_at": now,
                    "exit_code": 0,
                    "stdout_text": f"request {i}\n",
                }
            )
            if len(batch) == 5000:
                await conn.execute(exec_sessions.insert(), batch)
                batch = []
        if batch:
            await conn.execute(exec_sessions.insert(), batch)
    if url.startswith("postgresql"):
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE exec_sessions"))
    await engine.dispose()


async def _measure(url: str, quick: bool) -> dict[str, Any]:
    from starlette.applications import Starlette

    from policies.audit import open_audit_store
    from policies.audit.migrate import upgrade
    from policies.rules.holder import PolicyHolder
    from policies.service.core import ExecService
    from server.console import console_mount
    from server.console.signin import console_key, make_link
    from server.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        url = url or f"sqlite+aiosqlite:///{data / 'audit.db'}"
        await upgrade(url)
        await _fill(url, ROWS)
        (data / "policy.yaml").write_text(POLICY)
        settings = Settings(data_dir=data, policy=data / "policy.yaml")
        store = await open_audit_store(url, checkpoint_path=None)
        service = ExecService(
            policies=PolicyHolder(settings.policy_path),
            audit=store,
            providers={},
            default_provider="local",
        )
        mounted = console_mount(settings, service)
        assert mounted is not None
        app = Starlette(routes=mounted.routes)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
                link = make_link(console_key(data), "http://console", "local:audra")
                signin = await c.get(link)
                assert signin.status_code == 303, signin.text
                first = await c.get("/console/")
                deep_cursor = None
                for _ in range(3):  # three pages in, by cursor
                    found = first.text.split('id="older" href="?', 1)
                    if len(found) < 2:
                        break
                    query = found[1].split('"', 1)[0].replace("&amp;", "&")
                    deep_cursor = query
                    first = await c.get("/console/?" + query)
                paths = [
                    "/console/",
                    "/console/?effect=deny",
                    "/console/?principal=local:user7",
                    "/console/?q=request%2099",
                    "/console/?q=request%2012345",
                    "/console/?rule=rule-3&since=6h",
                    "/console/?" + (deep_cursor or ""),
                ]
                rounds = 3 if quick else 15
                samples: dict[str, list[float]] = {p: [] for p in paths}
                health: list[float] = []
                for path in paths:  # warm
                    warm = await c.get(path)
                    assert warm.status_code == 200, (path, warm.status_code, warm.text[-600:])
                for _ in range(rounds):
                    for path in paths:
                        t0 = time.perf_counter()
                        answer = await c.get(path)
                        samples[path].append((time.perf_counter() - t0) * 1000)
                        assert answer.status_code == 200
                    t0 = time.perf_counter()
                    await c.get("/console/static/console.css")
                    health.append((time.perf_counter() - t0) * 1000)
        finally:
            await store.aclose()
    every = [v for values in samples.values() for v in values]
    worst_path = max(paths, key=lambda p: median(samples[p]))
    p95 = percentile(every, 95)
    return {
        "p50_ms": rounded(percentile(every, 50)),
        "p95_ms": rounded(p95),
        "worst_median_ms": rounded(median(samples[worst_path])),
        "worst_query": worst_path if "after=" not in worst_path else "deep page",
        "per_query_median_ms": {
            p.removeprefix("/console/")[:40] or "first page": rounded(median(v))
            for p, v in samples.items()
        },
        "baseline_static_ms": rounded(median(health)),
        "met": p95 < TARGET_MS,
    }


async def _run(quick: bool) -> Result:
    from bench.rig import fresh_postgres

    sqlite = await _measure("", quick)
    async with fresh_postgres() as pg_url:
        pg = await _measure(pg_url, quick) if pg_url else None
    return result(
        NAME,
        rows=ROWS,
        **{k: v for k, v in sqlite.items() if k != "met"},
        database="sqlite",
        postgresql=pg or "no PostgreSQL reachable (set EXECGATE_BENCH_DATABASE_URL)",
        target=f"p95 < {TARGET_MS:g} ms on each database",
        met=sqlite["met"] and (pg is None or pg["met"]),
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))
