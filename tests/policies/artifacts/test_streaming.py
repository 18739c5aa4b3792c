"""upload_in_parts over an in-memory store: part boundaries, bounded memory, aborts."""

from __future__ import annotations

import pytest

from policies.artifacts.streaming import upload_in_parts
from policies.errors import ArtifactError
from tests.policies.artifacts.support import sha256, stream


class MemoryTarget:
    def __init__(self, *, fail_part: int | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, list[tuple[int, bytes]]] = {}
        self.aborted: list[str] = []
        self.largest_part = 0
        self._fail_part = fail_part

    def put_whole(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data

    def start(self, key: str, content_type: str) -> str:
        upload_id = f"u{len(self.uploads) + 1}"
        self.uploads[upload_id] = []
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        if number == self._fail_part:
            raise ArtifactError("the store refused a part")
        self.largest_part = max(self.largest_part, len(data))
        self.uploads[upload_id].append((number, data))
        return f"etag-{number}"

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        stored = dict(self.uploads.pop(upload_id))
        assert [n for n, _ in parts] == sorted(stored)
        self.objects[key] = b"".join(stored[n] for n, _ in parts)

    def abort(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)
        self.aborted.append(upload_id)


@pytest.mark.parametrize(
    ("total", "parts"),
    [
        pytest.param(0, 0, id="empty-object"),
        pytest.param(99, 0, id="under-one-part"),
        pytest.param(100, 1, id="exactly-one-part"),
        pytest.param(250, 3, id="two-parts-and-a-tail"),
    ],
)
async def test_objects_go_up_whole_or_in_parts_of_the_configured_size(
    total: int, parts: int
) -> None:
    data = bytes(range(256))[:total] if total <= 256 else b"x" * total
    target = MemoryTarget()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    info = await upload_in_parts(
        target, "k", stream(chunks), content_type="x", max_bytes=None, part_size=100
    )
    assert target.objects["k"] == data
    assert (info.size, info.sha256) == (total, sha256(data))
    assert target.largest_part <= 100
    assert target.uploads == {}
    assert len(target.aborted) == 0
    assert (parts > 0) == (target.largest_part > 0)


async def test_a_failing_part_aborts_the_upload() -> None:
    target = MemoryTarget(fail_part=2)
    with pytest.raises(ArtifactError):
        await upload_in_parts(
            target, "k", stream([b"a" * 50] * 6), content_type="x", max_bytes=None, part_size=100
        )
    assert target.aborted == ["u1"]
    assert "k" not in target.objects


async def test_over_the_cap_aborts_before_completing() -> None:
    target = MemoryTarget()
    with pytest.raises(ArtifactError) as caught:
        await upload_in_parts(
            target, "k", stream([b"a" * 60] * 5), content_type="x", max_bytes=250, part_size=100
        )
    assert caught.value.fields["reason"] == "too_large"
    assert target.aborted == ["u1"]
    assert "k" not in target.objects
