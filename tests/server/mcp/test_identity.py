"""Who the MCP caller is: the stdio principal from config, bearer tokens by digest, and
the Host names /mcp accepts."""

from __future__ import annotations

import getpass

import pytest

from policies.errors import ConfigError
from server.mcp.auth import match_token, stdio_principal, token_sha256
from server.mcp.http import allowed_hosts
from server.settings import McpSettings, McpToken, ServerSettings, Settings

TOKENS = (
    McpToken(client="ci-assistant", sha256=token_sha256("ci-token")),
    McpToken(client="oncall-assistant", sha256=token_sha256("oncall-token").upper()),
)


@pytest.mark.parametrize(
    ("token", "client"),
    [
        ("ci-token", "ci-assistant"),
        ("oncall-token", "oncall-assistant"),
        ("ci-token ", None),
        ("", None),
        (token_sha256("ci-token"), None),
    ],
    ids=["first", "upper-case-digest", "trailing-space", "empty", "the-digest-itself"],
)
def test_bearer_token_maps_to_its_client_by_digest(token: str, client: str | None) -> None:
    assert match_token(token, TOKENS) == client


def test_stdio_principal_is_the_configured_client_or_the_os_user() -> None:
    assert str(stdio_principal(Settings(mcp=McpSettings(stdio_client="desk")))) == "mcp:desk"
    assert str(stdio_principal(Settings())) == f"mcp:{getpass.getuser()}"


@pytest.mark.parametrize("name", ["two words", "mcp:nested", "a/b", "-dash-first"])
def test_unusable_stdio_client_name_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        stdio_principal(Settings(mcp=McpSettings(stdio_client=name)))


@pytest.mark.parametrize(
    ("server", "configured", "accepted", "refused"),
    [
        (ServerSettings(), (), {"127.0.0.1:*", "localhost:*", "[::1]:*"}, {"10.0.0.5:*"}),
        (
            ServerSettings(host="10.0.0.5"),
            (),
            {"10.0.0.5:*", "10.0.0.5", "127.0.0.1:*"},
            {"0.0.0.0:*"},
        ),
        (
            ServerSettings(host="0.0.0.0", public_url="https://execgate.example.com"),
            ("ops.internal:*",),
            {"execgate.example.com", "execgate.example.com:*", "ops.internal:*"},
            {"0.0.0.0:*", "0.0.0.0"},
        ),
        (ServerSettings(host="::1"), (), {"[::1]:*"}, {"::1:*"}),
    ],
    ids=["loopback", "specific-address", "wildcard-with-public-url", "ipv6-loopback"],
)
def test_mcp_accepts_the_host_names_the_server_is_reached_by(
    server: ServerSettings, configured: tuple[str, ...], accepted: set[str], refused: set[str]
) -> None:
    hosts = set(allowed_hosts(Settings(server=server, mcp=McpSettings(allowed_hosts=configured))))
    assert accepted <= hosts
    assert not refused & hosts
