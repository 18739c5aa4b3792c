"""What the audit store tells an observer (metrics): each exec intent and outcome it
recorded, and how long each of those writes took to commit. Observers must not raise
and must not block: they are called on the event loop after the write committed."""

from __future__ import annotations

from typing import Protocol

from policies.ports import ExecIntent, ExecOutcome
from policies.types import AuditId


class AuditObserver(Protocol):
    def intent_recorded(self, audit_id: AuditId, intent: ExecIntent) -> None: ...

    def outcome_recorded(self, audit_id: AuditId, outcome: ExecOutcome) -> None: ...

    def write_committed(self, operation: str, seconds: float) -> None: ...
