"""MCP fixtures: the MCP server in process over a real ExecService (audit database,
policy, bubblewrap sandboxes on a hand-moved clock), and helpers to read tool results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent

from policies.instances.local import InstanceManager
from policies.instances.sandbox import SandboxRunner
from policies.service.core import ExecService
from policies.types import Principal, PrincipalKind
from server.mcp.registry import build_server
from server.settings import (
    DEMO_ENV,
    DatabaseSettings,
    McpSettings,
    OutputSettings,
    ProviderSettings,
    ServerSettings,
    Settings,
)
from server.wiring import local_functions, open_service, prepare_database
from tests.support.fchost import FakeClock
from tests.support.objectstores import bucket, moto_url, oss_endpoint, s3_client

# The fake credentials of the demo function: they must never reach an assistant.
SECRETS = [
    DEMO_ENV[name]
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "DB_PASSWORD",
    )
]
__all__ = ["bucket", "moto_url", "oss_endpoint", "s3_client"]  # fixtures for bucket stores

PUBLIC_URL = "http://execgate.test"
ASSISTANT = Principal(PrincipalKind.MCP, "assistant")
OTHER = Principal(PrincipalKind.MCP, "other-assistant")
APPROVER = Principal(PrincipalKind.LOCAL, "approver-1")


@dataclass
class Progress:
    """Collects the progress notifications of one tool call."""

    updates: list[tuple[float, float | None, str | None]] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))
        self.arrived.set()


@dataclass
class InProcess:
    settings: Settings
    service: ExecService
    manager: InstanceManager
    clock: FakeClock
    server: MCPServer

    @property
    def instance(self) -> str:
        """A target for the provisioned demo-api instance."""
        return f"demo-api/{self.instance_id}"

    @property
    def instance_id(self) -> str:
        return self.manager.list("demo-api")[0].instance_id

    def exec_args(self, *argv: str, reason: str = "check") -> dict[str, Any]:
        """Arguments of the exec tool for argv on the demo-api instance."""
        return {"target": self.instance, "argv": list(argv), "reason": reason}

    def state_tmp(self, function: str = "demo-api", instance_id: str | None = None) -> Path:
        """The instance's /tmp as seen from the host."""
        ident = instance_id or self.instance_id
        return self.settings.data_dir / "instances" / function / ident / "tmp"


def settings_for(
    tmp_path: Path, database_url: str, *, mcp_inline_bytes: int = 16 * 1024, **extra: Any
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database=DatabaseSettings(url=database_url),
        providers={"local": ProviderSettings(type="sandbox")},
        output=OutputSettings(mcp_inline_bytes=mcp_inline_bytes),
        mcp=McpSettings(stdio_client="assistant"),
        # Links to full output point here (nothing needs to listen in these tests).
        server=ServerSettings(public_url=PUBLIC_URL),
        **extra,
    )


@pytest.fixture
async def inproc(tmp_path: Path, database_url: str) -> AsyncIterator[InProcess]:
    async with in_process(settings_for(tmp_path, database_url, mcp_inline_bytes=1024)) as rig:
        yield rig


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[InProcess]:
    """The MCP server over a service opened from ``settings``, answering as ASSISTANT."""
    await prepare_database(settings)
    clock = FakeClock()
    manager = InstanceManager(
        local_functions(settings), SandboxRunner("auto"), settings.data_dir, clock=clock
    )
    await manager.start()
    try:
        async with open_service(settings, manager=manager) as service:
            server = build_server(service, settings, lambda _request: ASSISTANT)
            yield InProcess(settings, service, manager, clock, server)
    finally:
        await manager.aclose()


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a tool result."""
    assert result.structured_content is not None, result.content
    return dict(result.structured_content)


def text_of(result: CallToolResult) -> str:
    """The text content a model reads."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def error_code(result: CallToolResult) -> str:
    assert result.is_error, result.content
    error = data(result)["error"]
    assert isinstance(error, dict)
    return str(error["code"])
