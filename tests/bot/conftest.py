"""Fixtures for the Slack tests live in tests.bot.rig (tests/server imports them too)."""

from tests.bot.rig import fake_slack, rig

__all__ = ["fake_slack", "rig"]
