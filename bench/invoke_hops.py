"""invoke_hops: the most each hop of `execgate invoke` sustains, closed loop.

Against a real `execgate serve` (bubblewrap, demo-api's server in its instance):

- ``function``: demo-api alone, through its invoke socket with the host's own
  forwarder (kept-alive connections), 32 invocations open at once;
- ``host``: the local host's FC invoke endpoint and the function behind it, through the
  CLI's signed client, 32 invocations open at once.

Each with the CPU milliseconds every process spent per invocation: on a shared machine
the rates move with everyone else's load, the CPU per invocation much less. Figures
only, no target (invoke_rate holds the target).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

from bench.common import Result, emit, result, rounded, skipped
from bench.invoke_rate import Served, cpu_seconds, served
from server.cli.invoke import Invoker
from server.fchost.forward import FunctionConnections
from server.settings import load_settings

NAME = "invoke_hops"
OPEN = 32


async def _closed_loop(once: Callable[[], Awaitable[bool]], seconds: float) -> int:
    """How many calls of ``once`` answered ok with OPEN running at a time for ``seconds``."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            if await once():
                done += 1

    await asyncio.gather(*(worker() for _ in range(OPEN)))
    return done


async def _measure(
    host: Served, once: Callable[[], Awaitable[bool]], seconds: float
) -> dict[str, float]:
    pids = {"host": host.server_pid, "function": host.function_pid}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_before = time.process_time()
    started = time.monotonic()
    done = await _closed_loop(once, seconds)
    elapsed = time.monotonic() - started
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    spent["sender"] = time.process_time() - bench_before
    count = max(done, 1)
    return {
        "per_s": round(done / elapsed),
        **{f"{name}_cpu_ms": rounded(cpu / count * 1000) for name, cpu in spent.items()},
    }


async def _hops(host: Served, seconds: float) -> Result:
    run_dir = next((host.data_dir / "instances" / "demo-api").glob("*/run"))
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)  # a socket path under 108 bytes
    pool = FunctionConnections()
    socket_path = f"/proc/self/fd/{fd}/invoke.sock"

    async def to_function() -> bool:
        answer = await pool.forward("bench", socket_path, "/", b"", "bench")
        return answer.status == 200

    invoker = Invoker(load_settings(host.config, {}), "demo-api", "/")

    async def through_host() -> bool:
        return (await invoker.once(b"")).ok

    try:
        function = await _measure(host, to_function, seconds)
        through = await _measure(host, through_host, seconds)
    finally:
        pool.close()
        await invoker.client.close()
        os.close(fd)
    return {"function": function, "host": through}


def run(quick: bool) -> Result:
    seconds = 1.0 if quick else 4.0
    with served() as host:
        if host is None:
            return skipped(NAME, "execgate serve did not start (is bubblewrap installed?)")
        figures = asyncio.run(_hops(host, seconds))
    return result(
        NAME,
        open_invocations=OPEN,
        seconds=seconds,
        **figures,
        target="figures only: the most each hop sustains (invoke_rate holds the target)",
        met=None,
    )


if __name__ == "__main__":
    emit(run("--quick" in sys.argv))
