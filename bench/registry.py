"""The benchmarks, in the order ``python -m bench`` runs them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from bench.common import Result

BENCHMARKS: tuple[str, ...] = (
    "policy_eval",
    "exec_overhead",
    "exec_throughput",
    "open_sessions",
    "replicas_throughput",
    "output_stream",
    "slack_ack",
    "mcp_call",
    "invoke_rate",
    "invoke_hops",
    "console_page",
    "cli_start",
)

# Benchmarks allowed longer than the runner's 15 minutes: open_sessions opens and closes
# 10,000 sessions (60,000 processes on the local host) after its two runs at 1,000.
TIME_LIMITS_S: dict[str, float] = {"open_sessions": 2700.0}


class BenchModule(Protocol):
    run: Callable[[bool], Result]


def load(name: str) -> BenchModule:
    """The module of benchmark ``name``. Raises: KeyError for an unknown name."""
    if name not in BENCHMARKS:
        raise KeyError(name)
    module: BenchModule = importlib.import_module(f"bench.{name}")
    return module
