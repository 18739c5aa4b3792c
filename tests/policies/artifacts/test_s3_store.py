"""The S3 store against a real moto server: uploads, multipart, presigned GET links.

moto checks neither signatures nor expiry: link expiry is tested on the local store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from policies.artifacts.streaming import MIN_PART_SIZE
from policies.errors import ArtifactError
from tests.policies.artifacts.support import random_file, s3_store, sha256, stream

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

KEY = "execgate/2026/11/27/local/demo-api/c-1/ex_1/files/trace.pcap"


async def test_uploaded_file_comes_back_through_a_presigned_link_with_the_same_digest(
    moto_url: str, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "trace.pcap"
    digest = random_file(source, 200_000)
    store = s3_store(moto_url, bucket)
    try:
        info = await store.put_file(KEY, source, content_type="application/vnd.tcpdump.pcap")
        link = await store.link(KEY, ttl_seconds=300)
    finally:
        await store.aclose()
    assert (info.size, info.sha256) == (200_000, digest)
    assert "X-Amz-Signature=" in link and "X-Amz-Expires=300" in link
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
    assert answer.status_code == 200
    assert sha256(answer.content) == digest
    assert answer.headers["content-type"] == "application/vnd.tcpdump.pcap"


async def test_a_large_file_goes_up_as_a_multipart_upload(
    moto_url: str, bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    source = tmp_path / "heap.hprof"
    size = 2 * MIN_PART_SIZE + 12345
    digest = random_file(source, size)
    store = s3_store(moto_url, bucket)
    try:
        info = await store.put_file(KEY, source, content_type="application/octet-stream")
        link = await store.link(KEY)
    finally:
        await store.aclose()
    assert (info.size, info.sha256) == (size, digest)
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    etag = s3_client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    assert etag.strip('"').endswith("-3")
    async with httpx.AsyncClient() as client:
        answer = await client.get(link)
    assert sha256(answer.content) == digest


async def test_a_cut_stream_aborts_the_multipart_upload_and_stores_nothing(
    moto_url: str, bucket: str, s3_client: S3Client
) -> None:
    store = s3_store(moto_url, bucket)
    chunk = b"z" * (1 << 20)
    try:
        with pytest.raises(ConnectionResetError):
            await store.put_stream(
                KEY, stream([chunk] * 12, fail_after=11), content_type="application/octet-stream"
            )
    finally:
        await store.aclose()
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_over_the_cap_is_refused_and_nothing_is_stored(
    moto_url: str, bucket: str, s3_client: S3Client
) -> None:
    store = s3_store(moto_url, bucket)
    try:
        with pytest.raises(ArtifactError) as caught:
            await store.put_stream(
                KEY, stream([b"a" * 10, b"b" * 10]), content_type="x", max_bytes=15
            )
    finally:
        await store.aclose()
    assert caught.value.fields["reason"] == "too_large"
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


async def test_a_missing_bucket_is_an_artifact_error_without_sdk_text(moto_url: str) -> None:
    store = s3_store(moto_url, "execgate-no-such-bucket")
    try:
        with pytest.raises(ArtifactError) as caught:
            await store.put_stream(KEY, stream([b"x"]), content_type="x")
    finally:
        await store.aclose()
    assert caught.value.code == "artifact_error"
    assert "NoSuchBucket" not in caught.value.safe_message
