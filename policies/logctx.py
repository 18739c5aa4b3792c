"""Carries the current audit id into every log record emitted while serving a request."""

from __future__ import annotations

import contextvars
import logging

audit_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "execgate_audit_id", default=None
)


class AuditIdFilter(logging.Filter):
    """Adds ``audit_id`` to each record (None outside an exec)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "audit_id"):
            record.audit_id = audit_id_var.get()
        return True
