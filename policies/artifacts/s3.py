"""The S3 artifact store (boto3): multipart uploads in bounded parts, presigned GET links.

boto3 is synchronous; every call runs in a worker thread. One client is shared (boto3
clients are thread-safe). SDK errors are logged and become ArtifactError with a safe
message: bucket names, endpoints and AWS error text stay in the log.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from policies.artifacts.streaming import (
    DEFAULT_PART_SIZE,
    READ_CHUNK,
    PartedStore,
    collect_pages,
    read_capped,
    too_large,
)
from policies.errors import ArtifactError, ArtifactNotFound

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)
T = TypeVar("T")
# SigV4 presigned URLs are valid for at most seven days.
MAX_LINK_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where and how to store; credentials None means boto3's own chain (env, profile,
    instance role)."""

    bucket: str
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"  # "path": MinIO, moto
    part_size: int = DEFAULT_PART_SIZE
    default_ttl: float = 3600.0

    def __repr__(self) -> str:
        return f"S3Config(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"


class S3ArtifactStore(PartedStore):
    name = "s3"

    def __init__(self, config: S3Config, *, client: S3Client | None = None) -> None:
        self._config = config
        self.part_size = config.part_size
        self._client = client

    def _s3(self) -> S3Client:
        if self._client is None:
            import boto3
            from botocore.config import Config

            cfg = self._config
            self._client = boto3.client(
                "s3",
                region_name=cfg.region,
                endpoint_url=cfg.endpoint_url,
                aws_access_key_id=cfg.access_key_id,
                aws_secret_access_key=cfg.secret_access_key,
                aws_session_token=cfg.session_token,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": cfg.addressing_style},
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        return self._client

    def _call(self, what: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            # The SDK's text may name the bucket, the endpoint or the key id: log only.
            logger.warning("S3 %s failed: %s", what, exc)
            raise ArtifactError(f"the S3 artifact store refused to {what}") from exc

    # PartTarget: the blocking calls upload_in_parts runs in threads.

    def put_whole(self, key: str, data: bytes, content_type: str) -> None:
        self.put_object(key, data, content_type)

    def start(self, key: str, content_type: str) -> str:
        s3 = self._s3()
        out = self._call(
            "start an upload",
            s3.create_multipart_upload,
            Bucket=self._config.bucket,
            Key=key,
            ContentType=content_type,
        )
        return out["UploadId"]

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        s3 = self._s3()
        out = self._call(
            "store part of the artifact",
            s3.upload_part,
            Bucket=self._config.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return out["ETag"]

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        s3 = self._s3()
        self._call(
            "complete the upload",
            s3.complete_multipart_upload,
            Bucket=self._config.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
        )

    def abort(self, key: str, upload_id: str) -> None:
        s3 = self._s3()
        self._call(
            "abort the upload",
            s3.abort_multipart_upload,
            Bucket=self._config.bucket,
            Key=key,
            UploadId=upload_id,
        )

    # Whole objects by key (also the audit anchors: see policies.artifacts.anchors)

    def put_object(
        self,
        key: str,
        data: bytes,
        content_type: str,
        retain_until: dt.datetime | None = None,
        lock_mode: str | None = None,
    ) -> None:
        """Store ``data`` at ``key``; with ``retain_until``, under an Object Lock
        retention of ``lock_mode`` (the bucket must have Object Lock enabled)."""
        extra: dict[str, Any] = {}
        if retain_until is not None:
            extra = {"ObjectLockMode": lock_mode or "COMPLIANCE"}
            extra["ObjectLockRetainUntilDate"] = retain_until
        s3 = self._s3()
        self._call(
            "store the artifact",
            s3.put_object,
            Bucket=self._config.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            **extra,
        )

    def _read(self, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import ClientError

        s3 = self._s3()
        try:
            out = s3.get_object(Bucket=self._config.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArtifactNotFound("the artifact no longer exists") from exc
            raise
        body = out["Body"]
        try:
            if out.get("ContentLength", 0) > max_bytes:
                raise too_large(max_bytes)
            return read_capped(body.iter_chunks(READ_CHUNK), max_bytes)
        finally:
            body.close()

    def _list(self, prefix: str) -> builtins.list[str]:
        s3 = self._s3()

        def page(token: str | None) -> tuple[builtins.list[str], str | None]:
            more: dict[str, Any] = {"ContinuationToken": token} if token else {}
            out = s3.list_objects_v2(Bucket=self._config.bucket, Prefix=prefix, **more)
            keys = [o["Key"] for o in out.get("Contents", []) if "Key" in o]
            return keys, out.get("NextContinuationToken") if out.get("IsTruncated") else None

        return collect_pages(page)

    # ArtifactStore (put_stream and put_file come from PartedStore)

    async def link(self, key: str, *, ttl_seconds: float | None = None) -> str:
        """A presigned GET URL. Raises: ArtifactError."""
        ttl = ttl_seconds if ttl_seconds is not None else self._config.default_ttl
        expires = max(1, min(int(ttl), MAX_LINK_SECONDS))
        s3 = await asyncio.to_thread(self._s3)
        return await asyncio.to_thread(
            self._call,
            "sign a link",
            s3.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": self._config.bucket, "Key": key},
            ExpiresIn=expires,
        )

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        """Raises: ArtifactNotFound, ArtifactTooLarge, ArtifactError."""
        return await asyncio.to_thread(self._call, "read the artifact", self._read, key, max_bytes)

    async def list(self, prefix: str) -> builtins.list[str]:
        """Raises: ArtifactError."""
        return await asyncio.to_thread(self._call, "list the artifacts", self._list, prefix)

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
