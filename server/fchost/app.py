"""The local instance host: the Function Compute 3.0 API over local sandboxed instances.

Routes (all signed with the FC scheme, checked before anything else happens, WebSocket
upgrades included):

- ``GET  /2023-03-30/functions/{fn}/instances``               ListInstances
- ``WS   /2023-03-30/functions/{fn}/instances/{id}/exec``     InstanceExec
- ``POST /2023-03-30/functions/{fn}/invocations``             InvokeFunction (forwarded to
  the function's HTTP server in its instance; header ``x-fc-invocation-path`` picks the
  path, default ``/invoke``; a function without a process echoes the payload)

Errors are FC 3.0 JSON bodies ``{"Code","Message","RequestId"}``; a refused WebSocket
gets the same body as an HTTP response instead of the upgrade (the ASGI
``websocket.http.response`` extension, which uvicorn's websockets implementations
provide), and so does an upgrade to a path the host does not serve.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from policies.errors import ProviderUnavailable
from policies.instances.fc.endpoint import FC3
from policies.instances.fc.signing import HEADER_INSTANCE_ID, HEADER_REQUEST_ID
from policies.instances.local import InstanceLimitReached, InstanceManager, UnknownFunction
from server.fchost.auth import AuthFailure, HostKeys, verify_request
from server.fchost.exec_session import BadExecRequest, HostExecSession, parse_exec_query
from server.fchost.forward import ForwardError, FunctionConnections

MAX_LIST_LIMIT = 100
# Local only: the HTTP path the function's server is called with (FC's custom runtime
# gets event invocations on /invoke), and the status it answered with.
HEADER_INVOCATION_PATH = "x-fc-invocation-path"
HEADER_FUNCTION_STATUS = "x-fc-function-status"


def _request_id() -> str:
    return str(uuid.uuid4())


def fc_error(status: int, code: str, message: str, request_id: str | None = None) -> JSONResponse:
    """An FC 3.0 error response."""
    request_id = request_id or _request_id()
    return JSONResponse(
        {"Code": code, "Message": message, "RequestId": request_id},
        status_code=status,
        headers={HEADER_REQUEST_ID: request_id},
    )


def _failure_response(failure: AuthFailure, request_id: str) -> JSONResponse:
    return fc_error(failure.status, failure.code, failure.message, request_id)


class _Host:
    def __init__(
        self, manager: InstanceManager, keys: HostKeys, wall_clock: Callable[[], float]
    ) -> None:
        self.manager = manager
        self.keys = keys
        self.wall_clock = wall_clock
        self.functions = FunctionConnections()

    def _check(self, conn: HTTPConnection, method: str, request_id: str) -> JSONResponse | None:
        """The error response for an unsigned/badly signed request or unknown function."""
        failure = verify_request(
            method, conn.scope["path"], conn.headers.items(), self.keys, now=self.wall_clock()
        )
        if failure is not None:
            return _failure_response(failure, request_id)
        function = conn.path_params["function"]
        try:
            self.manager.get_function(function)
        except UnknownFunction:
            return fc_error(404, "FunctionNotFound", f"function '{function}' does not exist.")
        return None

    async def list_instances(self, request: Request) -> Response:
        request_id = _request_id()
        refused = self._check(request, "GET", request_id)
        if refused is not None:
            return refused
        query = request.query_params
        try:
            limit = min(int(query.get("limit", MAX_LIST_LIMIT)), MAX_LIST_LIMIT)
            offset = int(query.get("nextToken", "0"))
        except ValueError:
            return fc_error(400, "InvalidArgument", "limit and nextToken must be numbers")
        if limit < 1 or offset < 0:
            return fc_error(400, "InvalidArgument", "limit must be positive")
        infos = self.manager.list(request.path_params["function"], qualifier=query.get("qualifier"))
        page = infos[offset : offset + limit]
        body: dict[str, object] = {
            "instances": [
                {
                    "instanceId": info.instance_id,
                    "versionId": info.version_id,
                    "qualifier": info.qualifier,
                    "status": info.status,
                    "createdTimeMs": info.created_ms,
                    "sandboxed": info.sandboxed,
                    "isolation": info.isolation,
                }
                for info in page
            ],
            "requestId": request_id,
        }
        if offset + limit < len(infos):
            body["nextToken"] = str(offset + limit)
        return JSONResponse(body, headers={HEADER_REQUEST_ID: request_id})

    async def invoke(self, request: Request) -> Response:
        request_id = _request_id()
        refused = self._check(request, "POST", request_id)
        if refused is not None:
            return refused
        payload = await request.body()
        try:
            instance_id = await self.manager.invoke(request.path_params["function"])
        except InstanceLimitReached:
            return fc_error(429, "ResourceExhausted", "no instance is free", request_id)
        except ProviderUnavailable:
            return fc_error(503, "ServiceUnavailable", "the host is not running", request_id)
        headers = {HEADER_INSTANCE_ID: instance_id, HEADER_REQUEST_ID: request_id}
        try:
            socket_path = self.manager.invocation_socket(instance_id)
            if socket_path is None:
                # A function without a process: the invocation echoes its payload.
                return Response(payload, media_type="application/octet-stream", headers=headers)
            path = request.headers.get(HEADER_INVOCATION_PATH, "/invoke")
            try:
                answer = await self.functions.forward(
                    instance_id, socket_path, path, payload, request_id
                )
            except ValueError:
                return fc_error(400, "InvalidArgument", "bad invocation path", request_id)
            except ForwardError:
                return fc_error(502, "FunctionNotReady", "the function did not answer", request_id)
            headers[HEADER_FUNCTION_STATUS] = str(answer.status)
            return Response(answer.body, media_type=answer.content_type, headers=headers)
        finally:
            self.manager.release_invocation(instance_id)

    async def exec(self, websocket: WebSocket) -> None:
        request_id = _request_id()
        refused = self._check(websocket, "GET", request_id)
        function = websocket.path_params["function"]
        instance = websocket.path_params["instance"]
        if refused is None and instance not in {
            info.instance_id for info in self.manager.list(function)
        }:
            refused = fc_error(
                404, "InstanceNotFound", f"instance '{instance}' does not exist", request_id
            )
        try:
            params = parse_exec_query(websocket.query_params)
        except BadExecRequest as exc:
            refused = refused or fc_error(400, "InvalidArgument", str(exc), request_id)
        if refused is not None:
            await _deny(websocket, refused)
            return
        await websocket.accept(headers=[(HEADER_REQUEST_ID.encode(), request_id.encode())])
        await HostExecSession(websocket, self.manager, function, instance, params).run()


async def _deny(websocket: WebSocket, response: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the extension: a bare refusal is all that is possible
        await websocket.close(code=1008)


async def _websocket_not_supported(websocket: WebSocket) -> None:
    # Starlette refuses an upgrade no route matches with a bare 403; FC answers an
    # unknown path (an FC 2.0 path here, say) with its JSON error, upgrade or not.
    path = websocket.url.path
    await _deny(websocket, fc_error(404, "PathNotSupported", f"'GET' against '{path}'"))


async def _not_supported(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return fc_error(status, "PathNotSupported", f"'{request.method}' against '{request.url.path}'")


def build_fc_host_app(
    manager: InstanceManager,
    keys: Mapping[str, str],
    *,
    account_id: str,
    sts_tokens: Collection[str] = (),
    wall_clock: Callable[[], float] = time.time,
) -> Starlette:
    """The FC 3.0 API app serving ``manager``'s instances.

    ``keys`` maps access key ids to secrets; keys whose id starts with ``STS.`` must
    present one of ``sts_tokens``. ``wall_clock`` is what the Date header is checked
    against. The manager's lifecycle (start/aclose) stays with the caller.
    """
    host = _Host(manager, HostKeys(dict(keys), frozenset(sts_tokens), account_id), wall_clock)
    base = f"/{FC3}/functions/{{function}}"
    return Starlette(
        routes=[
            Route(f"{base}/instances", host.list_instances, methods=["GET"]),
            Route(f"{base}/invocations", host.invoke, methods=["POST"]),
            WebSocketRoute(f"{base}/instances/{{instance}}/exec", host.exec),
            WebSocketRoute("/{path:path}", _websocket_not_supported),
        ],
        exception_handlers={404: _not_supported, 405: _not_supported},
    )
