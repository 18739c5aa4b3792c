"""cli_start: whole-process wall time of the `execgate` CLI.

Three commands, alternating round by round so load from elsewhere on the machine hits
them alike: ``python -c pass`` (the interpreter's own start-up, the baseline),
``execgate --help`` (argument parsing only) and ``execgate exec TARGET -- uptime`` on the
embedded default (a running ``execgate serve`` with its local instances; ``uptime`` is
allowed by the shipped policy, ``true`` is not). Each figure is the median over the
rounds of one process's wall time, from spawn to exit.

ExecGate's own modules are byte-compiled first (``compileall``), as the first run of an
installed CLI leaves them; without that, a shell with ``PYTHONDONTWRITEBYTECODE=1``
compiles every module from source on every run.
"""

from __future__ import annotations

import compileall
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.common import Result, median, result, rounded

NAME = "cli_start"
EXECGATE = str(Path(sys.executable).parent / "execgate")
TARGET_HELP_MS = 250.0
TARGET_EXEC_MS = 350.0
_INSTANCE = re.compile(r"^\s+demo-api\s+(c-\S+)", re.MULTILINE)


def _environ(config: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    environ["EXECGATE_CONFIG"] = str(config)
    return environ


@contextmanager
def _served(root: Path) -> Iterator[tuple[Path, str]]:
    """`execgate serve` on loopback with a fresh data directory; its config and the
    demo-api instance it started."""
    config = root / "execgate.toml"
    config.write_text(
        f'data_dir = "{root / "data"}"\n[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[logging]\nlevel = "ERROR"\n'
    )
    proc = subprocess.Popen(
        [EXECGATE, "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_environ(config),
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        for line in proc.stdout:
            banner += line
            if line.startswith("  audit database"):
                break
        found = _INSTANCE.search(banner)
        if found is None:
            raise RuntimeError("execgate serve printed no demo-api instance:\n" + banner)
        yield config, f"demo-api/{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall_ms(argv: Sequence[str], environ: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one process, in ms."""
    cpu = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, env=environ, check=False
    )
    took = (time.perf_counter() - start) * 1000.0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1:]} exited {done.returncode}: {done.stderr[-300:]!r}")
    return took, (_children_cpu_s() - cpu) * 1000.0


ROOT = Path(__file__).resolve().parent.parent


def run(quick: bool) -> Result:
    rounds = 3 if quick else 15
    for package in ("policies", "server", "bot"):
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp, _served(Path(tmp)) as served:
        config, target = served
        environ = _environ(config)
        commands = {
            "baseline": [sys.executable, "-c", "pass"],
            "help": [EXECGATE, "--help"],
            "exec": [EXECGATE, "exec", target, "--", "uptime"],
        }
        _wall_ms(commands["exec"], environ)  # warm the page cache and the instance
        samples: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, argv in commands.items():
                wall, used = _wall_ms(argv, environ)
                samples[name].append(wall)
                cpu[name].append(used)
    base, help_ms, exec_ms = (median(samples[n]) for n in ("baseline", "help", "exec"))
    return result(
        NAME,
        baseline_ms=rounded(base),
        help_ms=rounded(help_ms),
        exec_ms=rounded(exec_ms),
        help_ratio=rounded(help_ms / base),
        exec_ratio=rounded(exec_ms / base),
        # CPU time of the CLI process alone: less swayed by other load than wall time.
        cpu_ms={name: rounded(median(values)) for name, values in cpu.items()},
        rounds=rounds,
        quick=quick,
        baseline="python -c pass, same run",
        target=f"median execgate --help <= {TARGET_HELP_MS:g} ms, "
        f"exec TARGET -- uptime <= {TARGET_EXEC_MS:g} ms",
        met=help_ms <= TARGET_HELP_MS and exec_ms <= TARGET_EXEC_MS,
    )
