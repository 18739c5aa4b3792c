"""The CPU budget of a pipeline's filters, as the service's collector enforces it."""

from __future__ import annotations

from policies.service.output import OutputCollector
from policies.service.pipeline_output import plan_output


def test_filters_past_their_cpu_budget_stop_and_end_the_exec_without_a_status() -> None:
    argv, plan = plan_output(("/bin/sh", "-c", "cat /proc/cpuinfo | grep -c a"))
    assert argv == ("cat", "/proc/cpuinfo")
    inner = OutputCollector(inline_limit=4096, max_bytes=1 << 20, spill_dir=None)
    collector = plan.collector(inner, max_bytes=1 << 20, cpu_budget=0.0)
    collector.feed("stdout", b"a\n" * 1000)
    assert collector.over_budget
    collector.feed("stdout", b"a\n" * 1000)  # taken in, not filtered
    out = collector.finish()
    assert collector.exit_code(0) is None
    assert out.stdout == ""
    assert "CPU budget" in out.stderr


def test_filters_within_their_cpu_budget_give_their_status_and_output() -> None:
    _, plan = plan_output(("/bin/sh", "-c", "cat /proc/cpuinfo | grep -c a"))
    inner = OutputCollector(inline_limit=4096, max_bytes=1 << 20, spill_dir=None)
    collector = plan.collector(inner, max_bytes=1 << 20, cpu_budget=60.0)
    collector.feed("stdout", b"a\n" * 1000)
    out = collector.finish()
    assert not collector.over_budget
    assert (collector.exit_code(0), out.stdout) == (0, "1000\n")
