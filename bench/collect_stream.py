"""collect_stream: fetching a large file from an instance into the local artifact store.

A capture-like file of random bytes is written into a local instance's /tmp and fetched
with ``ExecService.collect`` over the in-process sandbox provider: the transport script
base64-streams it through the exec channel, ExecGate decodes and hands it to the store
through a bounded queue. Each size runs in a fresh process whose peak resident set
(VmHWM) is reported: memory must not grow with the file. Run it on its own with
``python -m bench.collect_stream [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Result, emit, peak_rss_kb, quiet_logging, result, rounded, rss_kb

NAME = "collect_stream"
TARGET_PEAK_MB = 150.0
MB = 1 << 20
POLICY = """
version: 1
roles: { ops: { local_users: [bench] } }
targets: { demo: { functions: ["demo-*"] } }
rules:
  - id: bench-files
    effect: allow
    who: [ops]
    where: [demo]
    commands: [[stat, "{f:path(/tmp/*.cap)}"]]
    limits: { max_output: 2GiB, timeout: 600s }
    collect: ["/tmp/*.cap"]
"""


async def _one(size_mb: int) -> Result:
    from policies.artifacts.local import LocalArtifactStore
    from policies.audit import open_audit_store
    from policies.audit.migrate import upgrade
    from policies.instances.local import InstanceManager, LocalFunction
    from policies.instances.sandbox import SandboxRunner
    from policies.instances.sandbox_provider import SandboxProvider
    from policies.rules.holder import PolicyHolder
    from policies.service.core import ExecService
    from policies.types import Principal, Surface, Target

    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        url = f"sqlite+aiosqlite:///{root / 'audit.db'}"
        await upgrade(url)
        audit = await open_audit_store(
            url,
            checkpoint_path=root / "checkpoint.json",
            checkpoint_key=Ed25519PrivateKey.generate(),
        )
        (root / "policy.yaml").write_text(POLICY)
        manager = InstanceManager(
            [LocalFunction("demo-api", {}, provisioned=1)], SandboxRunner("auto"), root / "data"
        )
        await manager.start()
        try:
            store = LocalArtifactStore(
                root / "artifacts", signing_key=b"s" * 32, base_url=lambda: "http://127.0.0.1:1"
            )
            service = ExecService(
                policies=PolicyHolder(root / "policy.yaml"),
                audit=audit,
                providers={"local": SandboxProvider("local", manager)},
                default_provider="local",
                artifacts=store,
            )
            instance = manager.list("demo-api")[0].instance_id
            tmp = root / "data" / "instances" / "demo-api" / instance / "tmp"
            with (tmp / "big.cap").open("wb") as fh:
                for _ in range(size_mb):
                    fh.write(os.urandom(MB))
            before = rss_kb()
            started = time.perf_counter()
            collected = await service.collect(
                Principal.parse("local:bench"),
                Surface.CLI,
                Target("demo-api", instance),
                "/tmp/big.cap",
            )
            seconds = time.perf_counter() - started
        finally:
            await manager.aclose()
            await audit.aclose()
    return {
        "size_mb": size_mb,
        "ok": collected.ok,
        "mb_per_s": rounded(size_mb / seconds),
        "seconds": rounded(seconds),
        "rss_before_mb": rounded(before / 1024),
        "peak_rss_mb": rounded(peak_rss_kb() / 1024),
    }


def run(quick: bool) -> Result:
    sizes = (8, 32) if quick else (16, 256)
    runs = []
    for size in sizes:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.collect_stream", "--size", str(size)],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    peak = max(r["peak_rss_mb"] for r in runs)
    return result(
        NAME,
        target=f"peak RSS < {TARGET_PEAK_MB:g} MB at every size, all collected whole",
        met=peak < TARGET_PEAK_MB and all(r["ok"] for r in runs),
        peak_rss_mb=peak,
        mb_per_s=runs[-1]["mb_per_s"],
        sizes={f"{r['size_mb']}MB": r for r in runs},
        quick=quick,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.collect_stream")
    parser.add_argument("--size", type=int, help="one size in MiB, in this process")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quiet_logging()
    if args.size:
        emit(asyncio.run(_one(args.size)))
    else:
        emit(run(args.quick))


if __name__ == "__main__":
    main()
