"""`execgate`: the terminal surface. Parses arguments, reads settings once, dispatches.

Exit codes (documented in the README):
  the command's own exit code when it ran,
  2  usage error,               69 instance/provider/audit unavailable,
  70 internal error,            75 pending approval (run again after approval),
  77 refused (policy/syntax),   78 bad configuration or policy file,
  124 timed out,                1  a check failed (policy test, audit verify).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from policies.errors import (
    AccessDenied,
    ApprovalError,
    AuditIntegrityError,
    AuditUnavailable,
    CommandRejected,
    ConfigError,
    ExecGateError,
    ExecTimeout,
    InstanceError,
    PolicyLoadError,
    TargetError,
    UnknownPrincipal,
)
from policies.units import parse_instant
from server.cli import invoke
from server.cli.console import add_console_parser, cmd_console
from server.cli.exits import (
    EXIT_CHECK_FAILED,
    EXIT_CONFIG,
    EXIT_DENIED,
    EXIT_INTERNAL,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

logger = logging.getLogger("execgate.cli")


def _split_command(values: Sequence[str]) -> tuple[tuple[str, ...] | None, str | None]:
    """`TARGET -- ARGV...` gives argv; `TARGET "text"` gives command text."""
    if values and values[0] == "--":
        return tuple(values[1:]), None
    if len(values) == 1:
        return None, values[0]
    return tuple(values), None


def _instant(text: str) -> dt.datetime:
    """A time option's value: a duration ago or an ISO 8601 time (a usage error if neither)."""
    try:
        return parse_instant(text, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execgate",
        description="Run commands inside live function instances, behind policy and audit.",
    )
    parser.add_argument("--config", type=Path, help="config file (default: ./execgate.toml)")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("exec", help="run a command on an instance")
    p.add_argument("target", help="[provider:]function[@qualifier]/instance")
    p.add_argument("command", nargs=argparse.REMAINDER, help='-- ARGV... or "command text"')
    p.add_argument("--reason", default="", help="why you run it (recorded in the audit log)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("policy", help="check and test policies")
    psub = p.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="dry-run decision for a command; runs nothing")
    c.add_argument("--policy", type=Path, help="policy file (default: the configured one)")
    c.add_argument("--as", dest="as_principal", help="principal, e.g. slack:U123 or local:bob")
    c.add_argument("--json", action="store_true")
    c.add_argument("target")
    c.add_argument("command", nargs=argparse.REMAINDER)
    t = psub.add_parser("test", help="run golden cases written in YAML")
    t.add_argument("--policy", type=Path, help="policy file for cases that name none")
    t.add_argument("files", nargs="+", type=Path)
    t.add_argument("--json", action="store_true")

    p = sub.add_parser("instances", help="live instances")
    isub = p.add_subparsers(dest="instances_cmd", required=True, metavar="ACTION")
    li = isub.add_parser("list", help="list live instances of a function")
    li.add_argument("function", nargs="?", help="function name (default: every local function)")
    li.add_argument("--provider")
    li.add_argument("--qualifier")
    li.add_argument("--json", action="store_true")

    p = sub.add_parser("approvals", help="pending approval requests")
    asub = p.add_subparsers(dest="approvals_cmd", required=True, metavar="ACTION")
    al = asub.add_parser("list", help="approval requests (pending by default)")
    al.add_argument("--all", action="store_true", help="every state, not only pending")
    al.add_argument("--json", action="store_true")
    for name in ("approve", "deny"):
        a = asub.add_parser(name, help=f"{name} a request")
        a.add_argument("approval_id")
        a.add_argument("--json", action="store_true")

    p = sub.add_parser("audit", help="the audit log")
    ausub = p.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    for name in ("list", "export"):
        a = ausub.add_parser(name, help=f"{name} exec sessions")
        a.add_argument("--principal")
        a.add_argument("--target")
        a.add_argument("--function")
        a.add_argument("--decision", choices=["allow", "deny", "approve"])
        a.add_argument("--status")
        a.add_argument("--since", type=_instant, help="ISO time or a duration ago: 90min, 2h, 1d")
        a.add_argument("--until", type=_instant, help="ISO time or a duration ago: 30m")
        a.add_argument("--limit", type=int, default=50 if name == "list" else 100000)
        if name == "list":
            a.add_argument("--json", action="store_true")
        else:
            a.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    s = ausub.add_parser("show", help="one exec session")
    s.add_argument("audit_id")
    s.add_argument("--json", action="store_true")
    v = ausub.add_parser("verify", help="check the hash chain against the signed checkpoint")
    v.add_argument("--strict", action="store_true", help="fail on events no checkpoint vouches for")
    v.add_argument("--public-key", type=Path, help="verify with this pinned public key (PEM) only")
    v.add_argument(
        "--anchors", action="store_true", help="also check the checkpoints published outside"
    )
    ausub.add_parser("public-key", help="print the public key that verifies the checkpoints")

    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_cmd", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="migrate the audit database to the latest schema")
    dsub.add_parser("current", help="print the schema revision")

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    csub.add_parser("show", help="the effective configuration, secrets masked")

    p = sub.add_parser("collect", help="fetch a file from an instance as an artifact")
    p.add_argument("target", help="[provider:]function[@qualifier]/instance")
    p.add_argument("path", help="absolute path of the file on the instance")
    p.add_argument("--reason", default="")
    p.add_argument("--json", action="store_true")

    invoke.add_parser(sub)

    sub.add_parser("mcp", help="serve MCP over stdio (for desktop AI assistants)")
    sub.add_parser("slack", help="run the Slack bot in Socket Mode")

    add_console_parser(sub)

    p = sub.add_parser("serve", help="run the server: local instance host and the HTTP app")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    return parser


def _exit_code_for(exc: ExecGateError) -> int:
    if isinstance(exc, ConfigError | PolicyLoadError):
        return EXIT_CONFIG
    if isinstance(exc, AccessDenied | CommandRejected | UnknownPrincipal | ApprovalError):
        return EXIT_DENIED
    if isinstance(exc, TargetError):
        return EXIT_USAGE
    if isinstance(exc, InstanceError | AuditUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, ExecTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, AuditIntegrityError):
        return EXIT_CHECK_FAILED
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    from server.cli import commands as cli_commands
    from server.logging_setup import setup_logging
    from server.runtime import install_child_watcher
    from server.settings import load_settings

    args = build_parser().parse_args(argv)
    install_child_watcher()
    if args.cmd in ("exec", "policy") and getattr(args, "policy_cmd", "check") == "check":
        args.argv, args.text = _split_command(args.command)
        if args.argv is None and args.text is None:
            print("execgate: give a command: TARGET -- ARGV... or TARGET 'text'", file=sys.stderr)
            return EXIT_USAGE
    try:
        settings = load_settings(args.config)
        level = settings.logging.level or ("INFO" if args.cmd == "serve" else "WARNING")
        setup_logging(level, settings.logging.format)
        if args.cmd == "serve":
            from server.serve import serve

            return serve(settings, host=args.host, port=args.port)
        if args.cmd == "invoke":
            return asyncio.run(invoke.run_invoke(args, settings))
        if args.cmd == "mcp":
            from server.mcp.stdio import run_stdio

            return run_stdio(settings)
        if args.cmd == "console":
            return cmd_console(args, settings)
        if args.cmd == "slack":
            from server.slack_socket import run_socket_mode

            return run_socket_mode(settings)
        return asyncio.run(cli_commands.dispatch(args, settings))
    except ExecGateError as exc:
        print(f"execgate: {exc.safe_message}", file=sys.stderr)
        if exc.audit_id:
            print(f"audit id: {exc.audit_id}", file=sys.stderr)
        return _exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); nothing more to say to it.
        sys.stderr.close()
        return 0
    except Exception:
        logger.exception("internal error")
        print("execgate: internal error (details in the log)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
