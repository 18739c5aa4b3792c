"""open_sessions makes room in the pid space for 10,000 sessions and gives it back.

The kernel's pid_max is stood for by a file of the test's own (the bench takes the
path), so the machine's pid space is never touched.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from bench.open_sessions import PROCESSES_PER_SESSION, pid_space

ROOT = Path(__file__).resolve().parents[2]
BEFORE = 32768
WANTED = 20_000


def _pid_max(tmp_path: Path) -> Path:
    path = tmp_path / "pid_max"
    path.write_text(f"{BEFORE}\n", encoding="ascii")
    return path


def _value(path: Path) -> int:
    return int(path.read_text(encoding="ascii"))


def test_pid_max_is_raised_for_the_sessions_at_scale_and_set_back_after(tmp_path: Path) -> None:
    pid_max = _pid_max(tmp_path)
    with pid_space(WANTED, pid_max) as (fits, limit, done):
        inside = _value(pid_max)
    assert (fits, limit) == (WANTED, "")
    assert inside >= PROCESSES_PER_SESSION * WANTED
    assert done.startswith(f"kernel.pid_max {BEFORE:,} -> {inside:,}")
    assert _value(pid_max) == BEFORE


def test_pid_max_is_set_back_when_the_run_at_scale_fails(tmp_path: Path) -> None:
    pid_max = _pid_max(tmp_path)
    inside = 0
    with pytest.raises(RuntimeError), pid_space(WANTED, pid_max):
        inside = _value(pid_max)
        raise RuntimeError("the run at scale failed")
    assert inside > BEFORE
    assert _value(pid_max) == BEFORE


def test_pid_max_is_set_back_when_the_bench_process_is_killed(tmp_path: Path) -> None:
    pid_max = _pid_max(tmp_path)
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from bench.open_sessions import pid_space\n"
        f"with pid_space({WANTED}, Path(sys.argv[1])):\n"
        "    print(Path(sys.argv[1]).read_text().strip(), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(pid_max)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as bench:
        assert bench.stdout is not None
        inside = int(bench.stdout.readline())
        assert bench.wait() == -9
    assert inside > BEFORE
    # The guardian outlives the killed process; wait for its end through a pidfd.
    for pid in _processes_naming(str(pid_max)):
        _wait_for_end(pid)
    assert _value(pid_max) == BEFORE


def test_a_pid_max_the_bench_may_not_write_caps_the_sessions_and_names_the_sysctl(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A sysctl that even root may not write stands for a pid_max that cannot be raised.
    read_only = Path("/proc/sys/kernel/ngroups_max")
    if not read_only.exists():
        pytest.skip("no /proc/sys/kernel/ngroups_max")
    before = _value(read_only)
    wanted = before  # six processes each: far more than fits
    with pid_space(wanted, read_only) as (fits, limit, done):
        inside = _value(read_only)
    assert inside == before == _value(read_only)
    assert 0 <= fits < before // PROCESSES_PER_SESSION
    assert limit.startswith(f"kernel.pid_max {before:,} with ")
    assert done.endswith("not writable")
    assert "sysctl -w kernel.pid_max=" in capsys.readouterr().err


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if text.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _wait_for_end(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)
