"""The audit write path's statements, compiled once per dialect and run on the driver.

SQLAlchemy Core spends more on each execution (cache key, parameter construction,
result set-up) than SQLite spends on the statement itself. The few statements every
audited exec runs are compiled here once, with the bind processors of their columns'
types, and run on the driver's connection inside the transaction SQLAlchemy (or the
backend) began: SQLite gets exactly the values Core would pass, in positional form.

SQLite runs the write path this way. PostgreSQL keeps Core in its transactions (asyncpg
prepares and types its own parameters) and runs an exec's writes as single statements
prepared here (``policies.audit.single``), sent on asyncpg's connection.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

SUBJECT = "_subject"


@dataclass(frozen=True, slots=True)
class Prepared:
    """Positional SQL and how to turn named values into its parameters."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    constants: Mapping[str, Any]  # binds the statement fixes itself (e.g. OFFSET 0)

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        if self.constants:
            values = {**self.constants, **values}
        return tuple(
            values[name] if process is None else process(values[name])
            for name, process in zip(self.names, self.processors, strict=True)
        )

    def run(self, conn: Connection, values: Mapping[str, Any]) -> int:
        """Execute with ``values``; returns the row count."""
        return driver(conn).execute(self.sql, self.params(values)).rowcount

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        driver(conn).executemany(self.sql, [self.params(row) for row in rows])

    def scalar(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        row = driver(conn).execute(self.sql, self.params(values)).fetchone()
        return None if row is None else row[0]


def _prepare(
    statement: sa.Insert | sa.Update | sa.Select[Any],
    dialect: Dialect,
    keys: Sequence[str],
    *,
    constants: bool = False,
) -> Prepared:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    assert isinstance(compiled, SQLCompiler)
    names, processors = _positional(compiled, dialect)
    fixed = set(names) - {*keys, SUBJECT}
    if fixed and not constants:  # a default or expression Core would fill in
        raise ValueError(f"cannot prepare {statement} for keys {keys}")
    values = {name: compiled.binds[name].value for name in fixed}
    return Prepared(compiled.string, names, processors, values)


def _positional(
    compiled: SQLCompiler, dialect: Dialect
) -> tuple[tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]:
    names = tuple(compiled.positiontup or ())
    # The dialect's own implementation of each type (SQLite's DATETIME writes text
    # with microseconds), as Core uses it: the generic type's processor would not.
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return names, processors


def prepare(statement: sa.Select[Any], dialect: Dialect) -> Prepared:
    """A statement every named bind of which is given at each run."""
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names, processors = _positional(compiled, dialect)
    return Prepared(compiled.string, names, processors, {})


@functools.lru_cache(maxsize=64)
def prepared_insert(dialect: Dialect, table: sa.Table, keys: tuple[str, ...]) -> Prepared:
    """``INSERT INTO table (keys...)``."""
    return _prepare(table.insert(), dialect, keys)


@functools.lru_cache(maxsize=64)
def prepared_update(dialect: Dialect, table: sa.Table, keys: tuple[str, ...]) -> Prepared:
    """``UPDATE table SET keys... WHERE id = :_subject``."""
    statement = table.update().where(table.c.id == sa.bindparam(SUBJECT))
    return _prepare(statement, dialect, keys)


@functools.lru_cache(maxsize=16)
def prepared_select(dialect: Dialect, statement: sa.Select[Any]) -> Prepared:
    """A query whose named binds are given at each run (others keep their values)."""
    return _prepare(statement, dialect, (), constants=True)


def on_driver(conn: Connection) -> bool:
    """Whether the write path runs prepared statements on this connection."""
    return conn.dialect.name == "sqlite"


def driver(conn: Connection) -> sqlite3.Connection:
    """The driver's connection under ``conn`` (inside the transaction ``conn`` is in)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw
