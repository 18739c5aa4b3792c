"""The ``sandbox`` provider: ExecGate's InstanceProvider over local instances."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from policies.instances.local import InstanceManager
from policies.ports import OutputCallback
from policies.types import InstanceInfo, Limits, RunResult, Target

PROVIDER_TYPE = "sandbox"


class SandboxProvider:
    """Lists and execs on the instances of an :class:`InstanceManager` directly.

    The manager is owned (started and closed) by whoever created it, usually the local
    instance host, and may be shared with other users; :meth:`aclose` leaves it running.
    """

    def __init__(self, name: str, manager: InstanceManager) -> None:
        self.name = name
        self._manager = manager

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        """Live instances of ``function``; every local instance serves every qualifier.

        Raises: UnknownFunction (an InstanceError).
        """
        return self._manager.list(function, qualifier=qualifier, provider=self.name)

    async def exec(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv on ``target.instance``; see :meth:`InstanceManager.exec`.

        Raises: UnknownFunction, InstanceNotRunning, ProviderUnavailable, CommandRejected.
        """
        return await self._manager.exec(
            target.function,
            target.instance,
            argv,
            limits=limits,
            on_output=on_output,
            stdin=stdin,
        )

    async def aclose(self) -> None:
        """Nothing to release: the manager belongs to whoever started it."""
