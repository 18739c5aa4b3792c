"""invoke_rate: `execgate invoke demo-api --rate 300 --duration 10` against a real
`execgate serve` (bubblewrap instances, demo-api's HTTP server in its instance).

Both are separate processes, as a user runs them: the server from `make run`, the load
from a second terminal. The target: at least 2,900 successful invocations (97 % of the
3,000 sent on the open-loop schedule).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, result, skipped

NAME = "invoke_rate"
RATE = 300
TARGET_SHARE = 2900 / 3000
EXECGATE = str(Path(sys.executable).parent / "execgate")


def _env(config: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    environ["EXECGATE_CONFIG"] = str(config)
    return environ


def run(quick: bool) -> Result:
    duration = 3 if quick else 10
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
                return skipped(NAME, "execgate serve did not start (is bubblewrap installed?)")
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
                env=_env(config),
                timeout=600,
                check=False,
            )
            summary = json.loads(load.stdout)
        finally:
            server.terminate()
            server.wait(timeout=60)
    wanted = int(RATE * duration * TARGET_SHARE)
    return result(
        NAME,
        rate=RATE,
        duration_s=duration,
        sent=summary["count"],
        ok=summary["ok"],
        errors=summary["errors"],
        achieved_rate=summary["rate"],
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        target=f"ok >= {wanted} of {RATE * duration} at {RATE}/s",
        met=summary["ok"] >= wanted and summary["seconds"] <= duration * 1.1,
    )


if __name__ == "__main__":
    emit(run("--quick" in sys.argv))
