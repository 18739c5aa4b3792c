"""Turn database, driver and file-system failures into ``AuditUnavailable``.

The audit store fails closed: when it cannot record, the caller must not run anything.
The driver's text (hostnames, SQL, paths) goes to the log, never into the safe message.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy.exc

from policies.errors import AuditUnavailable

logger = logging.getLogger("policies.audit")

# What a broken database, a dead server, a full disk or a refused connection raise.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.SQLAlchemyError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


@contextmanager
def audit_errors(operation: str, message: str | None = None) -> Iterator[None]:
    """Re-raise storage failures inside the block as ``AuditUnavailable``.

    Raises: AuditUnavailable (from any error in STORAGE_ERRORS).
    """
    try:
        yield
    except STORAGE_ERRORS as exc:
        logger.exception("audit store: %s failed", operation)
        raise AuditUnavailable(message, operation=operation) from exc
