"""Audit anchors in S3 (moto, with Object Lock retention), OSS (moto behind the
namespace proxy, v1 signatures) and the local directory: written once, listed and read
back through the store, and held against the log by ``verify --anchors``."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from policies.artifacts import (
    LocalArtifactStore,
)
from policies.artifacts.anchors import Retention, bucket_anchors, local_anchors
from policies.audit.review import verify_log
from tests.conftest import CHECKPOINT_KEY
from tests.policies.artifacts.support import oss_store, s3_store
from tests.policies.audit.support import cut_and_resign, record_anchored

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


async def test_s3_anchors_carry_an_object_lock_retention_and_read_back(
    moto_url: str, s3_client: S3Client
) -> None:
    bucket = f"execgate-lock-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = s3_store(moto_url, bucket)
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
    store = oss_store(oss_endpoint, bucket)
    anchors = bucket_anchors(store)
    await anchors.put_anchor("000000000002-0123456789abcdef.json", b'{"b":2}')

    names = await anchors.list_anchors()

    assert names == ["000000000002-0123456789abcdef.json"]
    assert await anchors.get_anchor(names[0]) == b'{"b":2}'


async def test_s3_anchors_agree_with_the_log_until_history_is_rewritten(
    moto_url: str, bucket: str, migrated_url: str, checkpoint_path: Path
) -> None:
    anchors = bucket_anchors(s3_store(moto_url, bucket), "eg/")
    public = CHECKPOINT_KEY.public_key()
    await record_anchored(migrated_url, checkpoint_path, CHECKPOINT_KEY, anchors)
    intact = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=public, anchors=anchors
    )
    await cut_and_resign(migrated_url, checkpoint_path, CHECKPOINT_KEY)
    rewritten = await verify_log(
        migrated_url, checkpoint_path=checkpoint_path, public_key=public, anchors=anchors
    )
    await anchors.aclose()

    assert (intact.ok, intact.problem) == (True, None)
    assert (rewritten.ok, rewritten.problem) == (False, "anchor")


async def test_local_anchors_stay_read_only_in_their_folder_out_of_the_retention_sweep(
    tmp_path: Path,
) -> None:
    root = tmp_path / "artifacts"
    anchors = local_anchors(root)
    await anchors.put_anchor("000000000003-0123456789abcdef.json", b'{"c":3}')
    await anchors.put_anchor("000000000003-0123456789abcdef.json", b"overwrite")
    swept = await LocalArtifactStore(
        root, signing_key=b"k" * 32, base_url=lambda: "http://127.0.0.1:9", clock=lambda: 4e9
    ).remove_older_than(0)

    path = root / "audit-anchors" / "000000000003-0123456789abcdef.json"
    assert (swept, path.read_bytes()) == (0, b'{"c":3}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert await anchors.list_anchors() == [path.name]
    assert await anchors.get_anchor(path.name) == b'{"c":3}'
