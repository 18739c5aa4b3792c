"""The store's handle on its database: fail-closed read and write transactions, and
the checkpoint noted after every commit that appended to the chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policies.audit.backend import Backend
from policies.audit.chain import ChainTx
from policies.audit.checkpoint import CheckpointWriter
from policies.audit.errors import audit_errors
from policies.audit.tables import audit_events

T = TypeVar("T")


class Db:
    """Transactions against the audit database; storage failures raise AuditUnavailable.

    Operations are plain functions run as one transaction each (see ``backend``).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.checkpoints: CheckpointWriter | None = None
        # Writers in this process queue here, in order, rather than in a lock wait
        # inside the database.
        self._write_lock = asyncio.Lock()

    async def write(self, operation: str, body: Callable[[ChainTx], T]) -> T:
        """Run ``body`` in a chain transaction: its row changes and their events commit
        together, then the new head is checkpointed.

        Raises: AuditUnavailable when the database fails; whatever ``body`` raises
        (the transaction is rolled back).
        """

        def run(conn: Connection) -> tuple[T, ChainTx]:
            tx = ChainTx.begin(conn)
            result = body(tx)
            tx.flush()
            return result, tx

        with audit_errors(operation):
            async with self._write_lock:
                result, tx = await self.backend.write(run)
        if tx.appended and self.checkpoints is not None:
            self.checkpoints.note(tx.head)
        return result

    async def read(
        self, operation: str, body: Callable[[Connection], T], *, snapshot: bool = False
    ) -> T:
        """Run ``body`` in a read transaction.

        Raises: AuditUnavailable when the database fails; whatever ``body`` raises.
        """
        with audit_errors(operation):
            return await self.backend.read(body, snapshot=snapshot)

    async def hash_at(self, seq: int) -> str | None:
        """The hash stored for event ``seq``, or None when there is none."""
        query = sa.select(audit_events.c.hash).where(audit_events.c.seq == seq)
        value = await self.read("read chain", lambda conn: conn.scalar(query))
        return None if value is None else str(value)

    async def aclose(self) -> None:
        try:
            if self.checkpoints is not None:
                await self.checkpoints.flush()
        finally:
            with audit_errors("close"):
                await self.backend.dispose()
