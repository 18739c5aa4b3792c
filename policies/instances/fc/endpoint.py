"""Where a Function Compute provider lives and how its request paths are built (pure).

FC 3.0 (``2023-03-30``) addresses a function directly and passes the qualifier as a
query parameter; FC 2.0 (``2016-08-15``) puts the function under a service and appends
the qualifier to the service name (``svc.LATEST``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit

from policies.errors import ConfigError
from policies.instances.fc.framing import DEFAULT_KILL_GRACE

ApiVersion = Literal["2023-03-30", "2016-08-15"]
StdinMode = Literal["binary", "text"]
FC3: ApiVersion = "2023-03-30"
FC2: ApiVersion = "2016-08-15"

Query = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """A request's unescaped path (what is signed) and its query pairs, in order."""

    path: str
    query: Query

    def path_and_query(self) -> str:
        escaped = quote(self.path, safe="/")
        if not self.query:
            return escaped
        return f"{escaped}?{urlencode(self.query, quote_via=quote)}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class FcEndpoint:
    """One configured FC account and region (or an FC-compatible server).

    ``endpoint`` overrides the base URL (e.g. ``http://127.0.0.1:PORT`` for the local
    instance host or a VPC endpoint); ``internal`` selects the ``-internal`` host name.
    ``kill_grace`` is how many seconds a command has between TERM and KILL when its
    timeout fires or it is stopped.

    Raises: ConfigError when FC 2.0 is chosen without a service, or the override is
    not an http(s) URL.
    """

    account_id: str
    region: str
    api_version: ApiVersion = FC3
    endpoint: str | None = None
    internal: bool = False
    service: str | None = None
    stdin_mode: StdinMode = "binary"
    ping_interval: float = 20.0
    kill_grace: int = DEFAULT_KILL_GRACE

    def __post_init__(self) -> None:
        if not self.account_id or not self.region:
            raise ConfigError("a Function Compute provider needs an account id and a region")
        if self.api_version not in (FC3, FC2):
            raise ConfigError(f"unsupported Function Compute API version {self.api_version!r}")
        if self.api_version == FC2 and not self.service:
            raise ConfigError("Function Compute 2.0 (2016-08-15) needs a service name")
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError("the Function Compute endpoint must be an http(s) URL")
        if self.kill_grace < 1:
            raise ConfigError("kill_grace must be at least one second")
        if self.stdin_mode not in ("binary", "text"):
            raise ConfigError("stdin_mode must be 'binary' or 'text'")

    @property
    def base_url(self) -> str:
        if self.endpoint is not None:
            return self.endpoint.rstrip("/")
        internal = "-internal" if self.internal else ""
        return f"https://{self.account_id}.{self.region}{internal}.fc.aliyuncs.com"

    def url(self, target: RequestTarget) -> str:
        return self.base_url + target.path_and_query()

    def ws_url(self, target: RequestTarget) -> str:
        base = self.base_url
        scheme = "wss" if base.startswith("https://") else "ws"
        return scheme + base[base.index(":") :] + target.path_and_query()

    def _function_path(self, function: str, qualifier: str | None) -> tuple[str, Query]:
        if self.api_version == FC2:
            service = f"{self.service}.{qualifier}" if qualifier else f"{self.service}"
            return f"/{FC2}/services/{service}/functions/{function}", []
        return f"/{FC3}/functions/{function}", [("qualifier", qualifier)] if qualifier else []

    def instances(self, function: str, qualifier: str | None, limit: int = 100) -> RequestTarget:
        """ListInstances."""
        path, query = self._function_path(function, qualifier)
        if self.api_version == FC3:
            query = [*query, ("withAllActive", "true"), ("limit", str(limit))]
        return RequestTarget(f"{path}/instances", query)

    def invocations(self, function: str, qualifier: str | None) -> RequestTarget:
        """InvokeFunction."""
        path, query = self._function_path(function, qualifier)
        return RequestTarget(f"{path}/invocations", query)

    def exec(
        self,
        function: str,
        qualifier: str | None,
        instance: str,
        argv: Sequence[str],
        *,
        stdin: bool,
        idle_timeout: int,
    ) -> RequestTarget:
        """InstanceExec: one ``command`` parameter per argv element, in order."""
        path, query = self._function_path(function, qualifier)
        query = [
            *query,
            *(("command", arg) for arg in argv),
            ("stdin", _flag(stdin)),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "false"),
            ("idleTimeout", str(idle_timeout)),
        ]
        return RequestTarget(f"{path}/instances/{instance}/exec", query)
