"""Audit anchors in S3 (moto, with Object Lock retention) and OSS (moto behind the
namespace proxy, v1 signatures): written once, listed and read back."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from policies.artifacts import OssArtifactStore, OssConfig, S3ArtifactStore, S3Config
from policies.artifacts.anchors import Retention, bucket_anchors
from tests.policies.artifacts.conftest import REGION

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


async def test_s3_anchors_carry_an_object_lock_retention_and_read_back(
    moto_url: str, s3_client: S3Client
) -> None:
    bucket = f"execgate-lock-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = S3ArtifactStore(
        S3Config(
            bucket=bucket,
            region=REGION,
            endpoint_url=moto_url,
            access_key_id="testing-key-id",
            secret_access_key="testing-secret",
            addressing_style="path",
        )
    )
    anchors = bucket_anchors(store, "eg/", Retention(days=30))
    try:
        await anchors.put_anchor("000000000001-0123456789abcdef.json", b'{"a":1}')
        names = await anchors.list_anchors()
        body = await anchors.get_anchor(names[0])
    finally:
        await anchors.aclose()

    head = s3_client.head_object(Bucket=bucket, Key="eg/audit-anchors/" + names[0])
    assert (names, body) == (["000000000001-0123456789abcdef.json"], b'{"a":1}')
    assert head.get("ObjectLockMode") == "COMPLIANCE"
    assert "ObjectLockRetainUntilDate" in head


async def test_oss_anchors_are_listed_and_read_back(oss_endpoint: str, bucket: str) -> None:
    store = OssArtifactStore(
        OssConfig(
            bucket=bucket,
            region="cn-hangzhou",
            endpoint=oss_endpoint,
            access_key_id="testing-key-id",
            access_key_secret="testing-secret",
            signature_version="v1",
            path_style=True,
        )
    )
    anchors = bucket_anchors(store)
    await anchors.put_anchor("000000000002-0123456789abcdef.json", b'{"b":2}')

    names = await anchors.list_anchors()

    assert names == ["000000000002-0123456789abcdef.json"]
    assert await anchors.get_anchor(names[0]) == b'{"b":2}'
