"""ExecGate errors and rejected tool arguments as the ``error`` object a model reads.

Every tool error is ``{code, message, audit_id, next_step, fields}``: the message is the
error's safe message, ``next_step`` names the tool to call next (a model calls tools, it
does not type CLI commands), and ``fields`` names each rejected argument with what is
wrong with it (never the rejected value, which is the caller's data, and never the
validation library's text).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from policies.errors import ExecGateError
from server.mcp.models import ErrorOut


class InvalidArguments(ExecGateError):
    """A tool was called with arguments it cannot use."""

    code = "invalid_arguments"
    default_message = "some arguments are not valid; see fields"

    def __init__(self, fields: dict[str, str], safe_message: str | None = None) -> None:
        super().__init__(safe_message, arguments=fields)
        self.arguments = fields


def _where(fields: dict[str, Any]) -> str:
    function = fields.get("function")
    provider = fields.get("provider")
    args = f"function={function!r}" if function else "the function's name"
    return args + (f", provider={provider!r}" if provider else "")


def _next_step(exc: ExecGateError) -> str | None:
    match exc.code:
        case "instance_not_running":
            return f"call list_instances with {_where(exc.fields)} for live instances"
        case "bad_target" | "unknown_provider":
            return "call list_instances for targets you can pass as they are shown"
        case "session_ended" | "session_not_found":
            return "call session_start to open a new session"
        case "approval_not_found":
            return "pass an approval_id that exec or collect_artifact returned to you"
        case "rate_limited":
            return "wait before calling again; call audit_search to see your recent calls"
        case "artifact_too_large":
            return "fetch it with the link in the result that named it"
        case _:
            return None


def _message(exc: ExecGateError) -> str:
    if exc.code == "instance_not_running":
        # The safe message names a CLI command; a model is pointed at a tool instead.
        instance = exc.fields.get("instance", "the instance")
        return f"instance {instance} is not running (released or never existed)"
    return exc.safe_message


def error_out(exc: ExecGateError) -> ErrorOut:
    """The ``error`` object of a refusal or failure ExecGate raised."""
    fields = exc.arguments if isinstance(exc, InvalidArguments) else {}
    return ErrorOut(
        code=exc.code,
        message=_message(exc),
        audit_id=exc.audit_id,
        next_step=_next_step(exc),
        fields=fields,
    )


def argument_error(tool: str, exc: ToolError, known: bool) -> ErrorOut:
    """The ``error`` object for a call the SDK refused before the tool ran."""
    if not known:
        return ErrorOut(
            code="unknown_tool",
            message=f"there is no tool named {tool!r} for this client",
            next_step="call only the tools tools/list shows",
        )
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        fields: dict[str, str] = {}
        for problem in cause.errors(include_url=False, include_input=False):
            # The argument's name; deeper parts name union branches and list items.
            name = str(problem["loc"][0]) if problem["loc"] else "arguments"
            fields.setdefault(name, problem["msg"])
        return ErrorOut(
            code="invalid_arguments",
            message=f"{tool} was called with arguments it cannot use: " + ", ".join(sorted(fields)),
            next_step=f"call {tool} again with the arguments fixed (see fields)",
            fields=fields,
        )
    return ErrorOut(code="tool_error", message=f"{tool} could not be called")
