"""`execgate console link [--as local:NAME]`: a one-time sign-in link to the review
console of the running server."""

from __future__ import annotations

import argparse

from policies.errors import ConfigError
from policies.types import Principal
from server.console.signin import console_key, make_link
from server.localstate import read_address
from server.settings import Settings


def console_link(settings: Settings, principal: Principal) -> str:
    """A sign-in link for ``principal`` to the server recorded in the data directory.

    Raises: ProviderUnavailable when no server is running; ConfigError.
    """
    base = settings.server.public_url or str(read_address(settings.data_dir)["url"])
    return make_link(console_key(settings.data_dir), base, str(principal))


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    """Raises: ConfigError (another principal without root), ProviderUnavailable."""
    from server.cli.principal import cli_principal

    if args.as_principal:
        settings = settings.model_copy(
            update={"cli": settings.cli.model_copy(update={"principal": args.as_principal})}
        )
    try:
        principal = cli_principal(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(console_link(settings, principal))
    return 0
