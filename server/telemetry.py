"""Traces from the settings (``[tracing]``), and the HTTP side of their propagation.

:func:`open_tracing` builds the OpenTelemetry SDK's tracer provider and exporter when
``tracing.enabled`` is set (the ``otel`` extra: ``pip install 'execgate[otel]'``), and
flushes it on exit; the spans themselves are ``policies.tracing``'s. The provider is
ExecGate's own: it is not installed as the process-wide global one.

:class:`IncomingTrace` takes the W3C ``traceparent`` (and ``tracestate``) header of
every HTTP request (Slack, the console, MCP over HTTP) into the request it serves; an
MCP request's ``params._meta.traceparent`` wins over the header (``server.mcp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from policies.errors import ConfigError
from policies.tracing import NO_TRACING, Tracing, incoming
from server.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

MISSING_SDK = (
    "tracing.enabled is set but the OpenTelemetry SDK is not installed; install ExecGate "
    "with its otel extra (pip install 'execgate[otel]') or turn tracing off"
)


@contextlib.asynccontextmanager
async def open_tracing(
    settings: TracingSettings, provider: TracerProvider | None = None
) -> AsyncIterator[Tracing]:
    """ExecGate's tracing as configured; ``provider`` (tests) replaces the exporter the
    settings name, and is left for its owner to shut down.

    Raises: ConfigError when tracing is enabled but the SDK is not installed.
    """
    if not settings.enabled:
        yield NO_TRACING
        return
    if provider is not None:
        yield Tracing(provider)
        return
    built = build_provider(settings)
    try:
        yield Tracing(built)
    finally:
        # Exports what is still buffered (bounded by the exporter's own timeout).
        await asyncio.to_thread(built.shutdown)


def build_provider(settings: TracingSettings) -> TracerProvider:
    """A tracer provider exporting in batches to the configured exporter.

    Raises: ConfigError when the SDK (or the OTLP exporter) is not installed.
    """
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise ConfigError(MISSING_SDK) from exc
    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(MISSING_SDK) from exc
        exporter = OTLPSpanExporter(endpoint=settings.endpoint or None)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class IncomingTrace:
    """ASGI middleware: requests served inside an HTTP request continue the trace its
    ``traceparent`` header names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        with incoming(traceparent, tracestate):
            await self.app(scope, receive, send)
