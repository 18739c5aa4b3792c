"""output_stream: a command printing 100 MB through redaction, truncation and spill.

The command is ``cat`` of a generated application log in the function's code directory:
realistic lines, one in a hundred holding a secret-shaped value (JWTs, passwords in URLs,
cloud keys, ``*_TOKEN=``) or a word that makes the redactor look closer ("token",
"cache_key"); a denser log (one in ten) is measured at the smaller size, and a log with
no such line (the redactor's fast path alone) at the larger. It runs
through ``ExecService.exec`` with the in-process sandbox provider: every byte is
scrubbed, control characters stripped, the inline view kept to head and tail (16 KiB),
the full scrubbed output spilled to a file and handed to the local artifact store.
The baseline is the provider alone reading the same output and discarding it. Each
size runs in a fresh process, whose peak resident set (VmHWM) is reported: memory must
not grow with the output.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    emit,
    median,
    peak_rss_kb,
    quiet_logging,
    result,
    rounded,
    rss_kb,
    run_module,
)
from bench.rig import discard, exec_request, in_process
from policies.types import Limits

NAME = "output_stream"
TARGET_MB_S = 100.0
TARGET_PEAK_MB = 150.0
MB = 1_000_000
REPEATS = 3
# One line in TYPICAL holds a secret-shaped value or a trigger word (the headline log);
# one in DENSE for a debug log or `env`-like output.
TYPICAL = 100
DENSE = 10
CLEAN = 10**9  # no line for the redactor to look at: the fast path alone
INLINE_LIMIT = 16 * 1024

# Flagged lines: secret-shaped values, and lines that only mention a trigger word.
_FLAGGED = (
    "config reload: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTQxMjEiLCJpYXQi"
    "OjE3MzAwMDB9.c2lnbmF0dXJlLW5vdC1yZWFsLTAxMjM0NTY3",
    "connecting to postgres://orders:Hunter2-not-real@10.0.0.12:5432/orders",
    "env: ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchKeyNotReal9x7Q",
    "token refreshed for client c-4121, expires in 3600s",
    "cache lookup cache_key=orders:4121:summary hit=true",
    "env: GITHUB_TOKEN=ghp_NotARealTokenButShapedLikeOne0123456789",
    "auth: api key rotated by scheduler, next rotation in 24h",
    "env: DB_PASSWORD=correct-horse-battery-staple",
)
_SECRET_VALUES = ("eyJzdWIi", "Hunter2-not-real", "LTAI5tBench", "ghp_NotAReal", "battery-staple")


def _log_block(lines: int, seed: int, every: int) -> bytes:
    """``lines`` log lines; one in ``every`` holds a secret or a trigger word."""
    out = []
    for i in range(lines):
        n = seed * lines + i
        head = (
            f"2026-11-03T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z "
            f"{'WARN' if i % 17 == 0 else 'INFO'} orders-api[{4000 + i % 8}] "
        )
        if i % every == every - 1:
            out.append(f"{head}{_FLAGGED[(n // every) % len(_FLAGGED)]}\n")
        else:
            out.append(
                f"{head}req=r-{n:010x} method=GET path=/api/orders/{n % 99991} "
                f"status={200 if i % 23 else 503} dur_ms={n % 397} user=u-{n % 7919}\n"
            )
    return "".join(out).encode()


def write_log(path: Path, size: int, every: int) -> None:
    """A log file of exactly ``size`` bytes, made of varied blocks."""
    blocks = [_log_block(4000, seed, every) for seed in range(8)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        written = 0
        index = 0
        while written < size:
            chunk = blocks[index % len(blocks)][: size - written]
            fh.write(chunk)
            written += len(chunk)
            index += 1


async def _measure(size: int, every: int) -> dict[str, Any]:
    # Under /tmp: unsandboxed (no bubblewrap) the command reads the host path, which the
    # bench policy allows under /tmp/** as it allows /code/** in a sandbox.
    with tempfile.TemporaryDirectory(prefix="execgate-bench-", dir="/tmp") as root:
        code = Path(root) / "code"
        write_log(code / "app.log", size, every)
        async with in_process(Path(root), sandbox="auto", code_dir=code) as local:
            target = local.targets()[0]
            path = "/code/app.log" if local.manager.sandboxed else str(code / "app.log")
            argv = ("cat", path)
            await local.service.exec(exec_request(target, ("true",)))
            raw_s: list[float] = []
            ours_s: list[float] = []
            ours_cpu: list[float] = []
            details: dict[str, Any] = {}
            before = rss_kb()
            for _ in range(REPEATS):
                start = time.perf_counter()
                run = await local.manager.exec(
                    target.function, target.instance, argv, limits=Limits(), on_output=discard
                )
                raw_s.append(time.perf_counter() - start)
                if run.exit_code != 0:
                    raise RuntimeError(f"raw cat failed: {run}")
                start, cpu = time.perf_counter(), time.process_time()
                out = await local.service.exec(
                    exec_request(target, argv), inline_limit=INLINE_LIMIT
                )
                ours_s.append(time.perf_counter() - start)
                # This process's CPU only (the command runs in a child): what ExecGate's
                # work costs, less disturbed than wall time on a shared machine.
                ours_cpu.append(time.process_time() - cpu)
                # Byte counts are of the scrubbed output; all of it was taken in.
                if out.exit_code != 0 or out.dropped_bytes or not out.stdout_bytes:
                    raise RuntimeError(f"ExecGate cat failed: {out.error_code} {out.exit_code}")
                shown = out.to_dict()
                details = {
                    "truncated": out.truncated,
                    "inline_chars": len(out.stdout),
                    "stdout_omitted": out.stdout_omitted,
                    "links": sorted(shown.get("links") or {}),
                    "secrets_inline": sum(v in out.stdout for v in _SECRET_VALUES),
                }
            sandboxed = local.manager.sandboxed
    return {
        "size_mb": size / MB,
        "flagged_lines": f"1 in {every}",
        "mb_per_s": rounded(size / MB / median(ours_s)),
        "baseline_mb_per_s": rounded(size / MB / median(raw_s)),
        "cpu_mb_per_s": rounded(size / MB / median(ours_cpu)),
        "seconds": rounded(median(ours_s)),
        "rss_before_mb": rounded(before / 1024),
        "peak_rss_mb": rounded(peak_rss_kb() / 1024),
        "sandbox": "bwrap" if sandboxed else "subprocess",
        **details,
    }


def _child(size_mb: int, every: int) -> dict[str, Any]:
    args = ("--size-mb", str(size_mb), "--every", str(every))
    return run_module(__name__, *args, timeout=300)


def run(quick: bool) -> Result:
    sizes = (1, 10) if quick else (10, 100)
    runs = [_child(size, TYPICAL) for size in sizes]
    dense = _child(sizes[0], DENSE)
    clean = _child(sizes[-1], CLEAN)
    largest = runs[-1]
    peak = max(float(r["peak_rss_mb"]) for r in [*runs, dense, clean])
    return result(
        NAME,
        mb_per_s=largest["mb_per_s"],
        baseline_mb_per_s=largest["baseline_mb_per_s"],
        cpu_mb_per_s=largest["cpu_mb_per_s"],
        peak_rss_mb=peak,
        sizes={f"{r['size_mb']:g}MB": r for r in runs},
        dense=dense,
        clean=clean,
        inline_limit=INLINE_LIMIT,
        provider="sandbox provider in-process (service, audit, artifact store, instances)",
        baseline="the provider alone, output discarded, the same command",
        target=f">= {TARGET_MB_S:g} MB/s at {sizes[-1]} MB, peak RSS < {TARGET_PEAK_MB:g} MB",
        met=float(largest["mb_per_s"]) >= TARGET_MB_S and peak < TARGET_PEAK_MB,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, required=True)
    parser.add_argument("--every", type=int, default=TYPICAL)
    args = parser.parse_args()
    quiet_logging()
    emit(asyncio.run(_measure(args.size_mb * MB, args.every)))


if __name__ == "__main__":
    main()
