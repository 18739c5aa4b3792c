"""open_sessions: long-running exec sessions held open through ExecGate.

One session is one exec of ``vmstat 600`` (its first sample at once, the next in ten
minutes): it stays open until the bench ends it. Through ExecGate, each session is an
``ExecService.exec`` (audit intent recorded, output collector, the FC client's
WebSocket, no permessage-deflate) served by a local instance host over the FC wire
protocol (the host's WebSocket end, the exit-status wrapper and its watchdog, a plain
subprocess); raw, each is the FC client alone against the same host.

- 1,000 sessions, ``execgate serve`` in-process (service and host in one process):
  the threads of that process with every session open (child exits are learnt through
  pidfds in the event loop, not a waiting thread per child), and its added memory.
- At scale (10,000 asked): ExecGate in the bench process, the instance hosts as
  `execgate serve` processes of their own, as many as keep each under RLIMIT_NOFILE's
  hard limit (20,000 here, not raisable without CAP_SYS_RESOURCE; a host holds four
  descriptors per session: three hosts at 10,000). The figure judged is the added
  resident memory of ExecGate's process and the hosts per session; each is also shown
  apart, with the instance's processes for context (counted while open: six per session
  on the local host, see PROCESSES_PER_SESSION), their proportional set size, the
  kernel's stacks and page tables, the machine's available memory used per session, and
  the time to open and to close them all.

What can hold the count at scale below 10,000, each named in the result:

- the pid space: six processes per session need about 66,000 pids. When
  kernel.pid_max is lower and the bench runs as root where /proc/sys/kernel/pid_max is
  writable, it raises it for the run and sets it back (a guardian process sets it back
  if the bench is killed), saying so on stderr; otherwise it prints the
  ``sysctl -w kernel.pid_max=N`` that would make room and opens as many as fit;
- memory: about 1.9 MB of the machine per session all told (mostly the instance's
  processes and namespaces), sized beforehand to keep a floor of available memory; the
  ramp also stops opening sessions if MemAvailable falls under that floor;
- time: sessions still opening after RAMP_AT_SCALE_S are measured as they are (on two
  shared cores the ramp slows as processes pile up: the machine's own process monitor
  takes most of a core at 40,000 processes);
- ExecGate's descriptor limit (one per session) and ``$EXECGATE_BENCH_MAX_SESSIONS``.

Each variant runs in its own fresh process; the added memory is resident set with
every session open minus before the first one opened, per session. The bench ends the
sessions by sending SIGTERM to their ``vmstat`` processes, so each exec finishes
normally (exit 143) and its audit outcome is written.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    emit,
    open_fds,
    quiet_logging,
    raise_nofile,
    result,
    rounded,
    rss_kb,
    run_module,
)
from bench.deployment import HostAccess, first_instance, local_host_config, serve_process
from bench.rig import (
    FUNCTION,
    HOLD_COMMAND,
    Rig,
    count_audit,
    discard,
    exec_request,
    serving,
    settings_for,
)
from policies.service.core import ExecService
from policies.types import Limits, Stream, Target
from server.settings import LocalHostSettings, ProviderSettings, SecretRef
from server.wiring import open_service

NAME = "open_sessions"
TARGET_KB = 150.0
TARGET_THREADS = 64
SESSIONS = 1000
AT_SCALE = 10_000
# A session through the FC wire protocol is four processes on an instance: the
# exit-status wrapper, the command, the watchdog and its timer; the local host adds two
# (unshare waiting for the session's pid namespace, and that namespace's root init).
# The bench counts them while the sessions are open. The pid space must hold them and
# leave room for everyone else on the machine.
PROCESSES_PER_SESSION = 6
PIDS_LEFT_FREE = 6000
PID_MAX = Path("/proc/sys/kernel/pid_max")
PID_MAX_LIMIT = 4 * 1024 * 1024  # the kernel's ceiling on 64-bit machines
# $EXECGATE_BENCH_MAX_SESSIONS caps the sessions at scale below what the machine allows.
MAX_SESSIONS_ENV = "EXECGATE_BENCH_MAX_SESSIONS"
# What a session costs the machine in all (ExecGate, host, the instance's four
# processes and their kernel memory: 1.85 MB measured with ``vmstat``); sessions at
# scale are sized so that the machine keeps its memory floor, and the ramp stops early
# if available memory falls under the floor anyway.
MACHINE_KB_PER_SESSION = 1900
MEMORY_FLOOR_MB = 1536
MEMORY_CHECK_EVERY = 100
# At scale the instance hosts are `execgate serve` processes of their own: a host holds
# four descriptors per open exec (its WebSocket end, two pipes, the child's pidfd) and
# one process may not hold more than RLIMIT_NOFILE's hard limit (20,000 here, and only
# CAP_SYS_RESOURCE raises it). ExecGate's process holds one per session (its WebSocket
# end).
HOST_FDS_PER_SESSION = 4
FDS_LEFT_FREE = 1024
INSTANCES = 4
OPENING_AT_ONCE = 50
READY_TIMEOUT_S = 900.0
# Opening 10,000 sessions took 15 minutes for the first 7,700 on two shared cores.
RAMP_AT_SCALE_S = 1500.0
ACCOUNT_ID = "1000000000000000"
SIGTERM_EXIT = 128 + signal.SIGTERM
WARM_UP = 20
# A session's command (HOLD_COMMAND) as /proc/PID/cmdline shows it.
_HOLD_CMDLINE = b"\0".join(arg.encode() for arg in HOLD_COMMAND) + b"\0"

# Opens session ``index`` and waits for its end: "ok", or how it ended otherwise.
Opener = Callable[[int, Callable[[Stream, bytes], Awaitable[None]]], Awaitable[str]]
OK = "ok"
NOT_STARTED = "not started"


def _status(pid: int | str, field: str) -> int:
    """A number from /proc/PID/status (kB for memory fields)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _threads() -> int:
    return _status("self", "Threads")


def _fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _descends_from_me(pid: int) -> bool:
    me = os.getpid()
    for _ in range(6):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                # The command name may hold spaces and parentheses: split after its end.
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return False
        pid = int(fields[1])
        if pid == me:
            return True
    return False


def _end_sessions() -> int:
    """SIGTERM every session command this process started (through the exit-status
    wrapper's shell)."""
    ended = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if cmdline.read() != _HOLD_CMDLINE:
                    continue
        except OSError:
            continue
        if _descends_from_me(int(entry)):
            try:
                os.kill(int(entry), signal.SIGTERM)
                ended += 1
            except ProcessLookupError:
                pass
    return ended


def _meminfo() -> dict[str, int]:
    """/proc/meminfo's fields, in kB."""
    with open("/proc/meminfo", encoding="ascii") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f}


def _memory_floor_kb() -> int:
    """The MemAvailable below which no further session is opened."""
    return max(MEMORY_FLOOR_MB * 1024, _meminfo()["MemTotal"] // 16)


def _descendants(roots: Sequence[int]) -> list[int]:
    """Every live process below ``roots`` (one pass over /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[parent].append(int(entry))
    found: list[int] = []
    queue = list(roots)
    while queue:
        kids = children.get(queue.pop(), [])
        found.extend(kids)
        queue.extend(kids)
    return found


def _pss_kb(pids: Sequence[int]) -> int:
    """The proportional set size of ``pids`` together (shared pages divided among their
    users), in kB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue  # ended meanwhile
    return total


async def _hold(
    opener: Opener, count: int, hosts: Sequence[int] = (), ramp_limit: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """Open ``count`` sessions, measure with all of them open, then end them.

    ``hosts``: the pids of instance-host processes, whose memory counts too, and whose
    children (the instance's processes) are measured apart. No session is opened once
    the machine's available memory falls under its floor: the figures are then taken
    with the sessions opened so far.
    """
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    ready = 0
    failed_early = 0  # ended before their first output
    all_ready = asyncio.Event()
    floor_kb = _memory_floor_kb()
    stopped_by = ""

    def settled() -> None:
        if ready + failed_early == count:
            all_ready.set()

    async def session(index: int) -> str:
        nonlocal stopped_by, failed_early
        await gate.acquire()
        released = False
        if stopped_by or all_ready.is_set():
            gate.release()
            return NOT_STARTED

        async def on_output(stream: Stream, data: bytes) -> None:
            nonlocal ready, released, stopped_by
            if not released and data:  # the first sample: the session is open
                released = True
                gate.release()
                ready += 1
                settled()
                if ready % MEMORY_CHECK_EVERY == 0 and not stopped_by:
                    available = _meminfo()["MemAvailable"]
                    if available < floor_kb:
                        stopped_by = (
                            f"memory: {available // 1024:,} MB available at {ready:,} "
                            f"sessions, floor {floor_kb // 1024:,} MB"
                        )
                        all_ready.set()

        try:
            return await opener(index, on_output)
        finally:
            if not released:
                gate.release()
                failed_early += 1
                settled()

    gc.collect()
    mem_before = _meminfo()
    own_before = rss_kb()
    hosts_before = sum(_status(pid, "VmRSS") for pid in hosts)
    fds_before = open_fds() + sum(_fds_of(pid) for pid in hosts)
    started = time.monotonic()
    tasks = [asyncio.create_task(session(i)) for i in range(count)]
    # Every session open or ended before opening; or the memory floor reached. No
    # session starts after that.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_ready.wait(), timeout=ramp_limit)
    all_ready.set()
    ramp = time.monotonic() - started
    gc.collect()
    opened = ready
    own = rss_kb()
    hosts_held = sum(_status(pid, "VmRSS") for pid in hosts)
    fds = open_fds() + sum(_fds_of(pid) for pid in hosts)
    threads = _threads()
    host_threads = [_status(pid, "Threads") for pid in hosts]
    # Tens of thousands of /proc files: read in a thread, so that the event loop goes on
    # answering the sessions' keepalive pings (a loop deaf for 20 s loses every session).
    measuring = time.monotonic()
    instance = await asyncio.to_thread(_descendants, hosts) if hosts else []
    instance_pss = await asyncio.to_thread(_pss_kb, instance)
    measured = time.monotonic() - measuring
    mem_held = _meminfo()
    closing = time.monotonic()
    pending = set(tasks)
    while pending:
        # Repeated: a session may still be opening when the first round is sent.
        await asyncio.to_thread(_end_sessions)
        _, pending = await asyncio.wait(pending, timeout=0.5)
    closed = time.monotonic() - closing
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for o in outcomes if o == OK)
    not_started = sum(1 for o in outcomes if o == NOT_STARTED)
    failures = collections.Counter(
        o if isinstance(o, str) else f"{type(o).__name__}: {str(o)[:80]}"
        for o in outcomes
        if o not in (OK, NOT_STARTED)
    )
    per = max(opened, 1)
    added = own + hosts_held - own_before - hosts_before
    at_scale: dict[str, Any] = {}
    if hosts:

        def kernel_kb(info: dict[str, int]) -> int:
            return info["KernelStack"] + info["PageTables"]

        at_scale = {
            "host_processes": len(hosts),
            "host_threads_open": host_threads,
            "execgate_kb_per_session": rounded((own - own_before) / per),
            "hosts_kb_per_session": rounded((hosts_held - hosts_before) / per),
            "instance_processes": len(instance),
            "instance_processes_per_session": rounded(len(instance) / per),
            "instance_pss_kb_per_session": rounded(instance_pss / per),
            "kernel_kb_per_session": rounded((kernel_kb(mem_held) - kernel_kb(mem_before)) / per),
            "machine_used_kb_per_session": rounded(
                (mem_before["MemAvailable"] - mem_held["MemAvailable"]) / per
            ),
            "mem_available_open_mb": mem_held["MemAvailable"] // 1024,
            "memory_floor_mb": floor_kb // 1024,
        }
    return {
        "sessions": count,
        "opened": opened,
        "not_started": not_started,
        "stopped_by": stopped_by or None,
        "ok": ok,
        "errors": count - not_started - ok,
        "failures": dict(failures.most_common(5)),
        "rss_before_mb": rounded((own_before + hosts_before) / 1024),
        "rss_open_mb": rounded((own + hosts_held) / 1024),
        "added_kb_per_session": rounded(added / per),
        "fds_open": fds,
        "fds_per_session": rounded((fds - fds_before) / per),
        "threads_open": threads,
        **at_scale,
        "ramp_s": rounded(ramp),
        "measure_s": rounded(measured),
        "close_s": rounded(closed),
    }


def _execgate_opener(service: ExecService, target: Callable[[int], Target]) -> Opener:
    async def opener(index: int, on_output: Callable[[Stream, bytes], Awaitable[None]]) -> str:
        async def text_sink(stream: Stream, text: str) -> None:
            await on_output(stream, text.encode())

        request = exec_request(target(index), HOLD_COMMAND)
        out = await service.exec(request, on_output=text_sink)
        if out.exit_code == SIGTERM_EXIT and out.error_code is None:
            return OK
        return f"exit {out.exit_code} {out.error_code}: {(out.error or '')[:80]}"

    return opener


def _raw_opener(rig: Rig) -> Opener:
    async def opener(index: int, on_output: Callable[[Stream, bytes], Awaitable[None]]) -> str:
        run = await rig.raw.exec(
            rig.target(index), HOLD_COMMAND, limits=Limits(timeout=600.0), on_output=on_output
        )
        return OK if run.exit_code == SIGTERM_EXIT else f"exit {run.exit_code}"

    return opener


async def _variant(name: str, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as root:
        async with serving(Path(root), sandbox="subprocess", instances=INSTANCES) as rig:
            for i in range(WARM_UP):  # every code path once, before the baseline
                await rig.service.exec(rig.request("true", index=i))
                await rig.raw.exec(rig.target(i), ("true",), limits=Limits(), on_output=discard)
            if name == "execgate":
                opener = _execgate_opener(rig.service, rig.target)
            else:
                opener = _raw_opener(rig)
            figures = await _hold(opener, count)
            url = rig.database_url
        if name == "execgate":
            figures["audit"] = await _audited(url)
    return {"variant": name, **figures}


async def _audited(database_url: str) -> dict[str, int]:
    audit = await count_audit(database_url)
    # The warm-up execs through ExecGate are in the audit too.
    return {k: audit[k] - WARM_UP for k in ("intents", "outcomes")}


@contextlib.asynccontextmanager
async def _hosts(root: Path, count: int) -> AsyncIterator[tuple[list[int], dict[str, Any]]]:
    """``count`` local FC hosts, each an `execgate serve` process: (their pids, the FC
    providers that reach them, by name)."""
    policy = root / "bench-policy.yaml"
    settings_for(root)  # writes the policy
    async with contextlib.AsyncExitStack() as stack:
        pids: list[int] = []
        providers: dict[str, Any] = {}
        for i in range(count):
            name = f"host{i}"
            config = local_host_config(root, policy=policy, function=FUNCTION, name=name)
            proc, banner = await stack.enter_async_context(serve_process(config))
            access = HostAccess.of(root / name)
            key_env = f"EXECGATE_BENCH_{name.upper()}_KEY"
            os.environ[key_env + "_ID"] = access.access_key_id
            os.environ[key_env + "_SECRET"] = access.access_key_secret
            providers[name] = (
                ProviderSettings(
                    type="fc",
                    endpoint=access.url,
                    account_id=ACCOUNT_ID,
                    region="local",
                    access_key_id=SecretRef(env=key_env + "_ID"),
                    access_key_secret=SecretRef(env=key_env + "_SECRET"),
                ),
                first_instance(banner, FUNCTION).split("/", 1)[1],
            )
            pids.append(proc.pid)
        yield pids, providers


async def _at_scale(count: int, hosts: int) -> dict[str, Any]:
    """ExecGate in this process (no HTTP server), its FC providers reaching ``hosts``
    instance hosts in processes of their own."""
    with tempfile.TemporaryDirectory(prefix="execgate-bench-") as tmp:
        root = Path(tmp)
        async with _hosts(root, hosts) as (pids, by_name):
            settings = settings_for(root).model_copy(
                update={
                    "providers": {name: cfg for name, (cfg, _) in by_name.items()},
                    "default_provider": next(iter(by_name)),
                    "local_host": LocalHostSettings(enabled=False),
                }
            )
            targets = [Target(FUNCTION, inst, provider=name) for name, (_, inst) in by_name.items()]

            def target(index: int) -> Target:
                return targets[index % len(targets)]

            async with open_service(settings) as service:
                for i in range(WARM_UP):
                    await service.exec(exec_request(target(i), ("true",)))
                figures = await _hold(
                    _execgate_opener(service, target), count, pids, RAMP_AT_SCALE_S
                )
        figures["audit"] = await _audited(settings.database_url)
    return {"variant": "execgate-at-scale", **figures}


def _say(text: str) -> None:
    sys.stderr.write(f"{NAME}: {text}\n")
    sys.stderr.flush()


def _tasks() -> int:
    with open("/proc/loadavg", encoding="ascii") as f:
        return int(f.read().split()[3].split("/")[1])


def _write_int(path: Path, value: int) -> bool:
    """Write ``value`` to ``path`` where this process may; whether it now reads so."""
    try:
        path.write_text(f"{value}\n", encoding="ascii")
        return int(path.read_text(encoding="ascii")) == value
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def pid_space(wanted: int, pid_max: Path = PID_MAX) -> Iterator[tuple[int, str, str]]:
    """Room in the pid space for ``wanted`` sessions while the block runs: (sessions
    that fit, what limited them or "", what was done to kernel.pid_max).

    kernel.pid_max (``pid_max``) is raised for the block when it is too low and this
    process may write it (root), and set back afterwards: by this process, and by a
    guardian process that sets it back when this one ends without doing so (killed at
    the runner's time limit). When it may not be raised, the sessions are capped to
    what fits and the command that would make room is printed.
    """
    before, tasks = int(pid_max.read_text(encoding="ascii")), _tasks()
    needed = tasks + PIDS_LEFT_FREE + PROCESSES_PER_SESSION * wanted
    if needed <= before:
        yield wanted, "", f"kernel.pid_max {before:,}: enough"
        return
    raised = min(-(-needed // 1024) * 1024, PID_MAX_LIMIT)
    guardian = subprocess.Popen(
        ["/bin/sh", "-c", 'cat >/dev/null; echo "$1" >"$2"', "sh", str(before), str(pid_max)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert guardian.stdin is not None
    try:
        if not _write_int(pid_max, raised):
            fits = max((before - tasks - PIDS_LEFT_FREE) // PROCESSES_PER_SESSION, 0)
            limit = (
                f"kernel.pid_max {before:,} with {tasks:,} tasks running "
                f"({PROCESSES_PER_SESSION} processes per session, {PIDS_LEFT_FREE:,} pids "
                "left free)"
            )
            _say(
                f"{limit} leaves room for {fits:,} sessions; for {wanted:,}, run "
                f"`sysctl -w kernel.pid_max={raised}` as root first"
            )
            guardian.kill()  # nothing to set back
            yield fits, limit, f"kernel.pid_max {before:,}: not writable"
            return
        _say(f"kernel.pid_max {before:,} -> {raised:,} for {wanted:,} sessions")
        yield wanted, "", f"kernel.pid_max {before:,} -> {raised:,} for the run, then back"
        if _write_int(pid_max, before):
            _say(f"kernel.pid_max back to {before:,}")
        else:
            _say(f"kernel.pid_max could not be set back to {before:,}")
    finally:
        guardian.stdin.close()
        guardian.wait()


def _other_caps(wanted: int) -> tuple[int, str]:
    """``wanted`` or fewer sessions, as the machine's memory, ExecGate's descriptor
    limit and $EXECGATE_BENCH_MAX_SESSIONS allow; and what limited them."""
    caps = [(wanted, "")]
    memory = _meminfo()["MemAvailable"] - _memory_floor_kb()
    caps.append(
        (
            max(memory // MACHINE_KB_PER_SESSION, 0),
            f"memory: {_meminfo()['MemAvailable'] // 1024:,} MB available, "
            f"{MACHINE_KB_PER_SESSION:,} KB per session, a floor of "
            f"{_memory_floor_kb() // 1024:,} MB kept",
        )
    )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        caps.append((hard - FDS_LEFT_FREE, f"RLIMIT_NOFILE hard limit {hard:,} (ExecGate)"))
    if os.environ.get(MAX_SESSIONS_ENV):
        caps.append((int(os.environ[MAX_SESSIONS_ENV]), f"${MAX_SESSIONS_ENV}"))
    return min(caps, key=lambda cap: cap[0])


def _hosts_for(sessions: int) -> int:
    """How many host processes hold ``sessions`` with each under its descriptor limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 1
    return max(1, -(-sessions * HOST_FDS_PER_SESSION // (hard - FDS_LEFT_FREE)))


def _complete(figures: dict[str, Any], count: int) -> bool:
    return bool(
        figures["errors"] == 0
        and figures["opened"] == count
        and figures["audit"]["outcomes"] == count
    )


def run(quick: bool) -> Result:
    count = 100 if quick else SESSIONS
    wanted = 500 if quick else AT_SCALE
    timeout = READY_TIMEOUT_S + 300
    raw = run_module(__name__, "--variant", "raw", "--count", str(count), timeout=timeout)
    ours = run_module(__name__, "--variant", "execgate", "--count", str(count), timeout=timeout)
    with pid_space(wanted) as (fits, pid_limit, pid_done):
        scale, capped_by = _other_caps(fits)
        capped_by = capped_by or pid_limit
        hosts = _hosts_for(scale)
        if scale < wanted:
            _say(f"{scale:,} sessions at scale, not {wanted:,}: {capped_by}")
        big = run_module(
            __name__,
            "--variant",
            "at-scale",
            "--count",
            str(scale),
            "--hosts",
            str(hosts),
            timeout=RAMP_AT_SCALE_S + 600,
        )
    per_session = float(big["added_kb_per_session"])
    threads = int(ours["threads_open"])
    return result(
        NAME,
        sessions=count,
        errors=ours["errors"] + big["errors"],
        threads_open=threads,
        added_kb_per_session=float(ours["added_kb_per_session"]),
        baseline_added_kb_per_session=raw["added_kb_per_session"],
        sessions_at_scale=big["opened"],
        sessions_at_scale_capped_by=big["stopped_by"] or capped_by or None,
        added_kb_per_session_at_scale=per_session,
        pid_space=pid_done,
        execgate=ours,
        baseline=raw,
        at_scale=big,
        mode=(
            f"{count:,} sessions: execgate serve in-process, FC client -> local host -> plain "
            f"subprocess; {scale:,}: ExecGate in-process, FC clients -> {hosts} local host "
            "processes (open-file hard limit per process: "
            f"{big['nofile_limit']:,})"
        ),
        target=(
            f"no errors, every exec audited; <= {TARGET_THREADS} threads at {count:,} open "
            f"sessions; added memory < {TARGET_KB:g} KB per session at {wanted:,}"
        ),
        met=_complete(ours, count)
        and _complete(big, wanted)
        and threads <= TARGET_THREADS
        and per_session < TARGET_KB,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=("raw", "execgate", "at-scale"), required=True)
    parser.add_argument("--count", type=int, default=SESSIONS)
    parser.add_argument("--hosts", type=int, default=1)
    args = parser.parse_args()
    quiet_logging()
    # In one process each session holds five descriptors (two socket ends, two pipes,
    # the child's pidfd); the host processes inherit the limit.
    limit = raise_nofile(6 * args.count + 1024)
    if args.variant == "at-scale":
        figures = asyncio.run(_at_scale(args.count, args.hosts))
    else:
        figures = asyncio.run(_variant(args.variant, args.count))
    emit({**figures, "nofile_limit": limit})


if __name__ == "__main__":
    main()
