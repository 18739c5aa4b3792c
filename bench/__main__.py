"""``python -m bench [--quick] [--only NAME ...]``: one JSON line per benchmark.

Each benchmark runs in a fresh Python process (``--child NAME``), so memory figures
belong to that benchmark alone and one benchmark's threads, sockets and children never
disturb the next. A benchmark that fails prints an ``error`` line; the exit status is
then 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result, cores, emit, quiet_logging
from bench.registry import BENCHMARKS, TIME_LIMITS_S, load

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 900.0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations: a smoke test, not figures to quote"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--verbose", action="store_true", help="log at INFO to stderr")
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(only: list[str]) -> list[str]:
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}"
        )
    return [n for n in BENCHMARKS if not names or n in names]


def _run_child(name: str, quick: bool, verbose: bool) -> Result:
    args = [sys.executable, "-m", "bench", "--child", name]
    args += ["--quick"] if quick else []
    args += ["--verbose"] if verbose else []
    started = time.monotonic()
    limit = TIME_LIMITS_S.get(name, CHILD_TIMEOUT_S)
    try:
        proc = subprocess.run(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "bench": name,
            "error": f"did not finish within {limit:g}s",
            "cores": cores(),
        }
    for raw in reversed(proc.stdout.decode(errors="replace").splitlines()):
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and line.get("bench") == name:
            line["elapsed_s"] = round(time.monotonic() - started, 1)
            return line
    return {
        "bench": name,
        "error": f"exited with status {proc.returncode} and no result line",
        "cores": cores(),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    if args.child:
        from policies.instances.childwatch import use_pidfd_child_watcher

        use_pidfd_child_watcher()  # as every ExecGate entry point does
        quiet_logging(args.verbose)
        line = load(args.child).run(args.quick)
        if args.quick:
            line["quick"] = True
        emit(line)
        return 0
    failed = False
    for name in _selected(args.only):
        line = _run_child(name, args.quick, args.verbose)
        failed = failed or "error" in line
        emit(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
