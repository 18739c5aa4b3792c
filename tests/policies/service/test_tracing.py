"""Traces of the service's other requests: an approved command runs in the trace of
the vote that approved it, and a run that fails ends its spans with the error's code."""

from __future__ import annotations

import dataclasses

import pytest

from policies.errors import ExecGateError
from policies.tracing import Tracing, incoming
from policies.types import Target
from tests.policies.service.conftest import Rig, local
from tests.support.traces import TRACEPARENT, Recording, by_name, request_and_steps


@pytest.fixture
def tracing(spans: Recording) -> Tracing:
    return Tracing(spans[0])


async def test_an_approved_command_runs_in_the_trace_of_the_vote_that_approved_it(
    rig: Rig, spans: Recording
) -> None:
    _, exporter = spans
    asked = await rig.service.exec(rig.request("id", reason="check uid"))
    assert asked.approval_id is not None
    exporter.clear()
    with incoming(TRACEPARENT):
        vote = await rig.service.vote(asked.approval_id, local("bob"), approve=True)
    assert vote.result is not None and vote.result.exit_code == 0
    finished = exporter.get_finished_spans()
    request, children = request_and_steps(finished, "execgate.approval")
    # The intent was written when the request was held; the vote decides again and runs.
    assert children == {"execgate.decide", "execgate.provider.exec", "execgate.audit.outcome"}
    assert dict(request.attributes or {}) == {
        "execgate.principal": "local:bob",
        "execgate.approval_id": asked.approval_id,
        "execgate.approve": True,
        "execgate.approval_state": "executed",
        "execgate.effect": "approve",
        "execgate.rule": asked.rule,
        "execgate.exec_id": asked.audit_id,
        "execgate.status": "completed",
        "execgate.target": str(asked.target),
        "execgate.exit_code": 0,
    }


async def test_a_failed_run_ends_its_spans_with_the_errors_code(rig: Rig, spans: Recording) -> None:
    _, exporter = spans
    gone = Target("demo-api", "c-not-an-instance")
    with incoming(TRACEPARENT), pytest.raises(ExecGateError) as failed:
        await rig.service.exec(dataclasses.replace(rig.request(argv=("uptime",)), target=gone))
    finished = exporter.get_finished_spans()
    request, children = request_and_steps(finished)
    named = by_name(finished)
    assert children == {
        "execgate.decide",
        "execgate.audit.intent",
        "execgate.provider.exec",
        "execgate.audit.outcome",
    }
    for span in (request, named["execgate.provider.exec"]):
        assert not span.status.is_ok
        assert (span.attributes or {})["error.type"] == failed.value.code
    assert (named["execgate.audit.outcome"].attributes or {})["execgate.status"] == "failed"
