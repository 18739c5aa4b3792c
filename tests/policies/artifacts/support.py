"""Helpers for artifact store tests: byte streams, digests, and the S3 and OSS stores
on the moto fixtures (tests/support/objectstores.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from policies.artifacts import OssArtifactStore, OssConfig, S3ArtifactStore, S3Config
from policies.artifacts.streaming import MIN_PART_SIZE
from tests.support.objectstores import REGION


async def stream(chunks: Iterable[bytes], *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """Yield ``chunks``; raise ConnectionResetError after ``fail_after`` of them (a cut)."""
    for index, chunk in enumerate(chunks):
        if fail_after is not None and index == fail_after:
            raise ConnectionResetError("the transfer was cut")
        yield chunk


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_store(moto_url: str, bucket: str) -> S3ArtifactStore:
    """The S3 store on moto (path-style addressing, the smallest parts S3 allows)."""
    return S3ArtifactStore(
        S3Config(
            bucket=bucket,
            region=REGION,
            endpoint_url=moto_url,
            access_key_id="testing-key-id",
            secret_access_key="testing-secret",
            addressing_style="path",
            part_size=MIN_PART_SIZE,
        )
    )


def oss_store(endpoint: str, bucket: str) -> OssArtifactStore:
    """The OSS store on moto behind the namespace proxy at ``endpoint`` (v1 signing)."""
    return OssArtifactStore(
        OssConfig(
            bucket=bucket,
            region="cn-hangzhou",
            endpoint=endpoint,
            access_key_id="LTAItestingkeyid",
            access_key_secret="testing-secret",
            signature_version="v1",
            path_style=True,
            part_size=MIN_PART_SIZE,
        )
    )
