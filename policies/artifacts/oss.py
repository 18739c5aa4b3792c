"""The Alibaba Cloud OSS artifact store (``alibabacloud-oss-v2``): multipart uploads in
bounded parts, presigned GET links.

The SDK is synchronous; every call runs in a worker thread. Without configured keys the
standard Alibaba Cloud variables are read (``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, ``ALIBABA_CLOUD_SECURITY_TOKEN``). SDK errors are
logged and become ArtifactError with a safe message.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from policies.artifacts.streaming import (
    DEFAULT_PART_SIZE,
    PartedStore,
    collect_pages,
    read_capped,
    too_large,
)
from policies.errors import ArtifactError, ArtifactNotFound

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_LINK_SECONDS = 7 * 24 * 3600


def _sdk() -> Any:
    # Imported on first use: the SDK takes most of a second to import.
    import alibabacloud_oss_v2 as sdk  # type: ignore[import-untyped]

    return sdk


@dataclass(frozen=True, slots=True)
class OssConfig:
    bucket: str
    region: str
    endpoint: str | None = None  # None: the public endpoint of the region
    access_key_id: str | None = None
    access_key_secret: str | None = None
    security_token: str | None = None
    signature_version: str = "v4"
    path_style: bool = False
    part_size: int = DEFAULT_PART_SIZE
    default_ttl: float = 3600.0

    def __repr__(self) -> str:
        return f"OssConfig(bucket={self.bucket!r}, region={self.region!r})"


class OssArtifactStore(PartedStore):
    name = "oss"

    def __init__(self, config: OssConfig) -> None:
        self._config = config
        self.part_size = config.part_size
        self._client: Any = None

    def _oss(self) -> Any:
        if self._client is None:
            oss = _sdk()
            cfg = self._config
            conf = oss.config.load_default()
            if cfg.access_key_id and cfg.access_key_secret:
                conf.credentials_provider = oss.credentials.StaticCredentialsProvider(
                    cfg.access_key_id, cfg.access_key_secret, cfg.security_token
                )
            else:
                conf.credentials_provider = oss.credentials.EnvironmentVariableCredentialsProvider()
            conf.region = cfg.region
            conf.signature_version = cfg.signature_version
            if cfg.endpoint:
                conf.endpoint = cfg.endpoint
                conf.disable_ssl = cfg.endpoint.startswith("http://")
            conf.use_path_style = cfg.path_style
            self._client = oss.Client(conf)
        return self._client

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        oss = _sdk()
        try:
            return fn(*args, **kwargs)
        except oss.exceptions.BaseError as exc:
            logger.warning("OSS %s failed: %s", what, exc)
            raise ArtifactError(f"the OSS artifact store refused to {what}") from exc

    # PartTarget: the blocking calls upload_in_parts runs in threads.

    def put_whole(self, key: str, data: bytes, content_type: str) -> None:
        oss = _sdk()
        request = oss.PutObjectRequest(
            bucket=self._config.bucket, key=key, body=data, content_type=content_type
        )
        self._call("store the artifact", self._oss().put_object, request)

    def start(self, key: str, content_type: str) -> str:
        oss = _sdk()
        request = oss.InitiateMultipartUploadRequest(
            bucket=self._config.bucket, key=key, content_type=content_type
        )
        out = self._call("start an upload", self._oss().initiate_multipart_upload, request)
        if not out.upload_id:
            raise ArtifactError("the OSS artifact store refused to start an upload")
        return str(out.upload_id)

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        oss = _sdk()
        request = oss.UploadPartRequest(
            bucket=self._config.bucket,
            key=key,
            upload_id=upload_id,
            part_number=number,
            body=data,
        )
        out = self._call("store part of the artifact", self._oss().upload_part, request)
        return str(out.etag)

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        oss = _sdk()
        request = oss.CompleteMultipartUploadRequest(
            bucket=self._config.bucket,
            key=key,
            upload_id=upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(
                parts=[oss.UploadPart(part_number=n, etag=e) for n, e in parts]
            ),
        )
        self._call("complete the upload", self._oss().complete_multipart_upload, request)

    def abort(self, key: str, upload_id: str) -> None:
        oss = _sdk()
        request = oss.AbortMultipartUploadRequest(
            bucket=self._config.bucket, key=key, upload_id=upload_id
        )
        self._call("abort the upload", self._oss().abort_multipart_upload, request)

    def _presign(self, key: str, seconds: int) -> str:
        oss = _sdk()
        request = oss.GetObjectRequest(bucket=self._config.bucket, key=key)
        out = self._call(
            "sign a link", self._oss().presign, request, expires=dt.timedelta(seconds=seconds)
        )
        return str(out.url)

    # Whole objects by key (the audit anchors: see policies.artifacts.anchors)

    def put_object(
        self,
        key: str,
        data: bytes,
        content_type: str,
        retain_until: dt.datetime | None = None,
        lock_mode: str | None = None,
    ) -> None:
        """Store ``data`` at ``key``, never over an existing object. Retention on OSS
        is the bucket's retention (WORM) policy, so ``retain_until`` is not sent."""
        oss = _sdk()
        request = oss.PutObjectRequest(
            bucket=self._config.bucket,
            key=key,
            body=data,
            content_type=content_type,
            forbid_overwrite=True,
        )
        self._call("store the artifact", self._oss().put_object, request)

    def _read(self, key: str, max_bytes: int) -> bytes:
        oss = _sdk()
        request = oss.GetObjectRequest(bucket=self._config.bucket, key=key)
        try:
            out = self._oss().get_object(request)
        except oss.exceptions.OperationError as exc:
            cause = exc.unwrap()
            if isinstance(cause, oss.exceptions.ServiceError) and cause.status_code == 404:
                raise ArtifactNotFound("the artifact no longer exists") from exc
            raise
        with out.body as body:
            if (out.content_length or 0) > max_bytes:
                raise too_large(max_bytes)
            return read_capped(body.iter_bytes(), max_bytes)

    def _list(self, prefix: str) -> builtins.list[str]:
        oss = _sdk()

        def page(token: str | None) -> tuple[builtins.list[str], str | None]:
            request = oss.ListObjectsV2Request(
                bucket=self._config.bucket, prefix=prefix, continuation_token=token
            )
            out = self._oss().list_objects_v2(request)
            keys = [str(o.key) for o in out.contents or []]
            return keys, out.next_continuation_token if out.is_truncated else None

        return collect_pages(page)

    # ArtifactStore (put_stream and put_file come from PartedStore)

    async def link(self, key: str, *, ttl_seconds: float | None = None) -> str:
        """A presigned GET URL. Raises: ArtifactError."""
        ttl = ttl_seconds if ttl_seconds is not None else self._config.default_ttl
        return await asyncio.to_thread(self._presign, key, max(1, min(int(ttl), MAX_LINK_SECONDS)))

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        """Raises: ArtifactNotFound, ArtifactTooLarge, ArtifactError."""
        return await asyncio.to_thread(self._call, "read the artifact", self._read, key, max_bytes)

    async def list(self, prefix: str) -> builtins.list[str]:
        """Raises: ArtifactError."""
        return await asyncio.to_thread(self._call, "list the artifacts", self._list, prefix)

    async def aclose(self) -> None:
        return None
