"""Who the CLI acts as."""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING

from policies.errors import ConfigError
from policies.types import Principal, PrincipalKind

if TYPE_CHECKING:
    from server.settings import Settings


def cli_principal(settings: Settings) -> Principal:
    """The local user running the CLI: the process's effective OS user.

    Environment variables such as ``USER`` are not trusted. ``cli.principal`` may name
    another local user only when the CLI runs as root: root owns the audit database and
    the keys anyway, so this adds no power, and it lets one machine play several people
    (tests, demos, break-glass). Anyone else naming another principal is refused.

    Raises: ConfigError.
    """
    return principal_for(os.geteuid(), settings.cli.principal)


def principal_for(uid: int, requested: str | None) -> Principal:
    """The principal of OS user ``uid`` asking to act as ``requested`` (``cli.principal``;
    empty: itself). Used for this process and for a peer of the CLI relay socket, whose
    uid the kernel reports.

    Raises: ConfigError.
    """
    own = Principal(PrincipalKind.LOCAL, pwd.getpwuid(uid).pw_name)
    if not requested:
        return own
    try:
        chosen = Principal.parse(requested)
    except ValueError as exc:
        raise ConfigError(f"cli.principal: {exc}") from exc
    if chosen == own:
        return own
    if chosen.kind is not PrincipalKind.LOCAL:
        raise ConfigError("cli.principal must be a local user (local:NAME)")
    if uid != 0:
        raise ConfigError(
            f"cli.principal names {chosen}, but this CLI runs as {own}; only root may act "
            "as another local user"
        )
    return chosen
