"""`execgate`: the terminal surface. Parses arguments, reads settings once, dispatches.

Start-up is kept short: the parser is standard library only, and a subcommand's module
(and with it the service stack) is imported only when that subcommand runs.

Exit codes (documented in the README):
  the command's own exit code when it ran,
  2  usage error,               69 instance/provider/audit unavailable,
  70 internal error,            75 pending approval (run again after approval),
  77 refused (policy/syntax),   78 bad configuration or policy file,
  124 timed out,                1  a check failed (policy test, audit verify).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from server.cli.parser import build_parser, split_command

__all__ = ["build_parser", "main"]


def _handler(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    handler: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.options_parser is not None:
        args.argv, args.text = split_command(args, argv)
        if args.argv is None and args.text is None:
            print("execgate: give a command: TARGET -- ARGV... or TARGET 'text'", file=sys.stderr)
            return 2  # EXIT_USAGE
    if args.cmd == "exec":
        from server.cli.relay import try_exec

        relayed = try_exec(args.config, args.target, args.argv, args.text, args.reason, args.json)
        if relayed is not None:
            return relayed
    import inspect
    import logging

    from policies.errors import ExecGateError
    from server.cli.exits import EXIT_INTERNAL, exit_code_for

    logger = logging.getLogger("execgate.cli")

    try:
        from server.logging_setup import setup_logging
        from server.settings import load_settings

        settings = load_settings(args.config)
        level = settings.logging.level or ("INFO" if args.cmd == "serve" else "WARNING")
        setup_logging(level, settings.logging.format)
        handler = _handler(args.handler)
        if not inspect.iscoroutinefunction(handler):
            return int(handler(args, settings))
        import asyncio
        import os

        from policies.instances.childwatch import use_pidfd_child_watcher
        from policies.tracing import incoming

        # Before the loop starts: children of any part (not only local instances) are
        # then waited for through pidfds.
        use_pidfd_child_watcher()
        # Requests continue the caller's trace when it names one (W3C TRACEPARENT).
        with incoming(os.environ.get("TRACEPARENT"), os.environ.get("TRACESTATE")):
            return int(asyncio.run(handler(args, settings)))
    except ExecGateError as exc:
        if getattr(args, "json", False):
            # `--json` promises one JSON object on stdout, also when the command failed.
            import json

            shown = {"error": exc.to_dict(), "audit_id": exc.audit_id}
            if args.cmd == "exec":
                from server.cli.render import exec_error_dict

                shown = exec_error_dict(exc.to_dict(), exc.audit_id, args.target, args.argv)
            print(json.dumps(shown, indent=2))
        print(f"execgate: {exc.safe_message}", file=sys.stderr)
        if exc.audit_id:
            print(f"audit id: {exc.audit_id}", file=sys.stderr)
        return exit_code_for(exc)
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
