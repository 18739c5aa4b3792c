"""`execgate collect TARGET PATH`: fetch a file from an instance as an artifact.

Prints the link on stdout (so ``curl -o trace.pcap "$(execgate collect ...)"`` works)
and what ExecGate has to say about it on stderr; ``--json`` prints the whole result.
Exit codes: 0 stored; 77 refused (policy, or the instance refused the path: symlink
escape, special file, too large...); 75 waiting for approval; 124 timed out; 69 the
transfer was cut or no link could be made.
"""

from __future__ import annotations

import argparse
import json
import sys

from policies.collect.protocol import symbolic_argv
from policies.service.results import CollectResult
from policies.types import Effect, Surface, Target
from server.cli import render as cli_render
from server.cli.exits import EXIT_DENIED, EXIT_PENDING, EXIT_TIMEOUT, EXIT_UNAVAILABLE
from server.cli.principal import cli_principal
from server.settings import Settings
from server.wiring import open_service

_UNAVAILABLE = frozenset({"transfer_failed", "link_unavailable"})


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def render(result: CollectResult) -> None:
    pending = result.approval_id and result.artifact is None and result.error_code is None
    if result.effect is Effect.DENY or pending:
        # Refusals and approval requests read as they do for any command.
        cli_render.exec_summary(result.to_exec_result(symbolic_argv(result.path)))
        return
    if result.error:
        _err(f"execgate: {result.error}")
    info = result.artifact
    if info is not None:
        source = result.resolved_path or result.path
        _err(f"execgate: collected {source}: {_size(info.size)}, sha256 {info.sha256}")
        if result.link:
            _err(f"  link expires {result.link_expires_at}")
            print(result.link)
    _err(f"  audit id {result.audit_id}")


def exit_code(result: CollectResult) -> int:
    if result.effect is Effect.DENY:
        return EXIT_DENIED
    if result.ok:
        return 0
    if result.approval_id and result.error_code is None and result.artifact is None:
        return EXIT_PENDING
    if result.error_code == "timeout":
        return EXIT_TIMEOUT
    if result.error_code in _UNAVAILABLE:
        return EXIT_UNAVAILABLE
    return EXIT_DENIED


async def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    principal = cli_principal(settings)
    target = Target.parse(args.target)
    async with open_service(settings) as service:
        result = await service.collect(
            principal, Surface.CLI, target, args.path, reason=args.reason
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        render(result)
    return exit_code(result)
