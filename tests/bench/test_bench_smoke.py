"""The benchmark runner's contract: one JSON line per benchmark (numbers not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_policy_eval_prints_one_json_result_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "policy_eval"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["bench"] == "policy_eval"
    assert line["quick"] is True
    assert isinstance(line["cores"], int) and line["cores"] >= 1
    assert isinstance(line["met"], bool)
    assert {"p50_us", "p99_us", "baseline_p99_us", "target"} <= line.keys()


def test_unknown_benchmark_name_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "no_such_bench"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )

    assert proc.returncode != 0
    assert proc.stdout == b""
