"""The long-running subcommands: `serve`, `mcp`, `slack`. Each imports its stack only
when it runs."""

from __future__ import annotations

import argparse

from server.settings import Settings


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.serve import serve

    return serve(settings, host=args.host, port=args.port)


def run_mcp(_args: argparse.Namespace, settings: Settings) -> int:
    from server.mcp.stdio import run_stdio

    return run_stdio(settings)


def run_slack(_args: argparse.Namespace, settings: Settings) -> int:
    from server.slack_socket import run_socket_mode

    return run_socket_mode(settings)
