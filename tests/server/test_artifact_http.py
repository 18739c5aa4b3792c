"""GET /artifacts/{token}: the local store's links served over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from policies.artifacts.local import LocalArtifactStore
from policies.audit import SqlAuditStore
from policies.rules.holder import PolicyHolder
from policies.service.core import ExecService
from server.artifact_http import artifact_mount
from server.settings import Settings
from tests.support.servers import serve_asgi

KEY = "2026/11/27/local/demo-api/c-1/ex_1/files/trace.pcap"
TEXT_KEY = "2026/11/27/local/demo-api/c-1/ex_1/output/stdout.txt"


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    url: str
    store: LocalArtifactStore
    clock: Clock


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
async def served(tmp_path: Path, audit_store: SqlAuditStore) -> AsyncIterator[Served]:
    clock = Clock()
    box: dict[str, str] = {}
    store = LocalArtifactStore(
        tmp_path / "artifacts", signing_key=b"q" * 32, base_url=lambda: box["url"], clock=clock
    )
    policy = Settings().policy_path
    service = ExecService(
        policies=PolicyHolder(policy),
        audit=audit_store,
        providers={},
        default_provider="local",
        artifacts=store,
    )
    mount = artifact_mount(Settings(data_dir=tmp_path), service)
    assert mount is not None
    async with serve_asgi(Starlette(routes=mount.routes)) as url:
        box["url"] = url
        yield Served(url, store, clock)


async def test_a_valid_link_streams_the_artifact_as_a_download(served: Served) -> None:
    data = bytes(range(256)) * 4096
    await served.store.put_stream(
        KEY, chunks(data[:500_000], data[500_000:]), content_type="application/vnd.tcpdump.pcap"
    )
    link = await served.store.link(KEY)
    assert link.startswith(served.url + "/artifacts/")
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
        head = await client.head(link)
    assert answer.status_code == 200
    assert answer.content == data
    assert answer.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert 'filename="trace.pcap"' in answer.headers["content-disposition"]
    assert answer.headers["cache-control"] == "private, no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


async def test_text_output_opens_inline(served: Served) -> None:
    await served.store.put_stream(
        TEXT_KEY, chunks(b"full output\n"), content_type="text/plain; charset=utf-8"
    )
    async with httpx.AsyncClient() as client:
        answer = await client.get(await served.store.link(TEXT_KEY))
    assert answer.status_code == 200 and answer.text == "full output\n"
    assert answer.headers["content-disposition"].startswith("inline;")


async def test_an_expired_link_is_gone(served: Served) -> None:
    await served.store.put_stream(KEY, chunks(b"x"), content_type="x/y")
    link = await served.store.link(KEY, ttl_seconds=30)
    served.clock.now += 30
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "link_expired"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda link: link[:-3] + ("abc" if not link.endswith("abc") else "xyz"), id="signature"
        ),
        pytest.param(lambda link: link.replace("/artifacts/e", "/artifacts/f", 1), id="payload"),
        pytest.param(lambda link: link.rsplit(".", 1)[0], id="signature-dropped"),
    ],
)
async def test_a_tampered_link_is_forbidden(served: Served, tamper: object) -> None:
    await served.store.put_stream(KEY, chunks(b"x"), content_type="x/y")
    link = await served.store.link(KEY)
    assert callable(tamper)
    async with httpx.AsyncClient() as client:
        answer = await client.get(tamper(link))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "invalid_link"


async def test_a_link_to_a_removed_artifact_is_not_found(served: Served) -> None:
    await served.store.put_stream(KEY, chunks(b"x"), content_type="x/y")
    link = await served.store.link(KEY)
    (served.store.root / "objects" / KEY).unlink()
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "artifact_not_found"


async def test_no_routes_are_mounted_for_a_bucket_store(audit_store: SqlAuditStore) -> None:
    from policies.artifacts.s3 import S3ArtifactStore, S3Config

    service = ExecService(
        policies=PolicyHolder(Settings().policy_path),
        audit=audit_store,
        providers={},
        default_provider="local",
        artifacts=S3ArtifactStore(S3Config(bucket="b")),
    )
    assert artifact_mount(Settings(), service) is None
