"""Reads: live instances and the audit log, each checked against the principal who asks."""

from __future__ import annotations

import dataclasses

from policies.errors import ExecNotFound, UnknownPrincipal
from policies.ports import AuditFilter, AuditStore, ExecRecord, VerifyReport
from policies.rules.model import Policy
from policies.service.decisions import AUDITOR_ROLE
from policies.service.pipeline import Pipeline
from policies.service.results import AuditSearch
from policies.types import AuditId, InstanceInfo, Principal


class Lookups:
    """Instance and audit look-ups."""

    def __init__(self, pipeline: Pipeline, audit: AuditStore) -> None:
        self._pipeline = pipeline
        self._audit = audit

    async def _roles(
        self, principal: Principal, policy: Policy
    ) -> tuple[Principal, frozenset[str]]:
        """Raises: UnknownPrincipal."""
        principal = await self._pipeline.principal(principal)
        roles = policy.roles_of(principal)
        if not roles:
            raise UnknownPrincipal()
        return principal, roles

    async def list_instances(
        self,
        principal: Principal,
        function: str,
        *,
        provider: str | None = None,
        qualifier: str | None = None,
    ) -> list[InstanceInfo]:
        """Live instances of ``function``, for any known principal.

        Raises: UnknownPrincipal, UnknownProvider and the provider's InstanceError
        subclasses.
        """
        await self._roles(principal, self._pipeline.policy())
        return await self._pipeline.provider(provider).list_instances(function, qualifier)

    async def audit_list(self, flt: AuditFilter) -> list[ExecRecord]:
        """Every matching record: for trusted local callers (the CLI on the host, which
        holds the database anyway)."""
        return await self._audit.list_execs(flt)

    async def audit_search(self, principal: Principal, flt: AuditFilter) -> AuditSearch:
        """Records ``principal`` may see: their own, or all for the auditor role. A
        filter asking a non-auditor for more is narrowed to them, and says so.

        Raises: UnknownPrincipal.
        """
        principal, roles = await self._roles(principal, self._pipeline.policy())
        narrowed_to = None
        if AUDITOR_ROLE not in roles:
            own = str(principal)
            if flt.principal != own:
                narrowed_to = own
            flt = dataclasses.replace(flt, principal=own)
        return AuditSearch(await self._audit.list_execs(flt), narrowed_to)

    async def audit_get(self, principal: Principal, audit_id: AuditId) -> ExecRecord:
        """One record, when it is ``principal``'s own or ``principal`` is an auditor.

        Raises: UnknownPrincipal, ExecNotFound (also for someone else's record).
        """
        principal, roles = await self._roles(principal, self._pipeline.policy())
        record = await self._audit.get_exec(audit_id)
        if AUDITOR_ROLE not in roles and record.intent.principal != str(principal):
            raise ExecNotFound(audit_id=audit_id)
        return record

    async def audit_verify(self) -> VerifyReport:
        return await self._audit.verify()
