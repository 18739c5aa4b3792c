"""OpenTelemetry traces: a request served by the real server (MCP over streamable HTTP
under uvicorn, or the CLI through its relay socket) is one span with its decision, audit
writes and provider run as children, continuing the caller's W3C trace from the MCP
call's ``_meta``, the HTTP ``traceparent`` header or the CLI's TRACEPARENT variable;
spans carry who, where and what was decided, never arguments or output; and with
tracing off, nothing is recorded."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from mcp_types import RequestParamsMeta
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from policies.errors import ConfigError
from policies.logctx import AuditIdFilter
from policies.tracing import Tracing, incoming
from policies.types import Principal, Surface
from server.settings import TracingSettings
from server.telemetry import build_provider, open_tracing
from tests.server.mcp.conftest import data
from tests.server.mcp.test_http import TOKEN, http_server, mcp_client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
TRACING_ON = "[tracing]\nenabled = true\n"
# RequestParamsMeta allows extra keys (PEP 728), which mypy does not read yet.
CALLER_META = cast(RequestParamsMeta, {"traceparent": TRACEPARENT})
# An argument that must never reach a span.
SECRET_ARG = "/tmp/argument-that-could-hold-a-secret"
STEPS = {
    "execgate.decide",
    "execgate.audit.intent",
    "execgate.provider.exec",
    "execgate.audit.outcome",
}


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in finished}
    assert len(named) == len(finished), [span.name for span in finished]
    return named


def _request_and_steps(finished: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, set[str]]:
    """The request span (checked to continue the caller's trace) and the names of its
    children (checked to be in the same trace)."""
    named = _by_name(finished)
    request = named["execgate.exec"]
    assert request.parent is not None
    assert _hex(request.context.trace_id, 32) == TRACE_ID
    assert _hex(request.parent.span_id, 16) == CALLER_SPAN
    children = set()
    for span in finished:
        assert _hex(span.context.trace_id, 32) == TRACE_ID
        if span is not request:
            assert span.parent is not None
            assert span.parent.span_id == request.context.span_id, span.name
            children.add(span.name)
    return request, children


def _attribute_values(finished: tuple[ReadableSpan, ...]) -> list[str]:
    return [str(value) for span in finished for value in (span.attributes or {}).values()]


async def test_an_mcp_call_with_a_meta_traceparent_is_traced_through_decide_audit_and_provider(
    tmp_path: Path, database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with http_server(
        tmp_path, database_url, extra=TRACING_ON, tracer_provider=provider
    ) as server:
        async with mcp_client(server.url, TOKEN) as client:
            result = await client.call_tool(
                "exec",
                {"target": server.served.instance, "argv": ["ls", SECRET_ARG], "reason": "x"},
                meta=CALLER_META,
            )
        instance = server.served.instance
    finished = exporter.get_finished_spans()
    request, children = _request_and_steps(finished)
    assert children == STEPS
    out = data(result)
    attributes = dict(request.attributes or {})
    assert attributes == {
        "execgate.principal": "mcp:http-assistant",
        "execgate.surface": "mcp",
        "execgate.target": f"local:{instance}",
        "execgate.command": "ls",
        "execgate.effect": "allow",
        "execgate.rule": out["rule"],
        "execgate.exec_id": out["audit_id"],
        "execgate.status": "completed",
        "execgate.exit_code": out["exit_code"],
    }
    assert out["exit_code"] != 0  # ls of a missing path: the output says why
    named = _by_name(finished)
    assert (named["execgate.provider.exec"].attributes or {})["execgate.command"] == "ls"
    assert (named["execgate.audit.outcome"].attributes or {})["execgate.exec_id"] == out["audit_id"]
    values = _attribute_values(finished)
    assert not [v for v in values if "argument-that-could-hold" in v]
    assert not [v for v in values if "No such file" in v]


async def test_an_http_traceparent_header_links_the_request_to_the_callers_trace(
    tmp_path: Path, database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    header = f"00-{other_trace}-b7ad6b7169203331-01"
    args = {"argv": ["uptime"], "reason": "x"}
    async with http_server(
        tmp_path, database_url, extra=TRACING_ON, tracer_provider=provider
    ) as server:
        args["target"] = server.served.instance
        async with mcp_client(server.url, TOKEN, headers={"traceparent": TRACEPARENT}) as client:
            result = await client.call_tool("exec", args)
            by_header = exporter.get_finished_spans()
            exporter.clear()
        # The MCP call's own _meta wins over the header of the HTTP request carrying it.
        async with mcp_client(server.url, TOKEN, headers={"traceparent": header}) as client:
            await client.call_tool("exec", args, meta=CALLER_META)
            by_meta = exporter.get_finished_spans()
    assert not result.is_error
    request, children = _request_and_steps(by_header)
    assert children == STEPS
    assert (request.attributes or {})["execgate.exit_code"] == 0
    assert _request_and_steps(by_meta)[1] == STEPS


async def test_a_denied_command_has_a_deny_decision_span_and_no_provider_span(
    tmp_path: Path, database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with http_server(
        tmp_path, database_url, extra=TRACING_ON, tracer_provider=provider
    ) as server:
        async with mcp_client(server.url, TOKEN) as client:
            result = await client.call_tool(
                "exec",
                {"target": server.served.instance, "argv": ["rm", "-rf", "/"], "reason": "x"},
                meta=CALLER_META,
            )
    assert result.is_error
    finished = exporter.get_finished_spans()
    request, children = _request_and_steps(finished)
    assert children == {"execgate.decide", "execgate.audit.intent"}
    decide = _by_name(finished)["execgate.decide"]
    assert (decide.attributes or {})["execgate.effect"] == "deny"
    assert (request.attributes or {})["execgate.status"] == "denied"


async def test_with_tracing_off_no_span_is_recorded(
    tmp_path: Path, database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with http_server(tmp_path, database_url, tracer_provider=provider) as server:
        async with mcp_client(server.url, TOKEN, headers={"traceparent": TRACEPARENT}) as client:
            result = await client.call_tool(
                "exec",
                {"target": server.served.instance, "argv": ["uptime"], "reason": "x"},
                meta=CALLER_META,
            )
    assert not result.is_error
    assert exporter.get_finished_spans() == ()


async def test_the_cli_continues_the_trace_its_traceparent_variable_names(
    tmp_path: Path, database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with http_server(
        tmp_path, database_url, extra=TRACING_ON, tracer_provider=provider
    ) as server:
        served = server.served
        # Handed to this server over its CLI relay socket, with the caller's trace.
        result = await served.cli(
            "exec", served.instance, "--", "uptime", env={"TRACEPARENT": TRACEPARENT}
        )
    assert result.code == 0, result.stderr
    request, children = _request_and_steps(exporter.get_finished_spans())
    assert children == STEPS
    assert (request.attributes or {})["execgate.surface"] == "cli"


def test_log_lines_of_a_traced_request_carry_its_trace_id(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans

    def logged() -> logging.LogRecord:
        record = logging.LogRecord("execgate", logging.INFO, __file__, 1, "a line", (), None)
        AuditIdFilter().filter(record)
        return record

    alice = Principal.parse("local:alice")
    with incoming(TRACEPARENT), Tracing(provider).request("exec", alice, Surface.CLI):
        inside = logged()
    assert getattr(inside, "trace_id", None) == TRACE_ID
    assert not hasattr(logged(), "trace_id")


async def test_tracing_enabled_without_the_sdk_installed_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an installation without the otel extra sees: the SDK cannot be imported.
    for name in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(ConfigError, match=r"execgate\[otel\]"):
        async with open_tracing(TracingSettings(enabled=True)):
            pass
    async with open_tracing(TracingSettings()) as off:
        assert not off.enabled


def test_the_otlp_exporter_is_built_for_the_configured_collector() -> None:
    provider = build_provider(
        TracingSettings(
            enabled=True, endpoint="http://collector.invalid:4318/v1/traces", service_name="eg"
        )
    )
    try:
        assert provider.resource.attributes["service.name"] == "eg"
    finally:
        provider.shutdown()
