"""Carries the current audit id (and, with tracing on, the trace id) into every log
record emitted while serving a request."""

from __future__ import annotations

import contextvars
import logging

audit_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "execgate_audit_id", default=None
)
# The request's OpenTelemetry trace id (32 hex digits), set by policies.tracing.
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "execgate_trace_id", default=None
)


class AuditIdFilter(logging.Filter):
    """Adds ``audit_id`` to each record (None outside an exec), and ``trace_id`` to the
    records of a traced request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "audit_id"):
            record.audit_id = audit_id_var.get()
        trace_id = trace_id_var.get()
        if trace_id is not None and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return True
