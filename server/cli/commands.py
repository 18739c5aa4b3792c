"""The CLI's commands: each builds a request, calls ExecService, renders the answer."""

from __future__ import annotations

import argparse
import json
import sys

from policies.errors import ExecGateError, ExecNotFound, ProviderUnavailable, TargetError
from policies.ports import ApprovalState, AuditFilter
from policies.types import (
    ApprovalId,
    AuditId,
    Effect,
    ExecRequest,
    Principal,
    Stream,
    Surface,
    Target,
)
from server.cli import render
from server.cli.exits import (
    EXIT_CHECK_FAILED,
    EXIT_DENIED,
    EXIT_PENDING,
    exec_exit_code,
    exit_code_for,
)
from server.cli.principal import cli_principal
from server.settings import Settings
from server.wiring import open_service, prepare_database

TERMINAL_INLINE = 4096


def _request(args: argparse.Namespace, principal: Principal) -> ExecRequest:
    return ExecRequest(
        principal=principal,
        surface=Surface.CLI,
        target=Target.parse(args.target),
        argv=args.argv,
        command_text=args.text,
        reason=getattr(args, "reason", ""),
    )


async def _write(stream: Stream, text: str) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(text)
    out.flush()


async def cmd_exec(args: argparse.Namespace, settings: Settings) -> int:
    if args.json:
        return await _exec_json(args, settings)
    request = _request(args, cli_principal(settings))
    async with open_service(settings) as service:
        result = await service.exec(request, on_output=_write, inline_limit=TERMINAL_INLINE)
    render.exec_summary(result, streamed=True)
    return exec_exit_code(result)


async def _exec_json(args: argparse.Namespace, settings: Settings) -> int:
    """`exec --json`: one JSON object on stdout, whatever happened (an error that stopped
    the exec is its ``error``, with the same keys as a result)."""
    try:
        request = _request(args, cli_principal(settings))
        async with open_service(settings) as service:
            result = await service.exec(
                request, on_output=None, inline_limit=settings.output.cli_json_inline_bytes
            )
    except ExecGateError as exc:
        error = render.exec_error_dict(exc.to_dict(), exc.audit_id, args.target, args.argv)
        print(json.dumps(error, indent=2))
        print(f"execgate: {exc.safe_message}", file=sys.stderr)
        return exit_code_for(exc)
    print(json.dumps(result.to_dict(), indent=2))
    return exec_exit_code(result)


async def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    from policies.rules.model import load_policy
    from policies.service.core import explain_request

    if args.policy_cmd == "test":
        from policies.rules.policytest import load_cases, run_suite

        override = load_policy(args.policy) if args.policy else None
        configured = None
        failed = 0
        rows = []
        for path in args.files:
            suite = load_cases(path)
            policy = override
            if policy is None and suite.policy_path is None:
                configured = configured or load_policy(settings.policy_path)
                policy = configured
            for case in run_suite(suite, policy):
                rows.append(case)
                failed += 0 if case.ok else 1
        render.policy_tests(rows, as_json=args.json)
        return EXIT_CHECK_FAILED if failed else 0
    policy = load_policy(args.policy or settings.policy_path)
    try:
        principal = Principal.parse(args.as_principal) if args.as_principal else None
    except ValueError as exc:
        raise TargetError(f"--as: {exc}") from exc
    request = _request(args, principal or cli_principal(settings))
    target = request.target
    if target.provider is None:
        target = target.with_provider(settings.default_provider)
    explanation = explain_request(policy, request.principal, target, request)
    render.explanation(explanation, as_json=args.json)
    effect = explanation.decision.effect
    return {Effect.ALLOW: 0, Effect.DENY: EXIT_DENIED, Effect.APPROVE: EXIT_PENDING}[effect]


async def cmd_instances(args: argparse.Namespace, settings: Settings) -> int:
    functions = (
        [args.function] if args.function else [f.name for f in settings.local_host.functions]
    )
    rows = []
    async with open_service(settings) as service:
        for function in functions:
            rows.extend(
                await service.list_instances(
                    cli_principal(settings),
                    function,
                    provider=args.provider,
                    qualifier=args.qualifier,
                )
            )
    render.instances(rows, as_json=args.json)
    return 0


async def cmd_approvals(args: argparse.Namespace, settings: Settings) -> int:
    async with open_service(settings) as service:
        if args.approvals_cmd == "list":
            records = await service.list_approvals(
                cli_principal(settings), None if args.all else ApprovalState.PENDING
            )
            render.approvals(records, as_json=args.json)
            return 0
        vote = await service.vote(
            ApprovalId(args.approval_id),
            cli_principal(settings),
            approve=args.approvals_cmd == "approve",
            reason=getattr(args, "reason", ""),
            on_output=None if args.json else _write,
            inline_limit=settings.output.cli_json_inline_bytes if args.json else TERMINAL_INLINE,
        )
    render.vote(vote, as_json=args.json)
    if vote.result is not None:
        return exec_exit_code(vote.result)
    return 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli import integrity

    if args.audit_cmd in ("verify", "public-key"):
        # They read the log without opening the service; the database is prepared (or
        # a missing one refused) as for every other command.
        await prepare_database(settings)
    if args.audit_cmd == "verify":
        return await integrity.cmd_verify(args, settings)
    if args.audit_cmd == "public-key":
        return await integrity.cmd_public_key(args, settings)
    async with open_service(settings) as service:
        if args.audit_cmd == "show":
            try:
                record = await service.audit_get(cli_principal(settings), AuditId(args.audit_id))
            except ExecNotFound:
                print(f"execgate: no audit record {args.audit_id}", file=sys.stderr)
                return EXIT_CHECK_FAILED
            approval_id = None
            if record.intent.effect == Effect.APPROVE.value and not record.intent.approval_id:
                # The intent is written before its approval request exists.
                held = await service.list_approvals(cli_principal(settings), None)
                approval_id = next(
                    (a.approval_id for a in held if a.audit_id == record.audit_id), None
                )
            render.audit_record(record, as_json=args.json, approval_id=approval_id)
            return 0
        flt = AuditFilter(
            principal=args.principal,
            target=args.target,
            function=args.function,
            effect=args.decision,
            status=args.status,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
        records = await service.audit_list(flt)
    if args.audit_cmd == "export":
        render.audit_export(records, args.format)
    else:
        render.audit_list(records, as_json=args.json)
    return 0


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from policies.audit import migrate
    from server.cli import integrity

    if args.db_cmd == "upgrade":
        await integrity.cmd_db_upgrade(settings, new_log=args.new_log)
        print(f"audit database at {await migrate.current(settings.database_url)}")
        return 0
    print(await migrate.current(settings.database_url) or "(empty)")
    return 0


async def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from server.localstate import local_keys, read_address
    from server.settings import masked_view

    view = masked_view(settings)
    host: dict[str, object] = {"access_key_id": local_keys(settings.data_dir).access_key_id}
    host["access_key_secret"] = "********"  # noqa: S105 - a mask, not a secret
    try:
        host["url"] = read_address(settings.data_dir)["url"]
    except ProviderUnavailable:
        host["url"] = None  # `execgate serve` is not running
    view["local_host_effective"] = host
    print(json.dumps(view, indent=2, default=str))
    return 0
