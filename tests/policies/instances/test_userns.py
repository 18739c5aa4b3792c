"""An instance's user namespace maps 65,536 ids onto a subordinate range of the host:
tcpdump can switch to its own user, and the host's root is not mapped."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from policies.instances.local import InstanceManager, LocalFunction
from policies.instances.sandbox import SandboxRunner, UserNamespace
from policies.instances.userns import ID_COUNT, find_mapping, parse_subids
from policies.types import Limits, RunResult
from tests.policies.instances.sandbox_helpers import Output, require_bwrap
from tests.support.fchost import FakeClock

LIMITS = Limits(timeout=30.0, idle_timeout=30.0)
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
# Connection attempts to a closed port on the instance's loopback (a SYN and a RST each)
# until tcpdump has its packets; the exec's timeout bounds the loop.
CAPTURE_SCRIPT = (
    "tcpdump -i lo -c 4 -U -w /tmp/lo.cap tcp port 9 2>/tmp/tcpdump.err & t=$!; "
    "while kill -0 $t 2>/dev/null; do python3 -c "
    "'import socket; socket.socket().connect_ex((\"127.0.0.1\", 9))'; done; wait $t"
)


def require_full_mapping() -> None:
    require_bwrap()
    found = find_mapping()
    if isinstance(found, str):
        pytest.fail(f"the full id mapping is unavailable: {found}; run `make tools`")
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is missing: run `make tools`")


async def started(tmp_path: Path, user_namespace: UserNamespace) -> InstanceManager:
    fn = LocalFunction("svc", env={}, provisioned=1, command=("sleep", "infinity"), listens=False)
    runner = SandboxRunner("bwrap", user_namespace=user_namespace)
    manager = InstanceManager([fn], runner, tmp_path / "data", clock=FakeClock())
    DATA_DIRS[id(manager)] = tmp_path / "data"
    await manager.start()
    return manager


@pytest.fixture
async def mapped(tmp_path: Path) -> AsyncIterator[InstanceManager]:
    require_full_mapping()
    manager = await started(tmp_path, "auto")
    try:
        yield manager
    finally:
        await manager.aclose()


async def run(manager: InstanceManager, *argv: str) -> tuple[RunResult, Output]:
    out = Output()
    instance = manager.list("svc")[0].instance_id
    with anyio.fail_after(60):
        result = await manager.exec("svc", instance, argv, limits=LIMITS, on_output=out)
    return result, out


def state_dir(manager: InstanceManager) -> Path:
    """The instance's /tmp on the host (``started`` puts the data under ``tmp_path``)."""
    instance = manager.list("svc")[0].instance_id
    return DATA_DIRS[id(manager)] / "instances" / "svc" / instance / "tmp"


DATA_DIRS: dict[int, Path] = {}


@pytest.mark.bwrap
async def test_tcpdump_in_an_instance_writes_a_capture_of_its_loopback(
    mapped: InstanceManager,
) -> None:
    result, out = await run(mapped, "sh", "-c", CAPTURE_SCRIPT)
    assert result.exit_code == 0, out.text("stderr")
    capture = (state_dir(mapped) / "lo.cap").read_bytes()
    assert capture[:4] in PCAP_MAGICS
    # tcpdump dropped to its own user inside: the file is owned by a mapped id.
    mapping = mapped.runner.id_mapping
    assert mapping is not None
    owner = (state_dir(mapped) / "lo.cap").stat().st_uid
    assert mapping.uid < owner < mapping.uid + mapping.count


@pytest.mark.bwrap
async def test_inner_root_is_a_subordinate_id_and_may_set_groups(mapped: InstanceManager) -> None:
    mapping = mapped.runner.id_mapping
    assert mapping is not None
    _, uid_map = await run(mapped, "cat", "/proc/self/uid_map")
    assert uid_map.text("stdout").split() == ["0", str(mapping.uid), str(ID_COUNT)]
    _, setgroups = await run(mapped, "cat", "/proc/self/setgroups")
    assert setgroups.text("stdout").strip() == "allow"
    _, ids = await run(mapped, "id", "-u")
    assert ids.text("stdout").strip() == "0"


@pytest.mark.bwrap
async def test_a_file_of_the_host_root_is_unreadable_to_inner_root_with_all_its_capabilities(
    mapped: InstanceManager,
) -> None:
    mapping = mapped.runner.id_mapping
    assert mapping is not None
    tmp = state_dir(mapped)
    secret = tmp / "host-root.key"
    secret.write_text("host-root-secret\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    own = tmp / "inner-root.key"
    own.write_text("inner-root-file\n")
    os.chown(own, mapping.uid, mapping.gid)
    own.chmod(0o600)
    # The same 0600 mode, the same directory: inner root reads the file of its own id...
    control, readable = await run(mapped, "cat", "/tmp/inner-root.key")
    assert control.exit_code == 0 and readable.text("stdout") == "inner-root-file\n"
    _, caps = await run(mapped, "grep", "CapEff", "/proc/self/status")
    assert caps.text("stdout").split()[1] != "0000000000000000"
    # ...and not the host root's, although it holds CAP_DAC_OVERRIDE in its namespace.
    refused, out = await run(mapped, "cat", "/tmp/host-root.key")
    assert refused.exit_code != 0
    assert b"host-root-secret" not in out.data("stdout")


@pytest.mark.bwrap
async def test_the_instance_state_directory_belongs_to_inner_root(mapped: InstanceManager) -> None:
    mapping = mapped.runner.id_mapping
    assert mapping is not None
    info = state_dir(mapped).stat()
    assert (info.st_uid, info.st_gid) == (mapping.uid, mapping.gid)
    result, out = await run(mapped, "touch", "/tmp/written")
    assert result.exit_code == 0, out.text("stderr")


@pytest.mark.bwrap
async def test_without_the_full_mapping_instances_still_run_and_report_the_single_id_mode(
    tmp_path: Path,
) -> None:
    require_bwrap()
    manager = await started(tmp_path, "single")
    try:
        assert manager.runner.id_mapping is None
        result, uid_map = await run(manager, "cat", "/proc/self/uid_map")
        assert result.exit_code == 0
        assert uid_map.text("stdout").split()[2] == "1"  # one id mapped: root only
        assert "no packet captures" in manager.runner.description
    finally:
        await manager.aclose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("root:200000:65536\n", 200000, id="by-name"),
        pytest.param("0:300000:70000\n", 300000, id="by-uid"),
        pytest.param("alice:100000:65536\nroot:200000:65536\n", 200000, id="other-user-first"),
        pytest.param("root:200000:1000\n", None, id="range-too-small"),
        pytest.param("root:0:65536\n", None, id="host-root-refused"),
        pytest.param("root:x:65536\nbad line\n", None, id="malformed"),
        pytest.param("", None, id="empty"),
    ],
)
def test_the_subordinate_range_is_the_users_first_with_65536_ids(
    text: str, expected: int | None
) -> None:
    assert parse_subids(text, "root", 0) == expected
