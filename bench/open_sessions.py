"""open_sessions: 1,000 long-running exec sessions held open through one process.

One session is one exec of ``vmstat 600`` (its first sample at once, the next in ten
minutes): it stays open until the bench ends it. Through ExecGate, each session is an
``ExecService.exec`` (audit intent recorded, output collector, the FC client's
WebSocket) served by the local
instance host of the same in-process ``execgate serve`` (the host's WebSocket end and
a plain subprocess); raw, each is the FC client alone against the same host. Each
variant runs in its own fresh process; the added memory is that process's resident set
with every session open minus before the first one opened, per session. The bench ends
the sessions by sending SIGTERM to their ``vmstat`` processes, so each exec finishes
normally (exit 143) and its audit outcome is written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    emit,
    open_fds,
    quiet_logging,
    raise_nofile,
    result,
    rounded,
    rss_kb,
    run_module,
)
from bench.rig import HOLD_COMMAND, Rig, count_audit, discard, serving
from policies.types import Limits, Stream

NAME = "open_sessions"
TARGET_KB = 200.0
SESSIONS = 1000
INSTANCES = 4
OPENING_AT_ONCE = 50
READY_TIMEOUT_S = 900.0
SIGTERM_EXIT = 128 + signal.SIGTERM
WARM_UP = 20
# A session's command (HOLD_COMMAND) as /proc/PID/cmdline shows it.
_HOLD_CMDLINE = b"\0".join(arg.encode() for arg in HOLD_COMMAND) + b"\0"

Opener = Callable[[int, Callable[[Stream, bytes], Awaitable[None]]], Awaitable[bool]]


def _threads() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _descends_from_me(pid: int) -> bool:
    me = os.getpid()
    for _ in range(4):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                # The command name may hold spaces and parentheses: split after its end.
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return False
        pid = int(fields[1])
        if pid == me:
            return True
    return False


def _end_sessions() -> int:
    """SIGTERM every session command this process started (through the exit-status
    wrapper's shell)."""
    ended = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if cmdline.read() != _HOLD_CMDLINE:
                    continue
        except OSError:
            continue
        if _descends_from_me(int(entry)):
            try:
                os.kill(int(entry), signal.SIGTERM)
                ended += 1
            except ProcessLookupError:
                pass
    return ended


async def _hold(opener: Opener, count: int) -> dict[str, Any]:
    """Open ``count`` sessions, measure with all of them open, then end them."""
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    ready = 0
    all_ready = asyncio.Event()

    async def session(index: int) -> bool:
        await gate.acquire()
        released = False

        async def on_output(stream: Stream, data: bytes) -> None:
            nonlocal ready, released
            if not released and data:  # the first sample: the session is open
                released = True
                gate.release()
                ready += 1
                if ready == count:
                    all_ready.set()

        try:
            return await opener(index, on_output)
        finally:
            if not released:
                gate.release()

    gc.collect()
    before = rss_kb()
    fds_before = open_fds()
    started = time.monotonic()
    tasks = [asyncio.create_task(session(i)) for i in range(count)]
    # All open, or some failed before opening (then there is nothing more to wait for).
    waiter = asyncio.create_task(all_ready.wait())
    await asyncio.wait([waiter, *tasks], timeout=READY_TIMEOUT_S, return_when="FIRST_COMPLETED")
    waiter.cancel()
    ramp = time.monotonic() - started
    gc.collect()
    held = rss_kb()
    fds, threads, opened = open_fds(), _threads(), ready
    pending = set(tasks)
    while pending:
        # Repeated: a session may still be opening when the first round is sent.
        _end_sessions()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for o in outcomes if o is True)
    return {
        "sessions": count,
        "opened": opened,
        "ok": ok,
        "errors": count - ok,
        "rss_before_mb": rounded(before / 1024),
        "rss_open_mb": rounded(held / 1024),
        "added_kb_per_session": rounded((held - before) / count),
        "fds_open": fds,
        "fds_per_session": rounded((fds - fds_before) / count),
        "threads_open": threads,
        "ramp_s": rounded(ramp),
    }


def _execgate_opener(rig: Rig) -> Opener:
    async def opener(index: int, on_output: Callable[[Stream, bytes], Awaitable[None]]) -> bool:
        async def text_sink(stream: Stream, text: str) -> None:
            await on_output(stream, text.encode())

        out = await rig.service.exec(rig.request(*HOLD_COMMAND, index=index), on_output=text_sink)
        return out.exit_code == SIGTERM_EXIT and out.error_code is None

    return opener


def _raw_opener(rig: Rig) -> Opener:
    async def opener(index: int, on_output: Callable[[Stream, bytes], Awaitable[None]]) -> bool:
        run = await rig.raw.exec(
            rig.target(index), HOLD_COMMAND, limits=Limits(timeout=600.0), on_output=on_output
        )
        return run.exit_code == SIGTERM_EXIT

    return opener


async def _variant(name: str, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with serving(Path(root), sandbox="subprocess", instances=INSTANCES) as rig:
            for i in range(WARM_UP):  # every code path once, before the baseline
                await rig.service.exec(rig.request("true", index=i))
                await rig.raw.exec(rig.target(i), ("true",), limits=Limits(), on_output=discard)
            opener = _execgate_opener(rig) if name == "execgate" else _raw_opener(rig)
            figures = await _hold(opener, count)
            url = rig.database_url
        if name == "execgate":
            audit = await count_audit(url)
            # The 20 warm-up execs through ExecGate are in the audit too.
            figures["audit"] = {k: audit[k] - WARM_UP for k in ("intents", "outcomes")}
    return {"variant": name, **figures}


def run(quick: bool) -> Result:
    count = 100 if quick else SESSIONS
    timeout = READY_TIMEOUT_S + 120
    raw = run_module(__name__, "--variant", "raw", "--count", str(count), timeout=timeout)
    ours = run_module(__name__, "--variant", "execgate", "--count", str(count), timeout=timeout)
    per_session = float(ours["added_kb_per_session"])
    return result(
        NAME,
        sessions=count,
        errors=ours["errors"],
        added_kb_per_session=per_session,
        baseline_added_kb_per_session=raw["added_kb_per_session"],
        execgate=ours,
        baseline=raw,
        mode="execgate serve in-process: FC client -> local host -> plain subprocess",
        target=f"no errors, added memory < {TARGET_KB:g} KB per session",
        met=ours["errors"] == 0
        and ours["opened"] == count
        and ours["audit"]["outcomes"] == count
        and per_session < TARGET_KB,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=("raw", "execgate"), required=True)
    parser.add_argument("--count", type=int, default=SESSIONS)
    args = parser.parse_args()
    quiet_logging()
    # Each session holds about five descriptors (two socket ends, three pipes).
    raise_nofile(8 * args.count + 1024)
    emit(asyncio.run(_variant(args.variant, args.count)))


if __name__ == "__main__":
    main()
