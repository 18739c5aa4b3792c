"""Alembic environment for ExecGate's audit database (async engines).

The database URL comes from, in order: the URL ExecGate's migrate module passes in,
``alembic -x url=...``, then ``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from policies.audit.db_engine import create_engine, parse_url
from policies.audit.migrate import URL_ATTRIBUTE
from policies.audit.tables import in_metadata, metadata

config = context.config

if config.config_file_name is not None and URL_ATTRIBUTE not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get(URL_ATTRIBUTE) or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    if not url:
        url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set sqlalchemy.url")
    return str(url)


def run_migrations_offline() -> None:
    """Emit SQL for the migrations instead of running them."""
    context.configure(
        url=parse_url(_url()),
        target_metadata=metadata,
        include_name=in_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    # Batch mode lets later migrations alter SQLite tables (copy-and-move).
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=in_metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
