"""The local store: whole-or-nothing writes, signed expiring links, retention."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policies.artifacts.local import LocalArtifactStore
from policies.errors import ArtifactError
from tests.policies.artifacts.support import random_file, sha256, stream

BASE = "http://127.0.0.1:9/"
KEY = "2026/11/27/local/demo-api/c-1/ex_1/files/trace.pcap"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalArtifactStore:
    return LocalArtifactStore(
        tmp_path / "artifacts", signing_key=b"k" * 32, base_url=lambda: BASE, clock=clock
    )


def token_of(link: str) -> str:
    assert link.startswith(BASE.rstrip("/") + "/artifacts/")
    return link.rsplit("/", 1)[1]


async def test_put_stream_records_size_digest_and_content_type(
    store: LocalArtifactStore,
) -> None:
    info = await store.put_stream(KEY, stream([b"abc", b"def"]), content_type="x/y")
    assert (info.key, info.size, info.sha256, info.content_type) == (
        KEY,
        6,
        sha256(b"abcdef"),
        "x/y",
    )
    found = store.resolve(token_of(await store.link(KEY)))
    assert found.path.read_bytes() == b"abcdef"
    assert (found.content_type, found.sha256, found.filename) == ("x/y", info.sha256, "trace.pcap")


async def test_put_file_stores_a_copy_and_leaves_the_file_alone(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = random_file(source, 3 * 1024 * 1024 + 17)

    info = await store.put_file(KEY, source, content_type="application/octet-stream")

    assert (info.size, info.sha256) == (3 * 1024 * 1024 + 17, digest)
    found = store.resolve(token_of(await store.link(KEY)))
    assert sha256(found.path.read_bytes()) == digest
    assert not os.path.samefile(found.path, source)


async def test_adopt_file_takes_over_a_file_of_the_same_file_system_without_a_copy(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "stdout.txt"
    digest = random_file(source, 1024 * 1024 + 3)
    inode = source.stat().st_ino

    info = await store.adopt_file(KEY, source, content_type="text/plain")

    assert info is not None and (info.size, info.sha256) == (1024 * 1024 + 3, digest)
    found = store.resolve(token_of(await store.link(KEY)))
    assert found.path.stat().st_ino == inode  # linked in, not copied
    assert found.path.stat().st_mode & 0o777 == 0o600
    assert not source.exists()  # taken over
    assert not list((tmp_path / "artifacts" / "partial").iterdir())


async def test_adopt_file_leaves_links_to_other_files_to_be_copied(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    target = tmp_path / "secret.key"
    target.write_bytes(b"key")
    target.chmod(0o644)
    linked = tmp_path / "hard.txt"
    os.link(target, linked)
    symlink = tmp_path / "soft.txt"
    symlink.symlink_to(target)

    assert await store.adopt_file(KEY, linked, content_type="text/plain") is None
    with pytest.raises(ArtifactError):
        await store.adopt_file(KEY, symlink, content_type="text/plain")

    assert target.stat().st_mode & 0o777 == 0o644 and target.read_bytes() == b"key"
    with pytest.raises(ArtifactError):
        await store.link(KEY)  # nothing was stored


async def test_adopt_file_leaves_a_file_of_another_file_system_to_be_copied(
    store: LocalArtifactStore,
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(store.root.parent).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    source = shm / f"execgate-test-{os.getpid()}.bin"
    try:
        random_file(source, 1024)
        assert await store.adopt_file(KEY, source, content_type="text/plain") is None
        assert source.exists()
    finally:
        source.unlink()


async def test_link_works_before_expiry_and_fails_after(
    store: LocalArtifactStore, clock: Clock
) -> None:
    await store.put_stream(KEY, stream([b"data"]), content_type="text/plain")
    token = token_of(await store.link(KEY, ttl_seconds=60))
    clock.now += 59
    assert store.resolve(token).size == 4
    clock.now += 1
    with pytest.raises(ArtifactError) as caught:
        store.resolve(token)
    assert caught.value.fields["reason"] == "expired"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda t: "e" + t[1:] if t[0] != "e" else "f" + t[1:], id="payload"),
        pytest.param(lambda t: t.split(".")[0], id="no-signature"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
    ],
)
async def test_tampered_link_is_refused(store: LocalArtifactStore, tamper: object) -> None:
    await store.put_stream(KEY, stream([b"data"]), content_type="text/plain")
    token = token_of(await store.link(KEY))
    assert callable(tamper)
    with pytest.raises(ArtifactError) as caught:
        store.resolve(tamper(token))
    assert caught.value.fields["reason"] == "invalid"


async def test_a_link_signed_with_another_key_is_refused(
    store: LocalArtifactStore, tmp_path: Path, clock: Clock
) -> None:
    await store.put_stream(KEY, stream([b"data"]), content_type="text/plain")
    other = LocalArtifactStore(
        store.root, signing_key=b"x" * 32, base_url=lambda: BASE, clock=clock
    )
    with pytest.raises(ArtifactError) as caught:
        store.resolve(token_of(await other.link(KEY)))
    assert caught.value.fields["reason"] == "invalid"


async def test_a_cut_stream_leaves_nothing_under_the_key(store: LocalArtifactStore) -> None:
    with pytest.raises(ConnectionResetError):
        await store.put_stream(KEY, stream([b"a" * 10] * 5, fail_after=3), content_type="x/y")
    with pytest.raises(ArtifactError) as caught:
        await store.link(KEY)
    assert caught.value.fields["reason"] == "missing"
    assert list((store.root / "partial").iterdir()) == []


async def test_more_than_max_bytes_is_refused_and_nothing_is_kept(
    store: LocalArtifactStore,
) -> None:
    with pytest.raises(ArtifactError) as caught:
        await store.put_stream(KEY, stream([b"a" * 6, b"b" * 6]), content_type="x", max_bytes=10)
    assert caught.value.fields["reason"] == "too_large"
    assert not (store.root / "objects" / KEY).exists()


@pytest.mark.parametrize(
    "key", ["../escape", "/abs/key", "a//b", "a/../b", "a/.hidden", "a b", ""], ids=repr
)
async def test_unsafe_keys_are_refused(store: LocalArtifactStore, key: str) -> None:
    with pytest.raises(ArtifactError):
        await store.put_stream(key, stream([b"x"]), content_type="x")


async def test_links_without_a_running_server_say_so(tmp_path: Path) -> None:
    from policies.errors import ProviderUnavailable

    def no_server() -> str:
        raise ProviderUnavailable("not running")

    store = LocalArtifactStore(tmp_path, signing_key=b"k" * 32, base_url=no_server)
    await store.put_stream(KEY, stream([b"x"]), content_type="x")
    with pytest.raises(ArtifactError):
        await store.link(KEY)


async def test_retention_removes_old_artifacts_only(
    store: LocalArtifactStore, clock: Clock
) -> None:
    old_key, new_key = KEY, KEY.replace("ex_1", "ex_2")
    await store.put_stream(old_key, stream([b"old"]), content_type="x")
    await store.put_stream(new_key, stream([b"new"]), content_type="x")
    old_path = store.root / "objects" / old_key
    os.utime(old_path, (clock.now - 10 * 86400, clock.now - 10 * 86400))
    os.utime(store.root / "objects" / new_key, (clock.now, clock.now))
    assert await store.remove_older_than(7 * 86400) == 1
    assert not old_path.exists()
    assert (store.root / "objects" / new_key).exists()
