"""One collect on an instance: fetch, follow a symlink once, and say how it ended.

``fetch`` runs the transfer (``policies.collect.transfer``). When the path turns out to
be a symlink, ``follow`` (the service's policy check) decides whether its real path may
be read; if so it is fetched in a second exec, which must find it unchanged. Refusals
and cut transfers become a ``Refusal``; nothing is stored for them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from policies.collect.protocol import Refusal, content_type_for, refusal_for
from policies.collect.transfer import Transfer, transfer
from policies.ports import ArtifactInfo, ArtifactStore, ExecOutcome, ExecStatus, InstanceProvider
from policies.types import Decision, Target

Follow = Callable[[str], str | Refusal]


@dataclass(frozen=True, slots=True)
class Fetched:
    """How a collect ended: ``info`` when the whole file was stored, else ``refusal``."""

    path: str  # what was read: the real path when a symlink was followed
    info: ArtifactInfo | None
    refusal: Refusal | None
    status: ExecStatus
    exit_code: int | None
    stdout_bytes: int
    stderr_bytes: int

    @property
    def summary(self) -> str:
        info = self.info
        return f"collected {self.path}: {info.size} bytes, sha256 {info.sha256}" if info else ""

    def outcome(
        self, *, started: dt.datetime, ended: dt.datetime, approvers: tuple[str, ...]
    ) -> ExecOutcome:
        """The audit outcome row: the artifact's key, size, digest and content type."""
        info, refusal = self.info, self.refusal
        return ExecOutcome(
            status=self.status,
            exit_code=self.exit_code,
            started_at=started,
            ended_at=ended,
            stdout_bytes=self.stdout_bytes,
            stderr_bytes=self.stderr_bytes,
            output_sha256=info.sha256 if info else None,
            artifact_keys=(info.key,) if info else (),
            approvers=approvers,
            error=refusal.code if refusal else None,
            stdout_text=self.summary,
            stderr_text=refusal.message if refusal else "",
            artifacts=(info,) if info else (),
        )


async def fetch(
    provider: InstanceProvider,
    store: ArtifactStore,
    target: Target,
    path: str,
    *,
    decision: Decision,
    key: str,
    follow: Follow,
) -> Fetched:
    """Fetch ``path`` (allowed by ``decision``) into ``store`` under ``key``.

    Raises: InstanceError from the provider, ArtifactError from the store.
    """
    cap = decision.limits.max_output_bytes

    async def once(where: str) -> Transfer:
        return await transfer(
            provider,
            target,
            where,
            max_bytes=cap,
            limits=decision.limits,
            store=store,
            key=key,
            content_type=content_type_for(path),
        )

    current, refusal = path, None
    result = await once(path)
    if result.resolved is not None:
        followed = follow(result.resolved)
        if isinstance(followed, Refusal):
            refusal = followed
        else:
            current = followed
            result = await once(current)
            if result.resolved is not None:
                refusal = Refusal("changed", f"{path} changed while it was collected")
    if refusal is None and result.refused is not None:
        refused = result.refused
        refusal = refusal_for(
            refused.code, current, size=refused.size, cap=cap, rule=decision.rule_id
        )
    if refusal is None and result.failure is not None:
        refusal = _failure(result.failure, current, decision)
    run = result.run
    status = ExecStatus.TIMEOUT if result.failure == "timeout" else ExecStatus.COMPLETED
    if run is None or (run.exit_code is None and status is not ExecStatus.TIMEOUT):
        status = ExecStatus.FAILED
    return Fetched(
        path=current,
        info=result.info if refusal is None else None,
        refusal=refusal,
        status=status,
        exit_code=run.exit_code if run else None,
        stdout_bytes=result.stdout_bytes,
        stderr_bytes=result.stderr_bytes,
    )


def _failure(failure: str, path: str, decision: Decision) -> Refusal:
    if failure == "timeout":
        return Refusal(
            "timeout",
            f"collecting {path} hit the {decision.limits.timeout:g}s timeout of rule "
            f"{decision.rule_id}; nothing was stored",
        )
    if failure == "changed":
        return Refusal(
            "changed",
            f"{path} changed while it was read; nothing was stored. Collect it again once "
            "whatever writes it has finished",
        )
    return Refusal(
        "transfer_failed", f"the transfer of {path} was cut before the end; nothing was stored"
    )
