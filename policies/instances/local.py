"""Local function instances: what the embedded instance host serves.

A :class:`LocalFunction` is declared in config. The :class:`InstanceManager` keeps its
instances alive the way Function Compute does:

- provisioned instances exist from :meth:`InstanceManager.start` until shutdown, and keep
  their ids and state directories across restarts on the same data directory
  (``instances.json``), so an id copied from ``instances list`` stays valid;
- on-demand instances start on :meth:`InstanceManager.invoke` when no live instance has
  a free concurrency slot, and are released once idle for ``idle_release_seconds`` with
  no invocation and no exec open; their state directory goes with them;
- every instance is a running sandbox (``live``): the function's ``command`` is its
  first process (``sleep infinity`` for a function without one), started with the
  instance and killed when it is released or the host shuts down;
- exec enters that running sandbox (its processes, network, state directory at /tmp),
  does not use the function's concurrency, and keeps the instance from being released
  while it runs;
- an invocation of a function with a ``command`` is forwarded to the function's HTTP
  server through ``invocation_socket`` (FC custom-runtime style); in sandbox mode
  ``none`` no function process runs and execs are plain subprocesses;
- exec on a released (or never existing) instance raises ``InstanceNotRunning``.

One manager owns a data directory at a time (a lock file enforces it).

On disk: ``data_dir/instances.json`` and ``data_dir/instances/<function>/<id>/tmp``.
"""

from __future__ import annotations

import asyncio
import builtins
import fcntl
import logging
import re
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from policies.errors import ConfigError, InstanceError, InstanceNotRunning, ProviderUnavailable
from policies.instances.childwatch import use_pidfd_child_watcher
from policies.instances.live import RUN_MOUNT, LiveSandbox
from policies.instances.local_store import Provisioned, load_provisioned, save_provisioned
from policies.instances.sandbox import DEFAULT_ENV, SandboxRunner, SandboxSpec, check_env
from policies.ports import OutputCallback
from policies.types import InstanceInfo, Limits, RunResult

logger = logging.getLogger(__name__)

LATEST = "LATEST"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_REAP_MAX_INTERVAL = 5.0
_REAP_MIN_INTERVAL = 0.05
_RELEASED_MEMORY = 10_000
IDLE_COMMAND = ("sleep", "infinity")
FC_SERVER_PORT = "9000"


class UnknownFunction(InstanceError):
    code = "unknown_function"

    def __init__(self, function: str) -> None:
        super().__init__(f"no local function named {function} is configured", function=function)


class InstanceLimitReached(InstanceError):
    code = "instance_limit"
    default_message = "the function has no free instance and may not start another"


@dataclass(frozen=True)
class LocalFunction:
    """A function served by local instances.

    ``instance_concurrency`` is how many invocations one instance serves at once;
    ``max_on_demand`` caps the on-demand instances alive at once.

    Raises: ConfigError when a value is out of range.
    """

    name: str
    env: Mapping[str, str]
    provisioned: int = 1
    idle_release_seconds: float = 300.0
    instance_concurrency: int = 1
    code_dir: Path | None = None
    max_on_demand: int = 16
    command: tuple[str, ...] = ()
    listens: bool = True  # the command takes invocations on /run/fc/invoke.sock

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"local function name {self.name!r} is not a valid name")
        if self.provisioned < 0 or self.max_on_demand < 0:
            raise ConfigError(f"function {self.name}: instance counts cannot be negative")
        if self.instance_concurrency < 1:
            raise ConfigError(f"function {self.name}: instance_concurrency must be >= 1")
        if self.idle_release_seconds < 0:
            raise ConfigError(f"function {self.name}: idle_release_seconds must be >= 0")
        check_env(self.env)


def new_instance_id() -> str:
    """A random id shaped like Function Compute's: ``c-xxxxxxxx-xxxxxxxx-xxxxxxxxxxxx``."""
    return f"c-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(6)}"


@dataclass(eq=False)
class _Instance:
    instance_id: str
    function: str
    provisioned: bool
    root: Path  # data_dir/instances/<function>/<id>
    created_ms: int
    last_activity: float
    invocations: int = 0
    execs: set[asyncio.Task[RunResult]] = field(default_factory=set)
    sandbox: LiveSandbox | None = None
    booting: asyncio.Task[None] | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / "tmp"


class InstanceManager:
    """Live local instances of the configured functions; see the module docstring."""

    def __init__(
        self,
        functions: Sequence[LocalFunction],
        runner: SandboxRunner,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._functions = {f.name: f for f in functions}
        if len(self._functions) != len(functions):
            raise ConfigError("local function names must be unique")
        self._runner = runner
        self._data_dir = data_dir
        self._clock = clock
        self._instances: dict[str, _Instance] = {}
        self._released: OrderedDict[str, None] = OrderedDict()
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._lock_file: IO[bytes] | None = None

    @property
    def functions(self) -> tuple[LocalFunction, ...]:
        return tuple(self._functions.values())

    @property
    def runner(self) -> SandboxRunner:
        return self._runner

    @property
    def sandboxed(self) -> bool:
        """Whether commands run in bubblewrap sandboxes (known after :meth:`start`)."""
        return self._runner.sandboxed

    def get_function(self, name: str) -> LocalFunction:
        """Raises: UnknownFunction."""
        try:
            return self._functions[name]
        except KeyError:
            raise UnknownFunction(name) from None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Probe the sandbox, bring up the provisioned instances, start releasing idle ones.

        Raises: ConfigError when the data directory is used by another manager or its
        ``instances.json`` is unreadable; ProviderUnavailable when the sandbox mode is
        ``bwrap`` and bubblewrap does not work.
        """
        if self._lock_file is not None:
            return
        # Every exec is a child process, open as long as its command runs: learn of their
        # exits in the loop rather than with a waiting thread each.
        use_pidfd_child_watcher()
        # The data directory holds ExecGate's keys (and often its database): only the
        # user running ExecGate may enter it; an unsandboxed command runs as another.
        await asyncio.to_thread(self._data_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._data_dir.chmod, 0o700)
        self._runner.protect(self._data_dir)
        await self._runner.probe()
        await asyncio.to_thread(self._open_data_dir)
        try:
            await asyncio.gather(*(self._boot(inst) for inst in self._instances.values()))
        except BaseException:
            await self._stop_all()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            raise
        self._reaper = asyncio.create_task(self._reap_forever())

    async def aclose(self) -> None:
        """Stop releasing, cancel running execs, release every on-demand instance."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        running = [task for inst in self._instances.values() for task in inst.execs]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for inst in list(self._instances.values()):
            if not inst.provisioned:
                self._release(inst)
        await self._stop_all()
        self._instances.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _open_data_dir(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self._data_dir / "instances.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"the data directory {self._data_dir} is in use by another ExecGate instance host"
            ) from None
        try:
            self._restore_provisioned()
        except BaseException:
            lock.close()
            raise
        self._lock_file = lock

    def _restore_provisioned(self) -> None:
        saved = load_provisioned(self._data_dir)
        now = self._clock()
        for fn in self._functions.values():
            kept = saved.get(fn.name, [])[: fn.provisioned]
            while len(kept) < fn.provisioned:
                kept.append((new_instance_id(), int(time.time() * 1000)))
            for instance_id, created_ms in kept:
                inst = _Instance(
                    instance_id, fn.name, True, self._root(fn.name, instance_id), created_ms, now
                )
                self._runner.make_state_dir(inst.state_dir)
                self._instances[instance_id] = inst
        saving: Provisioned = {name: [] for name in self._functions}
        for inst in self._instances.values():
            saving[inst.function].append((inst.instance_id, inst.created_ms))
        save_provisioned(self._data_dir, saving)
        # Whatever else is on disk belongs to instances that no longer exist: on-demand
        # instances of an earlier run, or provisioned ones beyond the configured count.
        base = self._data_dir / "instances"
        for path in base.glob("*/*"):
            if path.name not in self._instances and path.is_dir():
                self._runner.discard_state_dir(path / "tmp")
                shutil.rmtree(path, ignore_errors=True)

    def _spec(self, inst: _Instance) -> SandboxSpec:
        fn = self._functions[inst.function]
        runtime = {
            "FC_FUNCTION_NAME": fn.name,
            "FC_INSTANCE_ID": inst.instance_id,
            "FC_SERVER_PORT": FC_SERVER_PORT,
        }
        return SandboxSpec(
            env={**runtime, **fn.env}, state_dir=inst.state_dir, code_dir=fn.code_dir
        )

    async def _boot(self, inst: _Instance) -> None:
        """Start the instance's sandbox with the function's process in it."""
        if not self._runner.sandboxed or self._runner.bwrap_path is None:
            return  # mode "none": no sandbox to keep running
        fn = self._functions[inst.function]
        spec = self._spec(inst)
        run_dir = inst.root / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        launch = self._runner.launch(
            spec, {**DEFAULT_ENV, **spec.env}, extra_mounts=[(run_dir, RUN_MOUNT)]
        )
        mapping = self._runner.id_mapping
        owner = (mapping.uid, mapping.gid) if mapping is not None else None
        live = LiveSandbox(run_dir, inst.root / "function.log", owner=owner)
        inst.sandbox = live
        await live.start(
            launch.argv,
            launch.options,
            fn.command or IDLE_COMMAND,
            bwrap=self._runner.bwrap_path,
            wait_socket=bool(fn.command) and fn.listens,
        )
        logger.info("instance %s of %s is running", inst.instance_id, inst.function)

    async def _stop_all(self) -> None:
        live = [i.sandbox for i in self._instances.values() if i.sandbox is not None]
        await asyncio.gather(*(s.stop() for s in live), return_exceptions=True)
        for task in list(self._closing):
            await asyncio.gather(task, return_exceptions=True)

    def invocation_socket(self, instance_id: str) -> str | None:
        """Where the function of a live instance takes invocations; None: no function
        process (a function without ``command``, or sandbox mode ``none``)."""
        inst = self._instances.get(instance_id)
        fn = self._functions[inst.function] if inst is not None else None
        if inst is None or inst.sandbox is None or fn is None or not (fn.command and fn.listens):
            return None
        return inst.sandbox.invoke_socket

    def _root(self, function: str, instance_id: str) -> Path:
        return self._data_dir / "instances" / function / instance_id

    # ------------------------------------------------------------------ instances

    def list(
        self, function: str, *, qualifier: str | None = None, provider: str = "local"
    ) -> builtins.list[InstanceInfo]:
        """Live instances of ``function``, oldest first.

        Local functions have one version: every instance serves every qualifier, and
        ``qualifier`` is only echoed back.

        Raises: UnknownFunction.
        """
        self.get_function(function)
        sandboxed, isolation = self._runner.sandboxed, self._runner.isolation
        return [
            InstanceInfo(
                instance_id=inst.instance_id,
                function=function,
                provider=provider,
                status="Running",
                qualifier=qualifier or LATEST,
                version_id=LATEST,
                created_ms=inst.created_ms,
                sandboxed=sandboxed,
                isolation=isolation,
            )
            for inst in sorted(self._instances.values(), key=lambda i: i.created_ms)
            if inst.function == function
        ]

    def was_released(self, instance_id: str) -> bool:
        """True when ``instance_id`` was a local instance that has been released."""
        return instance_id in self._released

    async def invoke(self, function: str) -> str:
        """Start one invocation of ``function`` and return the id of the instance serving it.

        Provisioned instances serve first, then live on-demand instances, each up to
        ``instance_concurrency`` open invocations; otherwise a new on-demand instance
        starts. The invocation holds its slot (and keeps the instance alive) until
        :meth:`release_invocation` is called with the returned id.

        Raises: UnknownFunction; InstanceLimitReached when ``max_on_demand`` instances
        are all busy; ProviderUnavailable before :meth:`start`.
        """
        fn = self.get_function(function)
        self._require_started()
        pool = sorted(
            (i for i in self._instances.values() if i.function == function),
            key=lambda i: (not i.provisioned, i.created_ms),
        )
        inst = next((i for i in pool if i.invocations < fn.instance_concurrency), None)
        if inst is None:
            if sum(not i.provisioned for i in pool) >= fn.max_on_demand:
                raise InstanceLimitReached(function=function)
            instance_id = new_instance_id()
            inst = _Instance(
                instance_id,
                function,
                False,
                self._root(function, instance_id),
                int(time.time() * 1000),
                self._clock(),
            )
            # Synchronous on purpose: no await between the capacity check and taking the
            # slot, so concurrent invokes cannot overshoot max_on_demand.
            try:
                self._runner.make_state_dir(inst.state_dir)
            except OSError as exc:
                logger.exception("cannot create the state directory of %s", instance_id)
                raise ProviderUnavailable("the local instance could not be started") from exc
            self._instances[instance_id] = inst
            inst.booting = asyncio.create_task(self._boot(inst))
            logger.info("started on-demand instance %s of %s", instance_id, function)
        inst.invocations += 1
        inst.last_activity = self._clock()
        if inst.booting is not None:
            try:
                await asyncio.shield(inst.booting)
            except BaseException:
                inst.invocations -= 1
                if inst.booting.done():
                    self._release(inst)
                raise
        return inst.instance_id

    def release_invocation(self, instance_id: str) -> None:
        """End one invocation started by :meth:`invoke`; unknown ids are ignored."""
        inst = self._instances.get(instance_id)
        if inst is not None and inst.invocations > 0:
            inst.invocations -= 1
            inst.last_activity = self._clock()

    async def exec(
        self,
        function: str,
        instance_id: str,
        argv: Sequence[str],
        *,
        limits: Limits,
        on_output: OutputCallback,
        stdin: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run argv in the instance's sandbox; see :meth:`SandboxRunner.run`.

        Raises: UnknownFunction; InstanceNotRunning for an id that is not live;
        ProviderUnavailable when the sandbox cannot start or the host shuts down
        during the exec; CommandRejected for an empty argv.
        """
        self.get_function(function)
        inst = self._instances.get(instance_id)
        if inst is None or inst.function != function:
            raise InstanceNotRunning(instance_id, function)
        if inst.booting is not None and not inst.booting.done():
            raise InstanceNotRunning(instance_id, function)  # not started yet
        spec = self._spec(inst)
        inst.last_activity = self._clock()
        # Its own task, so that shutting the host down can cancel it without cancelling
        # the caller.
        if inst.sandbox is not None:
            run = self._runner.run_entered(
                inst.sandbox, argv, spec, limits=limits, on_output=on_output, stdin=stdin
            )
        else:
            run = self._runner.run(argv, spec, limits=limits, on_output=on_output, stdin=stdin)
        task = asyncio.create_task(run)
        inst.execs.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller was cancelled (the run was cancelled with it)
            raise ProviderUnavailable(
                "the local instance host shut down while the command ran"
            ) from None
        finally:
            inst.execs.discard(task)
            inst.last_activity = self._clock()

    def release_idle(self) -> builtins.list[str]:
        """Release on-demand instances idle for longer than their function allows.

        An instance with an open invocation or a running exec is never idle.
        Returns the released ids.
        """
        now = self._clock()
        released = []
        for inst in list(self._instances.values()):
            if inst.provisioned or inst.invocations or inst.execs:
                continue
            if now - inst.last_activity > self._functions[inst.function].idle_release_seconds:
                self._release(inst)
                released.append(inst.instance_id)
        return released

    def _release(self, inst: _Instance) -> None:
        self._instances.pop(inst.instance_id, None)
        self._released[inst.instance_id] = None
        if inst.sandbox is not None:
            inst.sandbox.kill()
            task = asyncio.get_running_loop().create_task(inst.sandbox.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if len(self._released) > _RELEASED_MEMORY:
            self._released.popitem(last=False)
        self._runner.discard_state_dir(inst.state_dir)
        shutil.rmtree(inst.root, ignore_errors=True)
        logger.info("released on-demand instance %s of %s", inst.instance_id, inst.function)

    async def _reap_forever(self) -> None:
        idle = min((f.idle_release_seconds for f in self._functions.values()), default=20.0)
        interval = max(_REAP_MIN_INTERVAL, min(idle / 4, _REAP_MAX_INTERVAL))
        while True:
            await asyncio.sleep(interval)
            try:
                self.release_idle()
            except Exception:
                logger.exception("releasing idle instances failed")

    def _require_started(self) -> None:
        if self._lock_file is None:
            raise ProviderUnavailable("the local instance host is not running")
