"""exec_throughput: 50 concurrent clients issuing execs through one ExecService.

Each client is its own principal (``local:client-NN``) running ``true`` again and again
on one of four plain-subprocess instances. Headline: the in-process sandbox provider
(the service, the audit store and the instances in this process; no FC wire protocol).
Also measured, shorter: the same through the FC client and the local instance host of
an in-process ``execgate serve`` (subprocess mode), which adds two WebSocket ends per
exec to the same process. The baseline is the provider alone (no policy, no audit) with
the same 50 clients, run in stretches alternating with ExecGate's. Afterwards every
exec's audit rows are counted: each must have its intent and its outcome.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, result, rounded
from bench.rig import count_audit, discard, exec_request, in_process, serving
from policies.service.core import ExecService
from policies.types import Limits, Principal, PrincipalKind, Target

NAME = "exec_throughput"
TARGET_PER_S = 300.0
CLIENTS = 50
INSTANCES = 4
ARGV = ("true",)

OneExec = Callable[[int], Awaitable[bool]]


async def _drive(one: OneExec, seconds: float) -> tuple[int, int, float]:
    """Run ``CLIENTS`` loops of ``one`` for ``seconds``; (ok, failed, elapsed)."""
    counts = [0, 0]
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        while time.monotonic() < deadline:
            counts[0 if await one(index) else 1] += 1

    start = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return counts[0], counts[1], time.monotonic() - start


def _through(service: ExecService, targets: list[Target]) -> OneExec:
    principals = [Principal(PrincipalKind.LOCAL, f"client-{i:02d}") for i in range(CLIENTS)]

    async def one(index: int) -> bool:
        request = exec_request(targets[index % len(targets)], ARGV, principals[index])
        out = await service.exec(request)
        return out.exit_code == 0 and out.error_code is None

    return one


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def _alternate(
    raw: OneExec, ours: OneExec, seconds: float, segments: int
) -> tuple[Tally, Tally]:
    """Run ExecGate for ``seconds`` in ``segments`` stretches, each after a stretch of
    the baseline half as long: load from elsewhere on the machine hits both alike."""
    base, gated = Tally(), Tally()
    for _ in range(segments):
        for tally, one, span in (
            (base, raw, seconds / segments / 2),
            (gated, ours, seconds / segments),
        ):
            ok, failed, elapsed = await _drive(one, span)
            tally.ok += ok
            tally.failed += failed
            tally.seconds += elapsed
    return base, gated


async def _in_process(seconds: float, segments: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with in_process(Path(root), instances=INSTANCES) as local:
            targets = local.targets()

            async def raw(index: int) -> bool:
                target = targets[index % len(targets)]
                run = await local.manager.exec(
                    target.function, target.instance, ARGV, limits=Limits(), on_output=discard
                )
                return run.exit_code == 0

            await _drive(raw, 1.0)  # warm-up: the first spawns
            base, ours = await _alternate(raw, _through(local.service, targets), seconds, segments)
        audit = await count_audit(local.database_url)
    return {
        "execs": ours.ok,
        "failed": ours.failed,
        "execs_per_s": rounded(ours.per_s),
        "baseline_execs_per_s": rounded(base.per_s),
        "audit": audit,
    }


async def _via_fc_host(seconds: float, segments: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with serving(Path(root), sandbox="subprocess", instances=INSTANCES) as rig:
            targets = [rig.target(i) for i in range(INSTANCES)]

            async def raw(index: int) -> bool:
                run = await rig.raw.exec(
                    targets[index % INSTANCES], ARGV, limits=Limits(), on_output=discard
                )
                return run.exit_code == 0

            base, ours = await _alternate(raw, _through(rig.service, targets), seconds, segments)
    return {
        "execs_per_s": rounded(ours.per_s),
        "failed": ours.failed,
        "baseline_execs_per_s": rounded(base.per_s),
    }


async def _run(quick: bool) -> Result:
    seconds, segments = (3.0, 1) if quick else (20.0, 4)
    main = await _in_process(seconds, segments)
    fc = await _via_fc_host(seconds / 2, max(1, segments // 2))
    audit = main["audit"]
    # ExecGate's own warm-up execs are not in the audit: only the measured ones are.
    complete = audit["intents"] == audit["outcomes"] == audit["exit_0"] == main["execs"]
    per_s = main["execs_per_s"]
    return result(
        NAME,
        execs_per_s=per_s,
        baseline_execs_per_s=main["baseline_execs_per_s"],
        ratio=round(main["baseline_execs_per_s"] / per_s, 3) if per_s else None,
        clients=CLIENTS,
        seconds=seconds,
        execs=main["execs"],
        failed=main["failed"],
        audit=audit,
        audit_complete=complete,
        provider="sandbox provider in-process, plain-subprocess instances",
        baseline="the provider alone (no policy, no audit), the same 50 clients",
        via_fc_host=fc,
        target=f">= {TARGET_PER_S:g} execs/s, every exec with intent + outcome rows",
        met=per_s >= TARGET_PER_S and complete and main["failed"] == 0,
    )


def run(quick: bool) -> Result:
    return asyncio.run(_run(quick))
