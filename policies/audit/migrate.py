"""Schema migrations for the audit database, driven from code.

The Alembic configuration is built here, with ``script_location`` pointing at the
installed ``migrations`` package, so ``execgate db upgrade`` works from a checkout and
from an installed wheel alike. ``alembic.ini`` at the repository root is only for
people running ``alembic`` by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from policies.audit.db_engine import create_engine, parse_url
from policies.audit.errors import audit_errors
from policies.errors import ConfigError

# env.py reads the database URL from here rather than from the ini text, where '%'
# in a password would be taken for interpolation.
URL_ATTRIBUTE = "execgate_url"


def script_location() -> str:
    """The directory of the ``migrations`` package."""
    return str(resources.files("migrations"))


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for ExecGate's migrations against ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    if url is not None:
        cfg.attributes[URL_ATTRIBUTE] = url
    return cfg


def head_revision() -> str:
    """The newest schema revision this ExecGate ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _run(operation: str, url: str, fn: Callable[[Config, str], None], revision: str) -> None:
    parse_url(url)
    cfg = alembic_config(url)
    with audit_errors(operation, f"the audit database could not be {operation}d"):
        try:
            await asyncio.to_thread(fn, cfg, revision)
        except CommandError as exc:
            raise ConfigError(f"cannot {operation} the audit schema to {revision!r}") from exc


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``.

    Raises: ConfigError for an unsupported URL or unknown revision; AuditUnavailable when
    the database fails.
    """
    await _run("upgrade", url, command.upgrade, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops every table).

    Raises: ConfigError for an unsupported URL or unknown revision; AuditUnavailable when
    the database fails.
    """
    await _run("downgrade", url, command.downgrade, revision)


async def current(url: str) -> str | None:
    """The schema revision of the database at ``url``; None when it has none.

    Raises: ConfigError for an unsupported URL; AuditUnavailable when the database fails.
    """
    engine = create_engine(url)
    try:
        with audit_errors("read schema revision", "the audit database cannot be reached"):
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
    finally:
        await engine.dispose()
