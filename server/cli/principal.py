"""Who the CLI acts as."""

from __future__ import annotations

import os
import pwd

from policies.errors import ConfigError
from policies.types import Principal, PrincipalKind
from server.settings import Settings


def cli_principal(settings: Settings) -> Principal:
    """The local user running the CLI: the process's effective OS user.

    Environment variables such as ``USER`` are not trusted. ``cli.principal`` may name
    another local user only when the CLI runs as root: root owns the audit database and
    the keys anyway, so this adds no power, and it lets one machine play several people
    (tests, demos, break-glass). Anyone else naming another principal is refused.

    Raises: ConfigError.
    """
    own = Principal(PrincipalKind.LOCAL, pwd.getpwuid(os.geteuid()).pw_name)
    if not settings.cli.principal:
        return own
    try:
        chosen = Principal.parse(settings.cli.principal)
    except ValueError as exc:
        raise ConfigError(f"cli.principal: {exc}") from exc
    if chosen == own:
        return own
    if chosen.kind is not PrincipalKind.LOCAL:
        raise ConfigError("cli.principal must be a local user (local:NAME)")
    if os.geteuid() != 0:
        raise ConfigError(
            f"cli.principal names {chosen}, but this CLI runs as {own}; only root may act "
            "as another local user"
        )
    return chosen
