"""Who a Slack user is to ExecGate: a Slack principal with the user groups that matter.

The policy names Slack users by id and user groups by id (``S…``). The groups a user is
in are read through the Web API (``usergroups.users.list``, or ``usergroups.list`` for
a role that admits "any group") and cached for ``ttl`` seconds; ``users.info`` refuses
deactivated accounts and bots. When Slack cannot be asked, a user simply has fewer
groups: the policy then grants less, never more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from policies.errors import UnknownPrincipal
from policies.rules.model import ANY, Policy
from policies.types import Principal, PrincipalKind

logger = logging.getLogger(__name__)

_FAILURES = (SlackApiError, ClientError, TimeoutError)
# users.list pages read (of 200 members each) when resolving a name.
_USERS_LIST_PAGES = 50


def policy_group_ids(policy: Policy) -> frozenset[str]:
    """The Slack user-group ids the policy's roles mention (``*`` included)."""
    return frozenset(group for role in policy.roles.values() for group in role.slack_groups)


def _error_code(exc: SlackApiError) -> str | None:
    """Slack's error code, when its answer was JSON at all."""
    data = getattr(exc.response, "data", None)
    return str(data.get("error")) if isinstance(data, dict) else None


class Directory:
    """Resolves Slack user ids to principals, with a TTL cache."""

    def __init__(
        self,
        client: AsyncWebClient,
        group_ids: Callable[[], Iterable[str]],
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._group_ids = group_ids
        self._ttl = ttl
        self._clock = clock
        self._users: dict[str, tuple[float, str | None]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._name_cache: tuple[float, dict[str, str]] | None = None

    async def principal(self, user_id: str) -> Principal:
        """The principal for ``user_id``, groups resolved.

        Raises: UnknownPrincipal when Slack says the account is gone or is a bot.
        """
        refusal = await self._refusal(user_id)
        if refusal is not None:
            raise UnknownPrincipal(refusal)
        wanted = set(self._group_ids())
        groups: set[str] = set()
        if ANY in wanted:
            wanted.discard(ANY)
            groups |= await self._all_groups_of(user_id)
        if wanted:
            members = await asyncio.gather(*(self._members(g) for g in sorted(wanted)))
            groups |= {
                g for g, users in zip(sorted(wanted), members, strict=True) if user_id in users
            }
        return Principal(PrincipalKind.SLACK, user_id, frozenset(groups))

    async def user_id_by_name(self, name: str) -> str | None:
        """The id of the active user whose Slack name or display name is ``name``
        (case-insensitive), from ``users.list`` (cached for the TTL); None when no one
        (or more than one person) has it, or Slack cannot be asked.
        """
        names = await self._names()
        return names.get(name.casefold())

    async def _names(self) -> dict[str, str]:
        now = self._clock()
        if self._name_cache is not None and self._name_cache[0] > now:
            return self._name_cache[1]
        found: dict[str, set[str]] = {}
        cursor: str | None = None
        try:
            for _ in range(_USERS_LIST_PAGES):
                response = await self._client.users_list(cursor=cursor, limit=200)
                for member in response.get("members") or ():
                    if member.get("deleted") or member.get("is_bot"):
                        continue
                    profile = member.get("profile") or {}
                    for value in (member.get("name"), profile.get("display_name")):
                        if value:
                            found.setdefault(str(value).casefold(), set()).add(str(member["id"]))
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if cursor is None:
                    break
        except _FAILURES:
            logger.warning("users.list failed", exc_info=True)
            return {}  # not cached: ask again next time
        # A name two people share names no one.
        names = {name: next(iter(ids)) for name, ids in found.items() if len(ids) == 1}
        self._name_cache = (now + self._ttl, names)
        return names

    async def _refusal(self, user_id: str) -> str | None:
        now = self._clock()
        cached = self._users.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        refusal: str | None = None
        try:
            response = await self._client.users_info(user=user_id)
            user = response.get("user") or {}
            if user.get("deleted"):
                refusal = "your Slack account is deactivated"
            elif user.get("is_bot") or user.get("is_app_user"):
                refusal = "bots and apps cannot run commands through ExecGate"
        except SlackApiError as exc:
            if _error_code(exc) in ("user_not_found", "user_not_visible"):
                refusal = "ExecGate cannot see your Slack account"
            else:
                logger.warning("users.info failed; going by user id", exc_info=True)
                return None  # not cached: ask again next time
        except (ClientError, TimeoutError):
            logger.warning("users.info failed; going by user id", exc_info=True)
            return None
        self._users[user_id] = (now + self._ttl, refusal)
        return refusal

    async def _members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        cached = self._groups.get(group_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except _FAILURES:
            logger.warning("usergroups.users.list failed", exc_info=True, extra={"group": group_id})
            return frozenset()
        members = frozenset(str(u) for u in response.get("users") or ())
        self._groups[group_id] = (now + self._ttl, members)
        return members

    async def _all_groups_of(self, user_id: str) -> set[str]:
        now = self._clock()
        cached = self._groups.get(ANY)
        if cached is None or cached[0] <= now:
            try:
                response = await self._client.usergroups_list(include_users=True)
            except _FAILURES:
                logger.warning("usergroups.list failed", exc_info=True)
                return set()
            # Keyed "group:user" so one cache entry holds every membership.
            pairs = frozenset(
                f"{group.get('id')}:{user}"
                for group in response.get("usergroups") or ()
                for user in group.get("users") or ()
            )
            cached = (now + self._ttl, pairs)
            self._groups[ANY] = cached
        return {pair.split(":", 1)[0] for pair in cached[1] if pair.endswith(f":{user_id}")}
