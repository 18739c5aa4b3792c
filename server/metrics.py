"""``/metrics`` in the Prometheus text format (prometheus_client).

Every replica exports its own series; sum them across replicas in queries. Counters
and histograms come from what this replica's audit store recorded
(``policies.audit.observe``); the gauges of pending approvals and open sessions are
read from the shared database at scrape time, so every replica reports the same
deployment-wide value (take ``max`` across replicas, not ``sum``).

    execgate_execs_total{surface,effect,status}    execs recorded by their outcome
                                                  (denied and pending ones at intent)
    execgate_exec_duration_seconds{surface}         start to end of the commands that ran
    execgate_audit_write_seconds{operation}         an intent or outcome write, to commit
    execgate_approvals_pending                      pending approvals, not yet expired
    execgate_sessions_open                          conversational sessions not ended
    execgate_provider_errors_total{code}            execs that failed, by error code
    execgate_redactions_total{detector}             secrets replaced in recorded output
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from policies.audit.observe import AuditObserver
from policies.errors import AuditUnavailable
from policies.ports import ExecIntent, ExecOutcome, ExecStatus
from policies.types import AuditId

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
_MARKER = re.compile(r"\[REDACTED:([a-z0-9-]+)\]")
_MAX_PENDING = 10_000  # intents awaiting their outcome, remembered for their surface
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ExecMetrics(AuditObserver):
    """The series above, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.execs = Counter(
            "execgate_execs",
            "Execs by surface, effect and status",
            ["surface", "effect", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "execgate_exec_duration_seconds", "How long commands ran", ["surface"], registry=r
        )
        self.audit_write = Histogram(
            "execgate_audit_write_seconds",
            "Audit writes, from call to commit",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.approvals_pending = Gauge(
            "execgate_approvals_pending", "Pending approvals, not expired", registry=r
        )
        self.sessions_open = Gauge("execgate_sessions_open", "Sessions not ended", registry=r)
        self.provider_errors = Counter(
            "execgate_provider_errors", "Execs that failed, by error code", ["code"], registry=r
        )
        self.redactions = Counter(
            "execgate_redactions", "Secrets replaced in recorded output", ["detector"], registry=r
        )
        self._pending: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def intent_recorded(self, audit_id: AuditId, intent: ExecIntent) -> None:
        if intent.status is ExecStatus.RUNNING:
            self._pending[audit_id] = (intent.surface, intent.effect)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)
            return
        self.execs.labels(intent.surface, intent.effect, intent.status.value).inc()

    def outcome_recorded(self, audit_id: AuditId, outcome: ExecOutcome) -> None:
        # An approved exec claimed here was asked for elsewhere: its surface is unknown.
        surface, effect = self._pending.pop(audit_id, ("approved", "approve"))
        self.execs.labels(surface, effect, outcome.status.value).inc()
        if outcome.started_at is not None and outcome.ended_at is not None:
            seconds = (outcome.ended_at - outcome.started_at).total_seconds()
            self.duration.labels(surface).observe(max(0.0, seconds))
        if outcome.status is ExecStatus.FAILED and outcome.error:
            self.provider_errors.labels(outcome.error[:64]).inc()
        for text in (outcome.stdout_text, outcome.stderr_text):
            if "[REDACTED:" in text:
                for kind in _MARKER.findall(text):
                    self.redactions.labels(kind).inc()

    def write_committed(self, operation: str, seconds: float) -> None:
        self.audit_write.labels(operation).observe(seconds)


@runtime_checkable
class Counted(Protocol):
    async def open_counts(self) -> dict[str, int]: ...


def metrics_route(metrics: ExecMetrics, audit: object) -> Route:
    async def scrape(_: Request) -> Response:
        if isinstance(audit, Counted):
            try:
                counts = await audit.open_counts()
            except AuditUnavailable:
                logger.warning("metrics: could not count approvals and sessions", exc_info=True)
            else:
                metrics.approvals_pending.set(counts["approvals_pending"])
                metrics.sessions_open.set(counts["sessions_open"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route(METRICS_PATH, scrape)
