"""``FcProvider``: the InstanceProvider for Function Compute (the cloud, or any
FC-compatible server such as ExecGate's local instance host)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from policies.instances.fc.client import FcClient, InvokeResult
from policies.instances.fc.credentials import Credentials
from policies.instances.fc.endpoint import FcEndpoint
from policies.ports import OutputCallback
from policies.types import InstanceInfo, Limits, RunResult, Target

__all__ = ["FcEndpoint", "FcProvider"]


class FcProvider:
    """Lists and execs into the live instances of one FC account and region.

    One HTTP client serves every call of the provider; close it with :meth:`aclose`.
    """

    def __init__(self, name: str, endpoint: FcEndpoint, credentials: Credentials) -> None:
        self.name = name
        self.endpoint = endpoint
        self._client = FcClient(endpoint, credentials, provider_name=name)

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        """Live instances of ``function``.

        Raises: ProviderUnavailable, ProviderAuthError, ProviderAccessDenied.
        """
        return await self._client.list_instances(function, qualifier)

    async def exec(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv on ``target``'s instance; the exit status comes from the wrapper trailer.

        Raises: CommandRejected, InstanceNotRunning, ProviderAuthError,
        ProviderAccessDenied, ProviderUnavailable.
        """
        return await self._client.exec(
            target.function,
            target.instance,
            argv,
            qualifier=target.qualifier,
            limits=limits,
            on_output=on_output,
            stdin=stdin,
        )

    async def invoke(
        self, function: str, payload: bytes = b"", qualifier: str | None = None
    ) -> InvokeResult:
        """Invoke ``function`` once (this starts an on-demand instance when none is live).

        Raises: ProviderUnavailable, ProviderAuthError, ProviderAccessDenied.
        """
        return await self._client.invoke(function, payload, qualifier)

    async def aclose(self) -> None:
        await self._client.aclose()
