"""invoke_rate: `execgate invoke demo-api --rate 300 --duration 10` against a real
`execgate serve` (bubblewrap instances, demo-api's HTTP server in its instance).

Both are separate processes, as a user runs them: the server from `make run`, the load
from a second terminal. The target: at least 2,900 successful invocations (97 % of the
3,000 sent on the open-loop schedule).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result, emit, result, rounded, skipped

NAME = "invoke_rate"
RATE = 300
TARGET_SHARE = 2900 / 3000
EXECGATE = str(Path(sys.executable).parent / "execgate")


def _env(config: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    environ["EXECGATE_CONFIG"] = str(config)
    return environ


@dataclass(frozen=True)
class Served:
    config: Path
    data_dir: Path
    server_pid: int
    function_pid: int  # demo-api's process in its provisioned instance


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _function_pid(server_pid: int) -> int:
    """demo-api's process: the descendant of the server running /code/server.py."""
    todo = [server_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"python3", b"/code/server.py"]:
            return pid
        todo += _children(pid)
    raise RuntimeError("demo-api's process is not running under execgate serve")


@contextlib.contextmanager
def served() -> Iterator[Served | None]:
    """A real `execgate serve` with its demo-api instance; None when it cannot start."""
    with tempfile.TemporaryDirectory(prefix="execgate-bench-invoke-") as root:
        data = Path(root) / "data"
        config = Path(root) / "execgate.toml"
        config.write_text(
            f'data_dir = "{data}"\n[server]\nhost = "127.0.0.1"\nport = 0\n'
            '[logging]\nformat = "json"\nlevel = "WARNING"\n'
        )
        server = subprocess.Popen(
            [EXECGATE, "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(config),
            text=True,
        )
        try:
            assert server.stdout is not None
            deadline = time.monotonic() + 120
            for line in server.stdout:  # the banner ends with the "Try" lines
                if line.rstrip().endswith(" env") or time.monotonic() > deadline:
                    break
            if server.poll() is not None:
                yield None
                return
            yield Served(config, data, server.pid, _function_pid(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=60)


def run(quick: bool) -> Result:
    duration = 3 if quick else 10
    with served() as host:
        if host is None:
            return skipped(NAME, "execgate serve did not start (is bubblewrap installed?)")
        before = cpu_seconds(host.server_pid), cpu_seconds(host.function_pid)
        started = os.times()
        load = subprocess.run(
            [
                EXECGATE,
                "invoke",
                "demo-api",
                "--rate",
                str(RATE),
                "--duration",
                str(duration),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=_env(host.config),
            timeout=600,
            check=False,
        )
        ended = os.times()
        after = cpu_seconds(host.server_pid), cpu_seconds(host.function_pid)
        summary = json.loads(load.stdout)
    count = max(1, summary["count"])
    cli = ended.children_user + ended.children_system
    cli -= started.children_user + started.children_system
    wanted = int(RATE * duration * TARGET_SHARE)
    return result(
        NAME,
        rate=RATE,
        duration_s=duration,
        sent=summary["count"],
        ok=summary["ok"],
        errors=summary["errors"],
        statuses=summary["statuses"],
        achieved_rate=summary["rate"],
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        # CPU per invocation of each hop (the CLI's includes its start-up): a hop's
        # ceiling on one free core is about 1000 / this.
        cpu_ms_per_invocation={
            "cli": rounded(cli / count * 1000),
            "host": rounded((after[0] - before[0]) / count * 1000),
            "function": rounded((after[1] - before[1]) / count * 1000),
        },
        target=f"ok >= {wanted} of {RATE * duration} at {RATE}/s",
        met=summary["ok"] >= wanted and summary["seconds"] <= duration * 1.1,
    )


if __name__ == "__main__":
    emit(run("--quick" in sys.argv))
