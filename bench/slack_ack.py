"""slack_ack: 50 concurrent signed slash commands, time until each is acknowledged.

ExecGate runs as it does in production: an ``execgate serve`` process (its own event
loop and cores' share) with the Slack mount (the real bolt app at /slack/events),
talking to a fake Slack Web API in the bench process. The bench sends 50 signed
``/exec`` commands at once from 50 Slack users (members of a user group the policy
names); each runs ``vmstat 1 2`` (about a second) on one of four sandboxed instances,
so the later acks are answered while the earlier commands' execs run. The time to ack
is the HTTP round trip of the signed request (the bot acknowledges in the response). A
round ends when all 50 results were posted back. The baseline is the same 50 requests
for ``/exec help``, acknowledged with no exec behind them, in rounds alternating with
the exec rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result, median, percentile, result, rounded, skipped
from bench.rig import FUNCTION, FUNCTION_ENV, mounted, write_policy
from bench.slack_side import BOT_TOKEN, SIGNING_SECRET, SlackSide

NAME = "slack_ack"
TARGET_P99_MS = 300.0
USERS = 50
INSTANCES = 4
GROUP = "S0SRE"  # a Slack user group in the generated policy's oncall role
COMMAND = "vmstat 1 2"
EXECGATE = Path(sys.executable).parent / "execgate"
START_TIMEOUT_S = 60.0


@dataclass
class Served:
    url: str
    instances: list[str]
    sandbox: str


def _config(root: Path, api_url: str) -> Path:
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "signing").write_text(SIGNING_SECRET)
    (secrets / "bot").write_text(BOT_TOKEN)
    env = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in FUNCTION_ENV.items())
    config = root / "execgate.toml"
    config.write_text(
        f'data_dir = "{root / "data"}"\n'
        f'policy = "{write_policy(root / "bench-policy.yaml")}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[logging]\nlevel = "ERROR"\n'
        '[local_host]\nsandbox = "auto"\n'
        f'[[local_host.functions]]\nname = "{FUNCTION}"\nprovisioned = {INSTANCES}\n'
        f"env = {{ {env} }}\n"
        "[slack]\n"
        f'signing_secret = {{ file = "{secrets / "signing"}" }}\n'
        f'bot_token = {{ file = "{secrets / "bot"}" }}\n'
        f'api_base_url = "{api_url}"\n'
        'approvals_channel = "C0APPROVALS"\n'
    )
    return config


@contextlib.asynccontextmanager
async def _execgate_serve(config: Path) -> AsyncIterator[Served]:
    """``execgate serve`` as its own process; its address and instances from its banner."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
    proc = await asyncio.create_subprocess_exec(
        str(EXECGATE),
        "--config",
        str(config),
        "serve",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        env=environ,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            first = (await proc.stdout.readline()).decode()
            if "serving on " not in first:
                raise RuntimeError("execgate serve did not start")
            url = first.split("serving on ", 1)[1].strip()
            instances: list[str] = []
            sandbox = "bwrap"
            while not instances:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("execgate serve printed no instances")
                if "UNSANDBOXED" in line:
                    sandbox = "subprocess"
                if line.split() and line.split()[0] == FUNCTION:
                    instances = [i.strip() for i in line.split(None, 1)[1].split(",")]
        yield Served(url, instances, sandbox)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _rounds(side: SlackSide, served: Served, rounds: int) -> tuple[list[float], list[float]]:
    url = served.url + "/slack/events"
    users = [f"U0BENCH{i:02d}" for i in range(USERS)]
    targets = [f"{FUNCTION}/{served.instances[i % len(served.instances)]}" for i in range(USERS)]
    execs = [(u, f"{t} {COMMAND}") for u, t in zip(users, targets, strict=True)]
    helps = [(u, "help") for u in users]
    # Warm-up: bolt's first authorize, the directory's first lookups, the first sandboxes.
    await side.burst(url, helps, 0)
    await side.burst(url, execs, USERS)
    base: list[float] = []
    ours: list[float] = []
    for _ in range(rounds):
        base += await side.burst(url, helps, 0)
        ours += await side.burst(url, execs, USERS)
    return base, ours


async def _run(quick: bool) -> Result:
    rounds = 2 if quick else 10
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as tmp:
        root = Path(tmp)
        async with SlackSide({GROUP: [f"U0BENCH{i:02d}" for i in range(USERS)]}) as side:
            async with _execgate_serve(_config(root, side.api_url)) as served:
                if not await mounted(served.url + "/slack/events"):
                    return skipped(NAME, "this build serves no Slack at /slack/events")
                base, ours = await _rounds(side, served, rounds)
    p99 = percentile(ours, 99)
    return result(
        NAME,
        p99_ms=rounded(p99),
        p50_ms=rounded(median(ours)),
        max_ms=rounded(max(ours)),
        baseline_p99_ms=rounded(percentile(base, 99)),
        baseline_p50_ms=rounded(median(base)),
        commands=len(ours),
        concurrent=USERS,
        command=COMMAND,
        sandbox=served.sandbox,
        server="execgate serve, its own process",
        baseline="the same 50 concurrent signed requests for `/exec help` (no exec)",
        target=f"p99 ack < {TARGET_P99_MS:g} ms",
        met=p99 < TARGET_P99_MS,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))
