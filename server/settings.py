"""ExecGate's configuration: read once, from one TOML file plus ``EXECGATE_*`` overrides.

Resolution order (later wins): embedded defaults, the config file (``--config``, else
``$EXECGATE_CONFIG``, else ``./execgate.toml`` when present), environment overrides;
``execgate serve --host/--port`` win over all three for the address they name.
Environment overrides address any key with ``__`` between levels, e.g.
``EXECGATE_DATABASE__URL`` or ``EXECGATE_SERVER__PORT``; ``EXECGATE_DATABASE_URL`` is
accepted as a shortcut. Lists and tables are written as JSON.

Only :func:`load_settings` reads files and the environment: a :class:`Settings` built in
code holds what it was given and the defaults, nothing else.

Secrets never live in the file itself: a secret setting names an environment variable
(``*_env``) or a file (``*_file``) to read it from, and the loaded value is a
``SecretStr`` whose repr is masked.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from policies.errors import ConfigError

ENV_PREFIX = "EXECGATE_"
DEFAULT_CONFIG_NAME = "execgate.toml"
MASK = "********"
# Shorter names kept for the settings people set most often.
_ENV_SHORTCUTS = {"EXECGATE_DATABASE_URL": "EXECGATE_DATABASE__URL"}

DEMO_ENV: dict[str, str] = {
    "APP_ENV": "demo",
    "LOG_LEVEL": "info",
    "DATABASE_HOST": "10.0.0.12",
    # A fake credential set shaped like the STS credentials FC injects into every
    # instance, so a new user sees redaction the first time they run `env`.
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tDemoKeyNotReal9x7Q",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "dEmOsEcReTnOtReAl0123456789abcd",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS" + "DemoStsTokenNotReal" * 4,
    "DB_PASSWORD": "hunter2-demo-password",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Model):
    """Where a secret comes from: an environment variable or a file."""

    env: str | None = None
    file: Path | None = None

    def load(self, environ: Mapping[str, str]) -> SecretStr | None:
        """The secret, from the environment variable when set, else from the file.

        Raises: ConfigError when the file is named but cannot be read.
        """
        if self.env and environ.get(self.env):
            return SecretStr(environ[self.env])
        if self.file is not None:
            try:
                return SecretStr(self.file.read_text().strip())
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}") from exc
        return None


class DatabaseSettings(_Model):
    # Empty: SQLite under data_dir. Out of repr: the URL may carry a password.
    url: str = Field(default="", repr=False)
    # Migrate to the latest schema on start. Production deployments that run
    # `execgate db upgrade` as a release step may turn this off.
    auto_upgrade: bool = True


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    public_url: str = ""  # how links to this server are written; empty: http://host:port


class CliSettings(_Model):
    principal: str = ""  # empty: local:<OS user name>


class LocalFunctionSettings(_Model):
    name: str
    # Out of repr: a function's environment may hold its secrets.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    provisioned: int = Field(default=1, ge=0, le=64)
    idle_release_seconds: float = Field(default=300.0, gt=0)
    instance_concurrency: int = Field(default=1, ge=1, le=1000)
    code_dir: Path | None = None
    # The function's process (FC custom-runtime style), run in every instance; empty: an
    # idle process. It takes invocations as HTTP on /run/fc/invoke.sock.
    command: tuple[str, ...] = ()


# The demo function's code, shipped in the repository.
DEMO_API_CODE = Path(__file__).resolve().parents[1] / "functions" / "demo_api"


class LocalHostSettings(_Model):
    """The FC-compatible local instance host that `execgate serve` runs."""

    enabled: bool = True
    account_id: str = "1000000000000000"
    region: str = "local"
    # "auto"/"bwrap": bubblewrap, required (no fallback). "none": explicitly unsandboxed
    # (root only; commands run as nobody); "subprocess" is its old name.
    sandbox: Literal["auto", "bwrap", "none", "subprocess"] = "auto"
    functions: tuple[LocalFunctionSettings, ...] = (
        LocalFunctionSettings(
            name="demo-api",
            env=DEMO_ENV,
            provisioned=1,
            # One asyncio loop serves many open invocations (FC allows up to 200 per
            # instance); an on-demand instance starts only when that many are open.
            instance_concurrency=200,
            code_dir=DEMO_API_CODE,
            command=("python3", "/code/server.py"),
        ),
        LocalFunctionSettings(
            name="demo-worker",
            env={"APP_ENV": "demo", "QUEUE": "orders"},
            provisioned=0,
            idle_release_seconds=120.0,
        ),
    )


class ProviderSettings(_Model):
    """One configured provider. ``type = "fc"`` talks the FC API (to the cloud, or to
    the local host when ``endpoint = "local"``); ``type = "sandbox"`` runs the local
    sandboxes in-process without the FC wire protocol."""

    type: Literal["fc", "sandbox"] = "fc"
    account_id: str = ""
    region: str = ""
    api_version: Literal["2023-03-30", "2016-08-15"] = "2023-03-30"
    service: str | None = None  # FC 2.0 only
    endpoint: str | None = None  # "local", an http(s) base URL, or None for the cloud
    internal: bool = False
    stdin_mode: Literal["binary", "text"] = "binary"
    access_key_id: SecretRef = SecretRef(env="ALIBABA_CLOUD_ACCESS_KEY_ID")
    access_key_secret: SecretRef = SecretRef(env="ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    security_token: SecretRef = SecretRef(env="ALIBABA_CLOUD_SECURITY_TOKEN")


class ArtifactSettings(_Model):
    """Where large output and collected files go, and how long their links last.

    ``local``: files under ``dir``, linked through `execgate serve` (``server.public_url``
    or its bound address) with HMAC-signed, expiring URLs; the signing key is generated
    in the data directory unless ``signing_key`` names one. ``s3``/``oss``: ``bucket``
    (+ ``region``, ``endpoint_url``, ``prefix``); credentials from the key refs below,
    else the SDK's standard chain (AWS: env, profile, instance role; OSS: the
    ``ALIBABA_CLOUD_*`` variables).
    """

    store: Literal["local", "s3", "oss"] = "local"
    dir: Path | None = None  # local store; empty: data_dir/artifacts
    link_ttl_seconds: float = Field(default=3600.0, gt=0)
    signing_key: SecretRef = SecretRef(env="EXECGATE_ARTIFACT_SIGNING_KEY")
    retention_days: float | None = Field(default=None, gt=0)  # local store clean-up
    bucket: str = ""
    region: str = ""
    endpoint_url: str = ""  # empty: the provider's public endpoint for the region
    prefix: str = ""  # prepended to every key, e.g. "execgate/"
    access_key_id: SecretRef = SecretRef()
    access_key_secret: SecretRef = SecretRef()
    security_token: SecretRef = SecretRef()
    path_style: bool = False  # path-style bucket addressing (MinIO, test servers)
    oss_signature_version: Literal["v4", "v1"] = "v4"
    part_size_bytes: int = Field(default=8 << 20, ge=5 << 20, le=1 << 30)
    # Signed audit checkpoints are also published here (under "audit-anchors/"), at
    # most every anchor_interval_seconds; S3 objects get an Object Lock retention of
    # anchor_retention_days when set (the bucket needs Object Lock enabled).
    anchors: bool = True
    anchor_interval_seconds: float = Field(default=60.0, gt=0)
    anchor_retention_days: float | None = Field(default=None, gt=0)
    anchor_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"


class OutputSettings(_Model):
    slack_inline_chars: int = Field(default=3000, ge=200)
    mcp_inline_bytes: int = Field(default=16 * 1024, ge=512)
    cli_json_inline_bytes: int = Field(default=64 * 1024, ge=512)


class SlackSettings(_Model):
    signing_secret: SecretRef = SecretRef(env="EXECGATE_SLACK_SIGNING_SECRET")
    bot_token: SecretRef = SecretRef(env="EXECGATE_SLACK_BOT_TOKEN")
    app_token: SecretRef = SecretRef(env="EXECGATE_SLACK_APP_TOKEN")
    approvals_channel: str = ""
    api_base_url: str = ""  # empty: Slack's own
    command: str = "/exec"  # the slash command, as named in the app manifest
    directory_ttl_seconds: float = Field(default=300.0, gt=0)  # user-group cache
    # Attach the full scrubbed output as a file when the inline view omitted some.
    upload_full_output: bool = True


class McpToken(_Model):
    client: str  # the MCP client name the policy refers to
    sha256: str  # hex sha256 of the bearer token; the token itself is never stored
    # Only the tools that change nothing: list_instances, explain, approval_status,
    # audit_search.
    read_only: bool = False

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower()):
            raise ValueError("sha256 must be 64 hex characters")
        return value.lower()


class McpSettings(_Model):
    stdio_client: str = ""  # empty: the local OS user name
    tokens: tuple[McpToken, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    # Each request stands alone (no MCP session held in one process's memory), so
    # requests may land on any replica behind a load balancer. Progress notifications
    # still travel on the response stream of the request that asked.
    stateless_http: bool = True


class ReplicaSettings(_Model):
    """How `execgate serve` replicas sharing one database tell a dead one from a slow one:
    each renews a lease every ``heartbeat_seconds``; the RUNNING execs of a replica whose
    lease went ``lease_ttl_seconds`` without renewal are marked interrupted by another
    (so within lease_ttl_seconds + heartbeat_seconds of its death)."""

    lease_ttl_seconds: float = Field(default=20.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _beat_within_lease(self) -> ReplicaSettings:
        if self.heartbeat_seconds * 2 > self.lease_ttl_seconds:
            raise ValueError("replica.heartbeat_seconds must be at most half the lease TTL")
        return self


class OidcSettings(_Model):
    """OpenID Connect sign-in for the review console (empty issuer: off).

    For "Sign in with Slack": issuer ``https://slack.com``, the claim
    ``https://slack.com/user_id`` and kind ``slack``, so a Slack user signs in as the
    ``slack:U...`` principal the policy names.
    """

    issuer: str = ""
    client_id: str = ""
    client_secret: SecretRef = SecretRef(env="EXECGATE_CONSOLE_OIDC_CLIENT_SECRET")
    scope: str = "openid profile"
    principal_kind: Literal["slack", "local"] = "slack"
    principal_claim: str = "https://slack.com/user_id"  # falls back to "sub"
    label: str = "Sign in with Slack"


class ConsoleSettings(_Model):
    """The audit review console at /console."""

    enabled: bool = True
    link_ttl_seconds: float = Field(default=900.0, gt=0)  # one-time sign-in links
    session_hours: float = Field(default=12.0, gt=0)
    oidc: OidcSettings = OidcSettings()


class LoggingSettings(_Model):
    level: str = ""  # empty: INFO for `serve`, WARNING for one-shot CLI commands
    format: Literal["auto", "json", "text"] = "auto"


class TracingSettings(_Model):
    """OpenTelemetry traces of every request (needs the ``otel`` extra): off by default.

    ``otlp`` sends spans over OTLP/HTTP to ``endpoint`` (empty: the standard
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables,
    else ``http://localhost:4318/v1/traces``; ``OTEL_EXPORTER_OTLP_HEADERS`` is honoured
    for a collector that wants a key); ``console`` writes them to stderr.
    """

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str = ""  # a full traces URL, e.g. http://otel-collector:4318/v1/traces
    service_name: str = Field(default="execgate", min_length=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__"
    )

    data_dir: Path = Path(".execgate")
    policy: Path | None = None  # empty: the built-in policies/default.yaml
    default_provider: str = "local"
    # Conversational sessions (MCP, Slack threads) end after this long without commands;
    # an open exec keeps a serverless instance active and billed.
    session_idle_seconds: float = Field(default=600.0, gt=0)
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    cli: CliSettings = CliSettings()
    local_host: LocalHostSettings = LocalHostSettings()
    providers: dict[str, ProviderSettings] = Field(
        default_factory=lambda: {"local": ProviderSettings(type="fc", endpoint="local")}
    )
    artifacts: ArtifactSettings = ArtifactSettings()
    output: OutputSettings = OutputSettings()
    slack: SlackSettings = SlackSettings()
    mcp: McpSettings = McpSettings()
    console: ConsoleSettings = ConsoleSettings()
    logging: LoggingSettings = LoggingSettings()
    replica: ReplicaSettings = ReplicaSettings()
    tracing: TracingSettings = TracingSettings()
    # Where the settings came from, for `config show`.
    source: str = "defaults"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'audit.db').resolve()}"

    @property
    def policy_path(self) -> Path:
        if self.policy is not None:
            return self.policy
        return Path(__file__).resolve().parent.parent / "policies" / "default.yaml"

    @property
    def artifact_dir(self) -> Path:
        return self.artifacts.dir or self.data_dir / "artifacts"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values given in code first, then what load_settings read (none otherwise).
        return (init_settings, *_LOADED_SOURCES.get())


# The environment and file sources of the load_settings call in progress.
_LOADED_SOURCES: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar(
    "execgate_settings_sources", default=()
)


class _Environment(EnvSettingsSource):
    """``EXECGATE_*`` variables from a given mapping (the process's, or a test's)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        for short, name in _ENV_SHORTCUTS.items():
            if short in self._environ:
                self._environ.setdefault(name, self._environ[short])
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}


def _config_path(config_path: Path | None, environ: Mapping[str, str]) -> Path | None:
    if config_path is not None:
        return config_path
    if environ.get("EXECGATE_CONFIG"):
        return Path(environ["EXECGATE_CONFIG"])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def _toml_source(path: Path) -> TomlConfigSettingsSource:
    if not path.is_file():
        raise ConfigError(f"cannot read config file {path}")
    try:
        return TomlConfigSettingsSource(Settings, toml_file=path)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings once: defaults, then the config file, then the environment.

    Raises: ConfigError with the file and the key when the file or an override is bad.
    """
    env = os.environ if environ is None else environ
    path = _config_path(config_path, env)
    sources: tuple[PydanticBaseSettingsSource, ...] = (_Environment(env),)
    source = "defaults"
    if path is not None:
        sources += (_toml_source(path),)
        source = str(path)
    token = _LOADED_SOURCES.set(sources)
    try:
        settings = Settings(source=source)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config {source}: {where}: {first['msg']}") from exc
    except SettingsError as exc:
        # An override that is not valid JSON where a list or a table is wanted.
        field = re.search(r'field "(\w+)"', str(exc))
        where = field[1] if field else "environment"
        raise ConfigError(
            f"config {source}: {where}: an {ENV_PREFIX}* override is not valid JSON"
        ) from exc
    finally:
        _LOADED_SOURCES.reset(token)
    if settings.default_provider not in settings.providers:
        raise ConfigError(
            f"config {source}: default_provider {settings.default_provider!r} is not in [providers]"
        )
    return settings


def masked_view(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The effective settings as plain data, with every secret masked."""
    env = os.environ if environ is None else environ
    raw = settings.model_dump(mode="json")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"env", "file"}:
                ref = SecretRef.model_validate(node)
                present = ref.env is not None and bool(env.get(ref.env))
                present = present or (ref.file is not None and ref.file.is_file())
                return {**node, "value": MASK if present else None}
            out = {}
            for key, value in node.items():
                if key == "env" and isinstance(value, dict):
                    # Function env may hold (demo) secrets: show names only.
                    out[key] = dict.fromkeys(value, MASK)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    view: dict[str, Any] = walk(raw)
    view["database"]["url"] = masked_url(view["database"]["url"])
    view["database_url_effective"] = masked_url(settings.database_url)
    view["policy_effective"] = str(settings.policy_path)
    return view


def masked_url(url: str) -> str:
    """A database URL fit to show: its password, in the authority or the query, masked."""
    if not url:
        return url
    from sqlalchemy.engine import make_url  # only `config show` needs it
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return MASK  # no telling where a password would be: show none of it
    hidden = {k: MASK for k in parsed.query if "password" in k.lower()}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)
