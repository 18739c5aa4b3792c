"""/metrics exports, in the Prometheus format, what this replica recorded: execs by
surface, effect and status, their durations, audit write latency, secrets redacted by
detector, failures by code, and the deployment's pending approvals and open sessions."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from policies.types import ExecRequest, Principal, Surface, Target
from server.serve import running_server
from server.settings import load_settings
from tests.e2e.conftest import write_config


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_execs_redactions_sessions_and_audit_writes(
    tmp_path: Path, database_url: str
) -> None:
    config, _ = write_config(tmp_path, database_url)
    settings = load_settings(config, environ={})
    alice = Principal.parse("local:alice")
    async with running_server(settings, port=0) as running, httpx.AsyncClient() as http:
        instance = running.manager.list("demo-api")[0].instance_id
        target = Target("demo-api", instance)
        service = running.service
        ran = await service.exec(
            ExecRequest(alice, Surface.CLI, target, argv=("env",), reason="INC-1")
        )
        denied = await service.exec(
            ExecRequest(alice, Surface.CLI, target, argv=("rm", "-rf", "/"), reason="INC-1")
        )
        await service.session_start(alice, target, reason="INC-1")
        scraped = await http.get(running.url + "/metrics")

    assert (ran.exit_code, denied.status.value) == (0, "denied")
    assert scraped.status_code == 200
    samples = _samples(scraped.text)
    execs = "execgate_execs_total"
    assert samples[(execs, (("effect", "allow"), ("status", "completed"), ("surface", "cli")))] == 1
    assert samples[(execs, (("effect", "deny"), ("status", "denied"), ("surface", "cli")))] == 1
    assert samples[("execgate_exec_duration_seconds_count", (("surface", "cli"),))] == 1
    assert samples[("execgate_audit_write_seconds_count", (("operation", "record intent"),))] == 2
    assert samples[("execgate_sessions_open", ())] == 1
    assert samples[("execgate_approvals_pending", ())] == 0
    redacted = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "execgate_redactions_total"
    }
    assert "[REDACTED:" in ran.stdout
    assert redacted and sum(redacted.values()) >= 1
