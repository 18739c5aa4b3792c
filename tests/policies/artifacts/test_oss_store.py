"""The OSS store: the real alibabacloud-oss-v2 SDK (v1 signing) against moto.

Covered: PutObject (single upload), InitiateMultipartUpload / UploadPart /
CompleteMultipartUpload / AbortMultipartUpload (through a proxy that only removes the
S3 XML namespace from moto's answers), GetObject through the SDK, and the SDK's
presigned GET URL fetched with httpx. moto does not check OSS signatures or expiry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from policies.artifacts.oss import _sdk
from policies.artifacts.streaming import MIN_PART_SIZE
from tests.policies.artifacts.support import oss_store, random_file, sha256, stream

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

KEY = "2026/11/27/local/demo-api/c-1/ex_1/files/cpu.pprof"


async def test_put_then_presigned_get_returns_the_same_bytes(
    oss_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "cpu.pprof"
    digest = random_file(source, 150_000)
    store = oss_store(oss_endpoint, bucket)
    info = await store.put_file(KEY, source, content_type="application/octet-stream")
    link = await store.link(KEY, ttl_seconds=600)
    assert (info.size, info.sha256) == (150_000, digest)
    assert "OSSAccessKeyId=" in link and "Signature=" in link
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
    assert answer.status_code == 200
    assert sha256(answer.content) == digest


async def test_the_sdk_reads_back_what_the_store_wrote(oss_endpoint: str, bucket: str) -> None:
    store = oss_store(oss_endpoint, bucket)
    await store.put_stream(KEY, stream([b"profile ", b"bytes"]), content_type="text/plain")
    oss = _sdk()

    def read_back() -> tuple[bytes, str]:
        # The SDK blocks; the proxy answers on this event loop: call it from a thread.
        got = store._oss().get_object(oss.GetObjectRequest(bucket=bucket, key=KEY))
        return bytes(got.body.read()), str(got.content_type)

    assert await asyncio.to_thread(read_back) == (b"profile bytes", "text/plain")


async def test_a_large_file_goes_up_in_parts(
    oss_endpoint: str, bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    source = tmp_path / "heap.hprof"
    size = MIN_PART_SIZE + 4321
    digest = random_file(source, size)
    store = oss_store(oss_endpoint, bucket)
    info = await store.put_file(KEY, source, content_type="application/octet-stream")
    assert (info.size, info.sha256) == (size, digest)
    etag = s3_client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    assert etag.strip('"').endswith("-2")
    async with httpx.AsyncClient() as client:
        answer = await client.get(await store.link(KEY))
    assert sha256(answer.content) == digest


async def test_a_cut_stream_aborts_the_upload(
    oss_endpoint: str, bucket: str, s3_client: S3Client
) -> None:
    store = oss_store(oss_endpoint, bucket)
    chunk = b"q" * (1 << 20)
    with pytest.raises(ConnectionResetError):
        await store.put_stream(KEY, stream([chunk] * 7, fail_after=6), content_type="x")
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
