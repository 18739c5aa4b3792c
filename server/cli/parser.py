"""The `execgate` argument parser. Standard library only: `execgate --help` and usage
errors answer without loading the service stack.

Each subcommand is one function below that adds its parser and names its handler as
``"module:function"``; the module is imported only when that subcommand runs. Adding a
subcommand is one function and one entry in ``SUBCOMMANDS``.

Subcommands that take a command (``exec``, ``policy check``) accept their options
anywhere before ``--``: ``execgate exec TARGET --reason "..." -- ARGV...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

AddSubcommand = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _instant(text: str) -> dt.datetime:
    """A time option's value: a duration ago or an ISO 8601 time (a usage error if neither)."""
    from policies.units import parse_instant

    try:
        return parse_instant(text, dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _command_taking(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help_text: str,
    add_options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """A subcommand ``NAME [OPTIONS] TARGET [OPTIONS] (-- ARGV... | "text")``.

    The command words are taken whole (argparse would otherwise read a command's own
    flags as ExecGate's); ExecGate's options among them, before ``--``, are then parsed
    by a parser holding only those options (``options_parser``)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, allow_abbrev=False)
    add_options(p)
    p.add_argument("target", help="[provider:]function[@qualifier]/instance")
    p.add_argument("command", nargs=argparse.REMAINDER, help='-- ARGV... or "command text"')
    options = argparse.ArgumentParser(prog=p.prog, add_help=False, allow_abbrev=False)
    add_options(options)
    p.set_defaults(options_parser=options)
    return p


def split_command(
    args: argparse.Namespace, argv: Sequence[str]
) -> tuple[tuple[str, ...] | None, str | None]:
    """The command of `exec`/`policy check` from the words after TARGET: ExecGate's own
    options before ``--`` are parsed into ``args``; then ``-- ARGV...`` gives argv, one
    word gives command text, several words give argv. ``argv`` is the whole command
    line (argparse drops a ``--`` that directly follows TARGET; this puts it back).

    Raises: SystemExit (a usage error, as argparse reports one).
    """
    words = list(args.command)
    cut = len(argv) - len(words) - 1
    if cut >= 0 and argv[cut] == "--":
        words.insert(0, "--")
    dashes = words.index("--") if "--" in words else len(words)
    before, after = words[:dashes], words[dashes + 1 :]
    parser: argparse.ArgumentParser = args.options_parser
    _, rest = parser.parse_known_args(before, namespace=args)
    if dashes < len(words):
        if rest:
            parser.error(f"unexpected words before --: {' '.join(rest)}")
        return (tuple(after) or None), None
    if len(rest) == 1:
        return None, rest[0]
    return (tuple(rest) or None), None


def _exec(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reason", default="", help="why you run it (recorded in the audit log)")
        p.add_argument("--json", action="store_true", help="print one JSON object")

    p = _command_taking(sub, "exec", "run a command on an instance", options)
    p.set_defaults(handler="server.cli.commands:cmd_exec")


def _policy(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="check and test policies")
    psub = p.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")

    def options(c: argparse.ArgumentParser) -> None:
        c.add_argument("--policy", type=Path, help="policy file (default: the configured one)")
        c.add_argument("--as", dest="as_principal", help="principal, e.g. slack:U123 or local:bob")
        c.add_argument("--json", action="store_true")

    _command_taking(psub, "check", "dry-run decision for a command; runs nothing", options)
    t = psub.add_parser("test", help="run golden cases written in YAML")
    t.add_argument("--policy", type=Path, help="policy file for cases that name none")
    t.add_argument("files", nargs="+", type=Path)
    t.add_argument("--json", action="store_true")
    p.set_defaults(handler="server.cli.commands:cmd_policy")


def _instances(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("instances", help="live instances")
    isub = p.add_subparsers(dest="instances_cmd", required=True, metavar="ACTION")
    li = isub.add_parser("list", help="list live instances of a function")
    li.add_argument("function", nargs="?", help="function name (default: every local function)")
    li.add_argument("--provider")
    li.add_argument("--qualifier")
    li.add_argument("--json", action="store_true")
    p.set_defaults(handler="server.cli.commands:cmd_instances")


def _approvals(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("approvals", help="pending approval requests")
    asub = p.add_subparsers(dest="approvals_cmd", required=True, metavar="ACTION")
    al = asub.add_parser("list", help="approval requests (pending by default)")
    al.add_argument("--all", action="store_true", help="every state, not only pending")
    al.add_argument("--json", action="store_true")
    for name in ("approve", "deny"):
        a = asub.add_parser(name, help=f"{name} a request")
        a.add_argument("approval_id")
        a.add_argument("--json", action="store_true")
        if name == "deny":
            a.add_argument("--reason", default="", help="why (recorded in the audit log)")
    p.set_defaults(handler="server.cli.commands:cmd_approvals")


def _audit(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p.set_defaults(handler="server.cli.commands:cmd_audit")


def _db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_cmd", required=True, metavar="ACTION")
    up = dsub.add_parser("upgrade", help="migrate the audit database to the latest schema")
    up.add_argument(
        "--new-log",
        action="store_true",
        help="start a new audit log: move the checkpoint aside and begin a new one",
    )
    dsub.add_parser("current", help="print the schema revision")
    p.set_defaults(handler="server.cli.commands:cmd_db")


def _config(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    csub.add_parser("show", help="the effective configuration, secrets masked")
    p.set_defaults(handler="server.cli.commands:cmd_config")


def _collect(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("collect", help="fetch a file from an instance as an artifact")
    p.add_argument("target", help="[provider:]function[@qualifier]/instance")
    p.add_argument("path", help="absolute path of the file on the instance")
    p.add_argument("--reason", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="server.cli.collect:cmd_collect")


def _servers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mcp", help="serve MCP over stdio (for desktop AI assistants)")
    p.set_defaults(handler="server.cli.entry:run_mcp")
    p = sub.add_parser("slack", help="run the Slack bot in Socket Mode")
    p.set_defaults(handler="server.cli.entry:run_slack")
    p = sub.add_parser("serve", help="run the server: local instance host and the HTTP app")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(handler="server.cli.entry:run_serve")


def _invoke(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("invoke", help="send invocations to a local function")
    p.add_argument("function")
    p.add_argument("--path", default="/", help="HTTP path on the function (default /)")
    p.add_argument("--rate", type=float, default=0.0, help="invocations per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of traffic")
    p.add_argument("--data", default="", help="the request body")
    p.add_argument("--json", action="store_true", help="the summary as one JSON line")
    p.set_defaults(handler="server.cli.invoke:run_invoke")


def _console(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="the audit review console")
    csub = p.add_subparsers(dest="console_cmd", required=True, metavar="ACTION")
    link = csub.add_parser("link", help="print a one-time sign-in link")
    link.add_argument(
        "--as", dest="as_principal", help="sign in as this local user (root only): local:NAME"
    )
    p.set_defaults(handler="server.cli.console:cmd_console")


SUBCOMMANDS: list[AddSubcommand] = [
    _exec,
    _policy,
    _instances,
    _approvals,
    _audit,
    _db,
    _config,
    _collect,
    _invoke,
    _console,
    _servers,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execgate",
        description="Run commands inside live function instances, behind policy and audit.",
    )
    parser.add_argument("--config", type=Path, help="config file (default: ./execgate.toml)")
    parser.set_defaults(options_parser=None)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser
