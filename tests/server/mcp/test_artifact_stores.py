"""MCP resources read from a bucket store: the full output of a command stored in S3
(moto on loopback) or OSS (moto behind the namespace proxy) is read back through the
store, checked against its recorded sha256, by its owner only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ResourceLink, TextResourceContents

from server.mcp.registry import build_server
from server.settings import ArtifactSettings, SecretRef
from tests.server.mcp.conftest import OTHER, InProcess, data, in_process, settings_for
from tests.support.objectstores import REGION


def _bucket_settings(store: str, endpoint: str, bucket: str, tmp_path: Path) -> ArtifactSettings:
    key_id, secret = tmp_path / "key-id", tmp_path / "key-secret"
    key_id.write_text("testing-key-id")
    secret.write_text("testing-secret")
    extra: dict[str, Any] = {"oss_signature_version": "v1"} if store == "oss" else {}
    return ArtifactSettings(
        store=store,
        bucket=bucket,
        region=REGION if store == "s3" else "cn-hangzhou",
        endpoint_url=endpoint,
        path_style=True,
        access_key_id=SecretRef(file=key_id),
        access_key_secret=SecretRef(file=secret),
        anchors=False,
        **extra,
    )


@pytest.fixture(params=["s3", "oss"])
async def bucket_inproc(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    oss_endpoint: str,
    bucket: str,
) -> AsyncIterator[InProcess]:
    store = str(request.param)
    endpoint = moto_url if store == "s3" else oss_endpoint
    artifacts = _bucket_settings(store, endpoint, bucket, tmp_path)
    settings = settings_for(tmp_path, database_url, mcp_inline_bytes=1024, artifacts=artifacts)
    async with in_process(settings) as rig:
        yield rig


async def test_full_output_in_a_bucket_store_reads_as_a_resource_for_its_owner_only(
    bucket_inproc: InProcess,
) -> None:
    inproc = bucket_inproc
    lines = "".join(f"line {i:05d}\n" for i in range(3000))
    inproc.state_tmp().joinpath("big.log").write_text(lines)
    async with Client(inproc.server) as client:
        result = await client.call_tool(
            "exec", inproc.exec_args("head", "-n", "10000", "/tmp/big.log", reason="read")
        )
        (link,) = [b for b in result.content if isinstance(b, ResourceLink)]
        read = await client.read_resource(link.uri)
    assert data(result)["truncated"] is True
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.text == lines
    other = build_server(inproc.service, inproc.settings, lambda _request: OTHER)
    async with Client(other) as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(link.uri)
    assert refused.value.error.code == INVALID_PARAMS
