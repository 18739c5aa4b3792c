"""Spans recorded in memory by the OpenTelemetry SDK, and what the tracing tests check
of them: a caller's trace, a request span continuing it, its steps as children."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from mcp_types import RequestParamsMeta
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
# RequestParamsMeta allows extra keys (PEP 728), which mypy does not read yet.
CALLER_META = cast(RequestParamsMeta, {"traceparent": TRACEPARENT})
STEPS = {
    "execgate.decide",
    "execgate.audit.intent",
    "execgate.provider.exec",
    "execgate.audit.outcome",
}

Recording = tuple[TracerProvider, InMemorySpanExporter]


@contextmanager
def recording() -> Iterator[Recording]:
    """A tracer provider whose spans land, as they end, in an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in finished}
    assert len(named) == len(finished), [span.name for span in finished]
    return named


def request_and_steps(
    finished: tuple[ReadableSpan, ...], request_name: str = "execgate.exec"
) -> tuple[ReadableSpan, set[str]]:
    """The request span (checked to continue the caller's trace) and the names of its
    children (checked to be in the same trace)."""
    request = by_name(finished)[request_name]
    assert request.parent is not None
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert f"{request.parent.span_id:016x}" == CALLER_SPAN
    children = set()
    for span in finished:
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        if span is not request:
            assert span.parent is not None
            assert span.parent.span_id == request.context.span_id, span.name
            children.add(span.name)
    return request, children
