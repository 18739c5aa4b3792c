"""OpenTelemetry traces: a request served by the real server (MCP over streamable HTTP
under uvicorn, or the CLI through its relay socket) is one span with its decision, audit
writes and provider run as children, continuing the caller's W3C trace from the MCP
call's ``_meta``, the HTTP ``traceparent`` header or the CLI's TRACEPARENT variable;
spans carry who, where and what was decided, never arguments or output; and with
tracing off, nothing is recorded."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from policies.errors import ConfigError
from policies.logctx import AuditIdFilter
from policies.tracing import Tracing, incoming
from policies.types import Principal, Surface
from server.settings import TracingSettings
from server.telemetry import build_provider, open_tracing
from tests.server.mcp.conftest import data
from tests.server.mcp.http_client import mcp_client
from tests.server.mcp.test_http import TOKEN, HttpServed, http_server
from tests.support.traces import (
    CALLER_META,
    STEPS,
    TRACE_ID,
    TRACEPARENT,
    Recording,
    by_name,
    recording,
    request_and_steps,
)

TRACING_ON = "[tracing]\nenabled = true\n"
# An argument that must never reach a span.
SECRET_ARG = "/tmp/argument-that-could-hold-a-secret"


Traced = tuple[HttpServed, Recording]


@pytest.fixture(scope="module")
async def traced_server(
    tmp_path_factory: pytest.TempPathFactory, module_migrated_url: str
) -> AsyncIterator[Traced]:
    """One server with tracing on for the module, recording into one exporter."""
    with recording() as recorded:
        async with http_server(
            tmp_path_factory.mktemp("traced"),
            module_migrated_url,
            extra=TRACING_ON,
            tracer_provider=recorded[0],
        ) as server:
            yield server, recorded


@pytest.fixture
def traced(traced_server: Traced) -> Traced:
    """The traced server, its exporter emptied of earlier tests' spans."""
    traced_server[1][1].clear()
    return traced_server


def _attribute_values(finished: tuple[ReadableSpan, ...]) -> list[str]:
    return [str(value) for span in finished for value in (span.attributes or {}).values()]


async def test_an_mcp_call_with_a_meta_traceparent_is_traced_through_decide_audit_and_provider(
    traced: Traced,
) -> None:
    server, (_, exporter) = traced
    async with mcp_client(server.url, TOKEN) as client:
        result = await client.call_tool(
            "exec",
            {"target": server.served.instance, "argv": ["ls", SECRET_ARG], "reason": "x"},
            meta=CALLER_META,
        )
    instance = server.served.instance
    finished = exporter.get_finished_spans()
    request, children = request_and_steps(finished)
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
    named = by_name(finished)
    assert (named["execgate.provider.exec"].attributes or {})["execgate.command"] == "ls"
    assert (named["execgate.audit.outcome"].attributes or {})["execgate.exec_id"] == out["audit_id"]
    values = _attribute_values(finished)
    assert not [v for v in values if "argument-that-could-hold" in v]
    assert not [v for v in values if "No such file" in v]


async def test_an_http_traceparent_header_links_the_request_to_the_callers_trace(
    traced: Traced,
) -> None:
    server, (_, exporter) = traced
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    header = f"00-{other_trace}-b7ad6b7169203331-01"
    args = {"argv": ["uptime"], "reason": "x", "target": server.served.instance}
    async with mcp_client(server.url, TOKEN, headers={"traceparent": TRACEPARENT}) as client:
        result = await client.call_tool("exec", args)
        by_header = exporter.get_finished_spans()
        exporter.clear()
    # The MCP call's own _meta wins over the header of the HTTP request carrying it.
    async with mcp_client(server.url, TOKEN, headers={"traceparent": header}) as client:
        await client.call_tool("exec", args, meta=CALLER_META)
        by_meta = exporter.get_finished_spans()
    assert not result.is_error
    request, children = request_and_steps(by_header)
    assert children == STEPS
    assert (request.attributes or {})["execgate.exit_code"] == 0
    assert request_and_steps(by_meta)[1] == STEPS


async def test_a_denied_command_has_a_deny_decision_span_and_no_provider_span(
    traced: Traced,
) -> None:
    server, (_, exporter) = traced
    async with mcp_client(server.url, TOKEN) as client:
        result = await client.call_tool(
            "exec",
            {"target": server.served.instance, "argv": ["rm", "-rf", "/"], "reason": "x"},
            meta=CALLER_META,
        )
    assert result.is_error
    finished = exporter.get_finished_spans()
    request, children = request_and_steps(finished)
    assert children == {"execgate.decide", "execgate.audit.intent"}
    decide = by_name(finished)["execgate.decide"]
    assert (decide.attributes or {})["execgate.effect"] == "deny"
    assert (request.attributes or {})["execgate.status"] == "denied"


async def test_with_tracing_off_no_span_is_recorded(
    tmp_path: Path, database_url: str, spans: Recording
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
    traced: Traced,
) -> None:
    server, (_, exporter) = traced
    served = server.served
    # Handed to this server over its CLI relay socket, with the caller's trace: the
    # CLI sees this process's EXECGATE_* variables, so it has this server's settings.
    same = {k: v for k, v in os.environ.items() if k.startswith("EXECGATE_")}
    result = await served.cli(
        "exec", served.instance, "--", "uptime", env=same | {"TRACEPARENT": TRACEPARENT}
    )
    assert result.code == 0, result.stderr
    request, children = request_and_steps(exporter.get_finished_spans())
    assert children == STEPS
    assert (request.attributes or {})["execgate.surface"] == "cli"


def test_log_lines_of_a_traced_request_carry_its_trace_id(
    spans: Recording,
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
