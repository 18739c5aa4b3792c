"""Slack users to principals: groups through the Web API, cached; gone accounts refused."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.dedupe import RecentKeys, command_key, event_key
from bot.directory import Directory
from policies.errors import UnknownPrincipal
from policies.types import Principal, PrincipalKind
from tests.bot.fake_slack import FakeSlack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _directory(fake: FakeSlack, clock: Clock, groups: tuple[str, ...]) -> Directory:
    client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
    return Directory(client, lambda: groups, ttl=60.0, clock=clock)


async def test_groups_named_by_the_policy_are_resolved_and_cached_for_the_ttl(
    fake_slack: FakeSlack,
) -> None:
    clock = Clock()
    directory = _directory(fake_slack, clock, ("SAPPROVERS", "SOPS"))
    carol = await directory.principal("UCAROL")
    assert carol == Principal(PrincipalKind.SLACK, "UCAROL", frozenset({"SAPPROVERS"}))
    await directory.principal("UCAROL")
    assert len(fake_slack.of("usergroups.users.list")) == 2  # one per group, then cached
    fake_slack.groups["SOPS"].append("UCAROL")
    clock.now += 61
    assert (await directory.principal("UCAROL")).groups == {"SAPPROVERS", "SOPS"}
    assert len(fake_slack.of("usergroups.users.list")) == 4


async def test_any_group_wildcard_reads_every_group_once(fake_slack: FakeSlack) -> None:
    directory = _directory(fake_slack, Clock(), ("*",))
    assert (await directory.principal("UERIN")).groups == {"SOPS"}
    assert (await directory.principal("UCAROL")).groups == {"SAPPROVERS"}
    assert len(fake_slack.of("usergroups.list")) == 1


@pytest.mark.parametrize("user", ["UGHOST", "UMISSING"], ids=["deactivated", "not-found"])
async def test_accounts_slack_does_not_vouch_for_are_refused(
    fake_slack: FakeSlack, user: str
) -> None:
    directory = _directory(fake_slack, Clock(), ())
    with pytest.raises(UnknownPrincipal):
        await directory.principal(user)


async def test_when_slack_cannot_be_asked_the_user_has_no_groups(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=f"{fake_slack.url}/nowhere/")
    directory = Directory(client, lambda: ("SOPS",), ttl=60.0)
    assert await directory.principal("UERIN") == Principal(PrincipalKind.SLACK, "UERIN")


def test_a_delivery_key_is_seen_once_within_its_window() -> None:
    clock = Clock()
    recent = RecentKeys(ttl=10.0, max_size=3, clock=clock)
    assert recent.first_time("a") and not recent.first_time("a")
    clock.now += 11
    assert recent.first_time("a")
    for key in ("b", "c", "d"):
        assert recent.first_time(key)
    assert recent.first_time("a")  # pushed out by size


def test_delivery_keys_come_from_trigger_and_event_ids() -> None:
    assert command_key({"trigger_id": "t1", "text": "x"}) == "slack:cmd:t1"
    assert command_key({"text": "x"}) == command_key({"text": "x"})
    assert command_key({"text": "x"}) != command_key({"text": "y"})
    assert event_key({"event_id": "Ev1"}) == "slack:event:Ev1"
