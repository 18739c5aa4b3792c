"""What every artifact store (local, S3 on moto, OSS on moto behind the namespace proxy)
promises about ``read`` and ``list``: the bytes written come back whole, never more
than ``max_bytes`` of them; keys are listed by prefix, sorted; a missing key is
ArtifactNotFound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from policies.artifacts import (
    LocalArtifactStore,
)
from policies.errors import ArtifactNotFound, ArtifactTooLarge
from policies.ports import ArtifactStore
from tests.policies.artifacts.support import oss_store, s3_store, stream

DAY = "2026/11/27/local/demo-api/c-1"
KEYS = [
    f"{DAY}/ex_2/output/stdout.txt",
    f"{DAY}/ex_1/files/cpu.pprof",
    f"{DAY}/ex_1/output/stdout.txt",
]


@pytest.fixture(params=["local", "s3", "oss"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, moto_url: str, oss_endpoint: str, bucket: str
) -> AsyncIterator[ArtifactStore]:
    made: ArtifactStore
    if request.param == "local":
        made = LocalArtifactStore(
            tmp_path / "artifacts", signing_key=b"k" * 32, base_url=lambda: "http://127.0.0.1:9"
        )
    elif request.param == "s3":
        made = s3_store(moto_url, bucket)
    else:
        made = oss_store(oss_endpoint, bucket)
    try:
        yield made
    finally:
        await made.aclose()


async def test_read_returns_exactly_the_bytes_stored(store: ArtifactStore) -> None:
    body = bytes(range(256)) * 300
    await store.put_stream(KEYS[0], stream([body[:1000], body[1000:]]), content_type="x/y")
    await store.put_stream(KEYS[1], stream([]), content_type="x/y")

    assert await store.read(KEYS[0], max_bytes=len(body)) == body
    assert await store.read(KEYS[1], max_bytes=0) == b""


async def test_read_refuses_an_object_larger_than_max_bytes(store: ArtifactStore) -> None:
    await store.put_stream(KEYS[0], stream([b"x" * 1000]), content_type="text/plain")

    with pytest.raises(ArtifactTooLarge):
        await store.read(KEYS[0], max_bytes=999)


async def test_read_of_a_missing_key_is_not_found(store: ArtifactStore) -> None:
    await store.put_stream(KEYS[0], stream([b"x"]), content_type="text/plain")

    with pytest.raises(ArtifactNotFound):
        await store.read(KEYS[1], max_bytes=100)


async def test_list_returns_the_keys_under_a_prefix_sorted(store: ArtifactStore) -> None:
    for key in KEYS:
        await store.put_stream(key, stream([key.encode()]), content_type="text/plain")

    assert await store.list("") == sorted(KEYS)
    assert await store.list(f"{DAY}/ex_1/") == sorted(KEYS[1:])
    assert await store.list(f"{DAY}/ex_") == sorted(KEYS)  # a prefix, not only a folder
    assert await store.list(f"{DAY}/ex_1/files/cpu") == [KEYS[1]]
    assert await store.list(f"{DAY}/ex_3/") == []
    assert await store.list("../") == []
