"""OpenTelemetry traces of the requests ExecGate serves (the optional ``otel`` extra).

One span per request, with a child for each step of the pipeline::

    execgate.exec | execgate.collect | execgate.approval      (the request)
      execgate.decide          effect, rule
      execgate.audit.intent    exec id, effect, rule
      execgate.provider.exec   provider, target, command name; exit code
      execgate.audit.outcome   exec id, status, exit code

The request span carries principal, surface, target and command name when it starts,
and effect, rule, exec id, status and exit code when it ends. Attributes never carry a
command's arguments (only its name) nor its output.

A request continues its caller's trace: a surface hands the W3C ``traceparent`` it
received (an MCP request's ``params._meta``, an HTTP header, the CLI's TRACEPARENT
variable) to :func:`incoming`, and every request served inside becomes its child.

Tracing is off unless a tracer provider is given (``server.telemetry`` builds one from
the settings); off, each step costs a call that returns a shared, empty context manager,
and the OpenTelemetry packages are not imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from policies.errors import ExecGateError
from policies.logctx import trace_id_var
from policies.ports import ExecStatus
from policies.types import AuditId, Decision, Effect, Principal, Surface, Target

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

DECIDE = "execgate.decide"
AUDIT_INTENT = "execgate.audit.intent"
AUDIT_OUTCOME = "execgate.audit.outcome"
PROVIDER_EXEC = "execgate.provider.exec"
PREFIX = "execgate."
_NAME_LIMIT = 64
_CARRIER_LIMIT = 512  # a traceparent is 55 characters; a tracestate at most 512

# The caller's (traceparent, tracestate), set by a surface for the request it serves.
_incoming: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "execgate_traceparent", default=None
)

AttributeValue = str | int | float | bool | None


@contextlib.contextmanager
def incoming(traceparent: str | None, tracestate: str | None = None) -> Iterator[None]:
    """Requests served inside continue the trace ``traceparent`` names (ignored when
    empty; a malformed one starts a new trace)."""
    if not traceparent or len(traceparent) > _CARRIER_LIMIT:
        yield
        return
    if tracestate is not None and len(tracestate) > _CARRIER_LIMIT:
        tracestate = None
    token = _incoming.set((traceparent.strip(), tracestate))
    try:
        yield
    finally:
        _incoming.reset(token)


def command_name(argv: tuple[str, ...] | None, decision: Decision | None = None) -> str | None:
    """The name of the command a request runs: the first word of its first stage,
    without directories; never an argument (which may hold a secret)."""
    stages = decision.stages if decision is not None else ()
    first = stages[0] if stages and stages[0] else argv
    if not first:
        return None
    name = os.path.basename(first[0])[:_NAME_LIMIT]
    return name if name and "=" not in name else None


class Finished(Protocol):
    """What the request span reads from a request's result."""

    @property
    def effect(self) -> Effect: ...
    @property
    def rule(self) -> str | None: ...
    @property
    def audit_id(self) -> AuditId | None: ...
    @property
    def status(self) -> ExecStatus: ...
    @property
    def target(self) -> str: ...


class Step:
    """A span being recorded; with tracing off, a step that records nothing."""

    __slots__ = ("_span",)

    def __init__(self, span: Span | None) -> None:
        self._span = span

    @property
    def recording(self) -> bool:
        return self._span is not None

    def set(self, **attributes: AttributeValue) -> None:
        """Set ``execgate.<name>`` attributes (None values are left out)."""
        span = self._span
        if span is None:
            return
        for name, value in attributes.items():
            if value is not None:
                span.set_attribute(PREFIX + name, value)

    def decided(self, decision: Decision) -> None:
        self.set(effect=decision.effect.value, rule=decision.rule_id)

    def finished(self, result: Finished) -> None:
        """The request's end: its effect, rule, exec id, status and exit code."""
        if self._span is None:
            return
        self.set(
            effect=result.effect.value,
            rule=result.rule,
            exec_id=result.audit_id,
            status=result.status.value,
            target=result.target,
            exit_code=getattr(result, "exit_code", None),  # a collect has none
        )


_OFF_STEP = Step(None)
_OFF = contextlib.nullcontext(_OFF_STEP)


class Tracing:
    """Starts ExecGate's spans on one tracer provider; ``Tracing()`` records nothing."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer: Tracer | None = None
        if provider is not None:
            self._tracer = provider.get_tracer("execgate")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def request(
        self,
        kind: str,
        principal: Principal,
        surface: Surface | None,
        target: Target | str | None = None,
        *,
        command: str | None = None,
    ) -> contextlib.AbstractContextManager[Step]:
        """The span of one request (``execgate.<kind>``), a child of the caller's
        span when the surface passed a traceparent."""
        if self._tracer is None:
            return _OFF
        attributes = {
            "principal": str(principal),
            "surface": surface.value if surface is not None else None,
            "target": str(target) if target is not None else None,
            "command": command,
        }
        return self._span(PREFIX + kind, attributes, server=True)

    def step(
        self, name: str, **attributes: AttributeValue
    ) -> contextlib.AbstractContextManager[Step]:
        """A step of the current request: DECIDE, AUDIT_INTENT, PROVIDER_EXEC, ..."""
        if self._tracer is None:
            return _OFF
        return self._span(name, attributes, server=False)

    @contextlib.contextmanager
    def _span(
        self, name: str, attributes: Mapping[str, AttributeValue], *, server: bool
    ) -> Iterator[Step]:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        assert self._tracer is not None
        kind = SpanKind.SERVER if server else SpanKind.INTERNAL
        with self._tracer.start_as_current_span(
            name,
            context=_parent() if server else None,
            kind=kind,
            attributes={PREFIX + k: v for k, v in attributes.items() if v is not None},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = trace_id_var.set(f"{span.get_span_context().trace_id:032x}") if server else None
            try:
                yield Step(span)
            except BaseException as exc:
                # The error's code or class only: messages may quote what was asked.
                span.set_attribute("error.type", _error_type(exc))
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                if token is not None:
                    trace_id_var.reset(token)


NO_TRACING = Tracing()


def _parent() -> Context | None:
    """The caller's context from the traceparent a surface passed in; None (the
    current context) when there is none, it is malformed, or a span of that trace is
    already current (e.g. one the MCP SDK started for the same call)."""
    carried = _incoming.get()
    if carried is None:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    traceparent, tracestate = carried
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = TraceContextTextMapPropagator().extract(carrier)
    remote = trace.get_current_span(context).get_span_context()
    if not remote.is_valid:
        return None
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == remote.trace_id:
        return None
    return context


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, ExecGateError):
        return str(exc.code)
    return type(exc).__qualname__
