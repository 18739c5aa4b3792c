"""The write path's statements run on the SQLite driver store exactly what SQLAlchemy
Core stores for the same values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from policies.audit.chain import GENESIS_HASH
from policies.audit.migrate import upgrade
from policies.audit.prepared import driver, prepared_insert, prepared_select, prepared_update
from policies.audit.records import intent_values, outcome_values
from policies.audit.store import _COUNT_UP_TO
from policies.audit.tables import audit_events, exec_sessions
from policies.ports import ArtifactInfo, ExecOutcome, ExecStatus
from tests.policies.audit.support import intent

WHEN = dt.datetime(2026, 11, 27, 12, 30, 45, 123456, tzinfo=dt.UTC)
# A whole second: SQLite's DATETIME still writes ".000000" (text compares by it).
ON_THE_SECOND = dt.datetime(2026, 11, 27, 12, 30, 46, tzinfo=dt.UTC)


def _engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'audit.db'}")


def _raw_rows(conn: sa.Connection, table: str, key: str) -> list[tuple[Any, ...]]:
    rows = driver(conn).execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
    return [tuple(row) for row in rows]


async def test_a_prepared_intent_and_outcome_are_stored_as_core_stores_them(
    tmp_path: Path,
) -> None:
    await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    engine = _engine(tmp_path)
    asked = intent(argv=("grep", "-i", "é\u2028x"), command_text="grep -i 'é'", session_id=None)
    values = {"created_at": ON_THE_SECOND, **intent_values(asked), "owner": "host:1:n"}
    done = {
        "outcome_at": WHEN,
        **outcome_values(
            ExecOutcome(
                ExecStatus.COMPLETED,
                exit_code=0,
                started_at=ON_THE_SECOND,
                ended_at=dt.datetime(2026, 11, 27, 12, 30, 47),  # naive: taken as UTC
                stdout_text="ok\n",
                artifacts=(ArtifactInfo("k/stdout.txt", 3, "ab" * 32, "text/plain"),),
            )
        ),
    }
    with engine.begin() as conn:
        conn.execute(exec_sessions.insert(), {"id": "ex_a", **values})
        conn.execute(exec_sessions.update().where(exec_sessions.c.id == "ex_a"), done)
        prepared_insert(conn.dialect, exec_sessions, ("id", *values)).run(
            conn, {"id": "ex_b", **values}
        )
        count = prepared_update(conn.dialect, exec_sessions, tuple(done)).run(
            conn, {"_subject": "ex_b", **done}
        )
        core, prepared = _raw_rows(conn, "exec_sessions", "id")
    engine.dispose()

    assert count == 1
    assert core[1:] == prepared[1:]


async def test_prepared_events_and_the_rate_count_match_core(tmp_path: Path) -> None:
    await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    engine = _engine(tmp_path)
    event = {
        "kind": "exec.intent",
        "subject": "ex_a",
        "payload": "{}",
        "created_at": ON_THE_SECOND,
        "prev_hash": GENESIS_HASH,
        "hash": "f" * 64,
    }
    with engine.begin() as conn:
        conn.execute(audit_events.insert(), [{"seq": 1, **event}])
        prepared_insert(conn.dialect, audit_events, ("seq", *event)).run_many(
            conn, [{"seq": 2, **event}]
        )
        core, prepared = _raw_rows(conn, "audit_events", "seq")
        for who, effect in [("local:a", "allow"), ("local:a", "deny"), ("local:b", "allow")]:
            row = {"id": f"ex_{who}_{effect}", "created_at": WHEN, "owner": "h:1:n"}
            row |= intent_values(intent(principal=who, effect=effect))
            conn.execute(exec_sessions.insert(), row)
        params = {"principal": "local:a", "rule_id": "read-only", "since": WHEN, "limit": 5}
        via_core = conn.scalar(_COUNT_UP_TO, params)
        via_driver = prepared_select(conn.dialect, _COUNT_UP_TO).scalar(conn, params)
    engine.dispose()

    assert core[1:] == prepared[1:]
    assert via_core == via_driver == 1
