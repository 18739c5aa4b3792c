"""What every benchmark shares: statistics, the result line, process limits and memory."""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

Result = dict[str, Any]


def cores() -> int:
    return os.cpu_count() or 1


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rounded(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}") if abs(value) < 10 ** (digits - 1) else round(value, 1)


def result(name: str, *, target: str, met: bool | None, **fields: Any) -> Result:
    """One benchmark's line: its figures, the target it is judged by and the machine."""
    return {"bench": name, **fields, "target": target, "met": met, "cores": cores()}


def skipped(name: str, reason: str) -> Result:
    return {"bench": name, "skipped": reason, "cores": cores()}


def emit(line: Result) -> None:
    sys.stdout.write(json.dumps(line, sort_keys=False) + "\n")
    sys.stdout.flush()


def quiet_logging(verbose: bool = False) -> None:
    """Benchmarks log only errors (an unsandboxed host warns loudly on every start)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; return the new soft limit.

    The soft limit goes up to the hard one; the hard one too where the process may raise
    it (root, or CAP_SYS_RESOURCE), up to the kernel's ``fs.nr_open``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted if soft == resource.RLIM_INFINITY else soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))
            hard = wanted
        except (ValueError, OSError):
            pass  # not permitted: the hard limit stays the ceiling
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    return ceiling


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_kb() -> int:
    """Resident set size of this process now, in KiB."""
    return _status_kb("VmRSS")


def peak_rss_kb() -> int:
    """The high-water mark of this process's resident set, in KiB."""
    return _status_kb("VmHWM")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_module(module: str, *args: str, timeout: float) -> Result:
    """Run ``python -m module args`` in a fresh process and return the JSON object its
    last stdout line holds (memory figures then belong to that process alone).

    Raises: subprocess.CalledProcessError, subprocess.TimeoutExpired.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        check=True,
        timeout=timeout,
    )
    figures: Result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return figures
