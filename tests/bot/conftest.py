"""Fixtures for the Slack tests live in tests.bot.rig (tests/server imports them too)."""

from tests.bot.rig import fake_slack, fresh_rig, rig, shared_rig

__all__ = ["fake_slack", "fresh_rig", "rig", "shared_rig"]
