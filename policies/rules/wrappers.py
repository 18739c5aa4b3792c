"""Programs and arguments that run arbitrary code.

A shell, an interpreter or a wrapper (``env CMD``, ``timeout 5 CMD``, ``xargs``,
``nsenter``...) turns one allowed argv into any command at all. ExecGate therefore marks
*guarded positions* in an argv:

- position 0 when the program is a wrapper: its name (the basename of argv[0], lower-cased,
  with a version suffix such as ``3.11`` or ``-5.2`` dropped) is in ``WRAPPERS`` or starts
  with one of ``WRAPPER_PREFIXES`` (``python3.11``, ``perl5.36``...);
- every later position whose program name is a wrapper, when argv[0] is one too
  (``timeout 5 sh``, ``nice env bash``): the nested command is code as well;
- arguments that make an otherwise harmless program run code: ``find -exec/-execdir/
  -ok/-okdir/-delete/-fprint*``, ``tcpdump -z``, ``ip netns exec`` / ``ip -batch``.

Some programs are wrappers whatever their arguments, because their scripts or options
can run commands and no argument check can tell: ``sed`` (the ``e`` command, the ``w``
flag), ``awk`` (``system()``), ``tar`` (``--to-command``, ``-I``), ``git`` (pagers,
aliases), ``apt-get`` and other package managers (maintainer scripts, ``-o`` hooks),
``less``/``man``/editors (shell escapes), ``py-spy``/``perf`` (they start programs).

An allow or approve rule matches a guarded position only with a literal pattern element
(or a ``oneof`` that lists the exact value): placeholders, globs, regexes and the ``...``
rest marker never do. Deny rules match anything. The lists err on the side of including a
program: the cost of a false entry is only that a rule must name it literally.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

WRAPPERS: frozenset[str] = frozenset(
    {
        # shells and shell builtins that run their arguments
        "sh", "bash", "rbash", "dash", "zsh", "ash", "ksh", "mksh", "pdksh", "yash", "csh",
        "tcsh", "fish", "busybox", "toybox", "eval", "exec", "source", ".", "command",
        "builtin",
        # wrappers that run the command given in their arguments
        "env", "xargs", "nohup", "timeout", "nice", "ionice", "chrt", "taskset", "numactl",
        "setsid", "stdbuf", "unbuffer", "time", "watch", "flock", "parallel", "script",
        "setarch", "linux32", "linux64", "x86_64", "i386", "i686", "uname26", "prlimit",
        "cpulimit", "faketime", "catchsegv",
        "chronic", "daemonize", "start-stop-daemon", "run-parts", "at", "batch", "crontab",
        # privilege, namespace and sandbox changers
        "sudo", "sudoedit", "su", "doas", "runuser", "pkexec", "sg", "newgrp", "runcon",
        "setpriv", "capsh", "nsenter", "chroot", "unshare", "bwrap", "firejail",
        "systemd-run", "systemd-nspawn", "machinectl",
        # tracers and debuggers (they start or inject into programs)
        "strace", "ltrace", "gdb", "lldb", "valgrind", "perf", "py-spy",
        # interpreters and code-running tools
        "awk", "gawk", "mawk", "nawk", "sed", "gsed", "dc", "m4", "ed", "ex", "vi", "vim",
        "nvim", "view", "emacs", "less", "more", "most", "man", "pg", "expect", "tclsh",
        "wish", "irb", "deno", "bun", "java", "jshell", "jrunscript", "jjs", "groovy",
        "scala", "r", "rscript", "julia", "erl", "escript", "elixir", "iex", "guile",
        "racket", "sbcl", "clisp", "ocaml", "ghci", "runghc", "osascript", "pwsh",
        "powershell", "make", "gmake", "nmap", "screen", "tmux", "dtach", "ld.so", "tar",
        "zip", "rsync", "git", "socat", "nc", "ncat", "netcat", "ssh", "scp", "sftp",
        # container and cluster exec
        "docker", "podman", "nerdctl", "ctr", "crictl", "kubectl", "lxc-attach",
        # package managers (maintainer scripts, install hooks, -o Pre-Invoke=...)
        "apt", "apt-get", "dpkg", "yum", "dnf", "microdnf", "rpm", "apk", "npm", "npx",
        "yarn", "pnpm", "gem", "bundle", "cargo", "go", "composer", "conda", "uv", "uvx",
    }
)  # fmt: skip

WRAPPER_PREFIXES: tuple[str, ...] = (
    "python", "pypy", "perl", "ruby", "php", "lua", "node", "pip", "ld-linux", "ld-musl",
)  # fmt: skip

_FIND_ACTIONS = frozenset(
    {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"}
)
_IP_EXEC = frozenset({"exec", "-b", "-batch", "--batch"})
_VERSION_SUFFIX = re.compile(r"(?:[-_.]?\d[\d.]*|\.static)$")


@functools.lru_cache(maxsize=1024)
def program_name(arg: str) -> str:
    """The name a program is known by: basename, lower-cased, version suffix dropped."""
    base = arg.rsplit("/", 1)[-1].strip().lower()
    return _VERSION_SUFFIX.sub("", base) or base


@functools.lru_cache(maxsize=1024)
def is_wrapper(arg: str) -> bool:
    """True when ``arg`` names a program that runs arbitrary code."""
    base = arg.rsplit("/", 1)[-1].strip().lower()
    return any(
        name in WRAPPERS or name.startswith(WRAPPER_PREFIXES) for name in (base, program_name(arg))
    )


def _code_flag(program: str, arg: str) -> bool:
    if program == "find":
        return arg in _FIND_ACTIONS
    if program == "tcpdump":
        # -z runs a post-rotate command; getopt also accepts it inside a cluster (-nz).
        return arg.startswith("-") and not arg.startswith("--") and "z" in arg
    if program == "ip":
        return arg in _IP_EXEC
    return False


def guarded_positions(argv: Sequence[str]) -> frozenset[int]:
    """Positions of ``argv`` that only a literal pattern element may match in a grant."""
    if not argv:
        return frozenset()
    program = program_name(argv[0])
    wrapper = is_wrapper(argv[0])
    positions = {0} if wrapper else set()
    for index in range(1, len(argv)):
        arg = argv[index]
        if (wrapper and is_wrapper(arg)) or _code_flag(program, arg):
            positions.add(index)
    return frozenset(positions)


def explain(argv: Sequence[str], position: int) -> str:
    """Why ``argv[position]`` is guarded, as a sentence fragment."""
    if position == 0:
        return f"{argv[0]} runs arbitrary code"
    if is_wrapper(argv[position]) and is_wrapper(argv[0]):
        return f"{argv[position]} under {argv[0]} runs arbitrary code"
    return f"{argv[position]} makes {argv[0]} run other programs"
