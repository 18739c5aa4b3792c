"""Builds an ExecService (and what it needs) from Settings. Configuration enters here once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.artifacts import LocalConfig, OssArtifactStore, S3ArtifactStore, S3Config
from policies.artifacts.anchors import Retention, bucket_anchors, local_anchors
from policies.audit import open_audit_store
from policies.audit.anchors import AnchorPublisher, AnchorStore
from policies.audit.checkpoint import start_checkpoint
from policies.audit.revision import SCHEMA_HEAD
from policies.errors import AuditUnavailable, ConfigError
from policies.instances.fc.credentials import Credentials
from policies.instances.fc.provider import FcEndpoint, FcProvider
from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner
from policies.instances.sandbox_provider import SandboxProvider
from policies.ports import ArtifactStore, AuditStore, InstanceProvider, OutputCallback
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from policies.tracing import Tracing
from policies.types import InstanceInfo, Limits, RunResult, Target
from server.artifact_store import open_artifact_store, store_config
from server.localstate import (
    CHECKPOINT_FILE,
    SIGNING_KEY_FILE,
    audit_signing_key,
    audit_traces,
    local_keys,
    read_address,
)
from server.settings import ProviderSettings, Settings
from server.telemetry import open_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def local_functions(settings: Settings) -> list[LocalFunction]:
    return [
        LocalFunction(
            name=f.name,
            env=dict(f.env),
            provisioned=f.provisioned,
            idle_release_seconds=f.idle_release_seconds,
            instance_concurrency=f.instance_concurrency,
            code_dir=f.code_dir,
            command=f.command,
        )
        for f in settings.local_host.functions
    ]


def build_manager(settings: Settings) -> InstanceManager:
    # Unsandboxed (mode "none"), these must stay unreadable to instance commands.
    protected = [Path(settings.source)] if settings.source != "defaults" else []
    if settings.database_url.startswith("sqlite"):
        protected.append(Path(settings.database_url.split("///", 1)[-1]))
    runner = SandboxRunner(mode=settings.local_host.sandbox, protected=protected)
    return InstanceManager(local_functions(settings), runner, settings.data_dir)


class LocalHostProvider:
    """An FC provider aimed at the local instance host, whose address is learnt lazily
    (the host may start after the CLI process does, and listens on a chosen port)."""

    def __init__(self, name: str, settings: Settings, url: Callable[[], str]) -> None:
        self.name = name
        self._settings = settings
        self._url = url
        self._inner: FcProvider | None = None

    def _provider(self) -> FcProvider:
        if self._inner is None:
            keys = local_keys(self._settings.data_dir)
            endpoint = FcEndpoint(
                account_id=self._settings.local_host.account_id,
                region=self._settings.local_host.region,
                endpoint=self._url(),
            )
            creds = Credentials(keys.access_key_id, keys.access_key_secret)
            self._inner = FcProvider(self.name, endpoint, creds)
        return self._inner

    async def list_instances(
        self, function: str, qualifier: str | None = None
    ) -> list[InstanceInfo]:
        return await self._provider().list_instances(function, qualifier)

    async def exec(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        return await self._provider().exec(
            target, argv, limits=limits, on_output=on_output, stdin=stdin
        )

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


def _fc_provider(name: str, cfg: ProviderSettings, settings: Settings) -> InstanceProvider:
    import os

    if cfg.endpoint == "local":
        data_dir = settings.data_dir
        return LocalHostProvider(name, settings, lambda: str(read_address(data_dir)["url"]))
    key_id = cfg.access_key_id.load(os.environ)
    secret = cfg.access_key_secret.load(os.environ)
    token = cfg.security_token.load(os.environ)
    if key_id is None or secret is None:
        raise ConfigError(
            f"provider {name!r} has no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or point the provider at key files"
        )
    if not cfg.account_id or not cfg.region:
        raise ConfigError(f"provider {name!r} needs account_id and region")
    endpoint = FcEndpoint(
        account_id=cfg.account_id,
        region=cfg.region,
        api_version=cfg.api_version,
        endpoint=cfg.endpoint,
        internal=cfg.internal,
        service=cfg.service,
        stdin_mode=cfg.stdin_mode,
    )
    creds = Credentials(
        key_id.get_secret_value(),
        secret.get_secret_value(),
        token.get_secret_value() if token else None,
    )
    return FcProvider(name, endpoint, creds)


@contextlib.asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    local_url: Callable[[], str] | None = None,
    manager: InstanceManager | None = None,
    audit: AuditStore | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[ExecService]:
    """An ExecService with its audit store and providers; closes them on exit.

    ``local_url`` overrides how FC providers with ``endpoint = "local"`` find the host
    (the server passes its own bound address). ``manager`` is the in-process instance
    manager for ``type = "sandbox"`` providers; one is created on demand otherwise.
    Unless ``audit`` is given, the audit database is prepared first
    (:func:`prepare_database`). Traces go where ``[tracing]`` says, or to
    ``tracer_provider`` when tracing is enabled and one is given.

    Raises: ConfigError, PolicyLoadError, AuditUnavailable.
    """
    async with (
        open_tracing(settings.tracing, tracer_provider) as tracing,
        _open_service(
            settings, tracing, local_url=local_url, manager=manager, audit=audit
        ) as service,
    ):
        yield service


@contextlib.asynccontextmanager
async def _open_service(
    settings: Settings,
    tracing: Tracing,
    *,
    local_url: Callable[[], str] | None,
    manager: InstanceManager | None,
    audit: AuditStore | None,
) -> AsyncIterator[ExecService]:
    holder = PolicyHolder(settings.policy_path)
    own_audit = audit is None
    anchors: AnchorStore | None = None
    if audit is None:
        # Every entry point (CLI, `serve`, `mcp`, `slack`) comes through here: one way to
        # prepare the database, or refuse before any key or file is made.
        await prepare_database(settings)
        anchors = open_anchor_store(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store: AuditStore = audit or await open_audit_store(
            settings.database_url,
            checkpoint_path=settings.data_dir / CHECKPOINT_FILE,
            checkpoint_key=audit_key(settings.data_dir),
            publish=None if anchors is None else AnchorPublisher(anchors),
            anchor_interval_s=settings.artifacts.anchor_interval_seconds,
        )
    except BaseException:
        if anchors is not None:
            await anchors.aclose()
        raise
    providers: dict[str, InstanceProvider] = {}
    own_manager: InstanceManager | None = None
    artifacts: ArtifactStore | None = None
    try:
        artifacts = open_artifact_store(settings, local_url=local_url)
        await store.mark_interrupted()
        for name, cfg in settings.providers.items():
            if cfg.type == "sandbox":
                if manager is None:
                    manager = own_manager = build_manager(settings)
                    await manager.start()
                providers[name] = SandboxProvider(name, manager)
            elif cfg.endpoint == "local" and local_url is not None:
                providers[name] = LocalHostProvider(name, settings, local_url)
            else:
                providers[name] = _fc_provider(name, cfg, settings)
        yield ExecService(
            policies=holder,
            audit=store,
            providers=providers,
            default_provider=settings.default_provider,
            spill_dir=settings.data_dir / "spill",
            artifacts=artifacts,
            link_ttl_seconds=settings.artifacts.link_ttl_seconds,
            artifact_prefix=settings.artifacts.prefix,
            session_idle_seconds=settings.session_idle_seconds,
            tracing=tracing,
            anchors=anchors,
        )
    finally:
        for provider in providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        if artifacts is not None:
            with contextlib.suppress(Exception):
                await artifacts.aclose()
        if own_manager is not None:
            await own_manager.aclose()
        if own_audit:
            await store.aclose()
        if anchors is not None:
            with contextlib.suppress(Exception):
                await anchors.aclose()


def open_anchor_store(settings: Settings) -> AnchorStore | None:
    """Where signed audit checkpoints are published: the artifact store's
    ``audit-anchors/`` (None when ``artifacts.anchors`` is off).

    Raises: ConfigError (as for the artifact store).
    """
    cfg = settings.artifacts
    if not cfg.anchors:
        return None
    config = store_config(settings)
    if isinstance(config, LocalConfig):
        return local_anchors(config.root)
    retention = None
    if cfg.anchor_retention_days is not None:
        retention = Retention(cfg.anchor_retention_days, cfg.anchor_lock_mode)
    bucket = S3ArtifactStore(config) if isinstance(config, S3Config) else OssArtifactStore(config)
    return bucket_anchors(bucket, cfg.prefix, retention)


async def database_missing(url: str) -> bool:
    """Whether the audit database is absent: no SQLite file (or an empty one), or a
    reachable PostgreSQL database with no schema. An unreachable server is not
    "missing" (opening the store reports it)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from policies.audit.db_engine import parse_url

    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        if name in ("", ":memory:"):
            return False
        return await asyncio.to_thread(_no_file, Path(name))
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            return not exists
    except (SQLAlchemyError, OSError):
        return False
    finally:
        await engine.dispose()


def _no_file(path: Path) -> bool:
    return not path.exists() or path.stat().st_size == 0


async def refuse_missing_database(settings: Settings) -> None:
    """Fail closed when the audit database is gone but this data directory shows a log
    was kept (its checkpoint or signing key): a deleted database must not silently
    become a fresh, empty one.

    Raises: AuditUnavailable.
    """
    traces = audit_traces(settings.data_dir)
    if traces and await database_missing(settings.database_url):
        raise AuditUnavailable(
            "the audit database is missing but its checkpoint or signing key exists "
            f"({', '.join(traces)} in the data directory); restore the database, or run "
            "`execgate db upgrade` to start a new, empty audit log",
            kind="database_missing",
        )


def audit_key(data_dir: Path) -> Ed25519PrivateKey:
    """The audit signing key; when it is created here, the new log's checkpoint (signed,
    vouching for no events yet) is begun with it, so that a signed log always has a
    checkpoint and a missing one always means it was deleted.

    Raises: ConfigError when the key cannot be read; OSError when the checkpoint cannot
    be written.
    """
    new = not (data_dir / SIGNING_KEY_FILE).exists()
    key = audit_signing_key(data_dir)
    if new:
        start_checkpoint(data_dir / CHECKPOINT_FILE, key)
    return key


def start_new_log(data_dir: Path) -> Path | None:
    """Start a new audit log deliberately: move the current checkpoint aside (kept,
    renamed) and begin a new one, signed with the same key; returns where the old
    checkpoint went (None when there was none)."""
    retired = retire_checkpoint(data_dir)
    start_checkpoint(data_dir / CHECKPOINT_FILE, audit_key(data_dir))
    return retired


def retire_checkpoint(data_dir: Path) -> Path | None:
    """Move the checkpoint of a log whose database is gone aside (kept, renamed), so
    a new log can be checkpointed; returns its new path."""
    path = data_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    retired = path.with_name(f"{path.name}.retired-{stamp}")
    path.replace(retired)
    return retired


async def prepare_database(settings: Settings, *, force: bool = False) -> None:
    """Bring the audit schema to head when configured to (the embedded default).

    A schema already at head costs one query; Alembic is only loaded to migrate.

    Without ``force``, a database that is gone while its checkpoint or key remains is
    refused, never re-created: only `execgate db upgrade` (``force``) creates it.

    Raises: AuditUnavailable when the database cannot be reached or is missing.
    """
    if not force:
        await refuse_missing_database(settings)
        if await _schema_revision(settings.database_url) == SCHEMA_HEAD:
            return
        if not settings.database.auto_upgrade:
            raise AuditUnavailable(
                "the audit database has no schema or an older one (database.auto_upgrade "
                "is off); run `execgate db upgrade`",
                kind="schema_missing",
            )
    from policies.audit import migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await migrate.upgrade(settings.database_url)


async def _schema_revision(url: str) -> str | None:
    """The schema revision, or None when there is none. Reads only: a SQLite file that
    does not exist is not created."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from policies.audit.db_engine import parse_url

    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        if name not in ("", ":memory:") and await asyncio.to_thread(_no_file, Path(name)):
            return None
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
            return str(row[0]) if row else None
    except (SQLAlchemyError, OSError):
        return None  # missing table or database: let the migration run and report
    finally:
        await engine.dispose()
