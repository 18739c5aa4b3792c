"""Object-store fixtures: a real moto S3 server on 127.0.0.1 (port 0), a fresh bucket per
test, and a proxy that lets the OSS SDK read moto's answers. Test packages that store
artifacts in S3 or OSS import these fixtures into their conftest.

moto speaks S3; the OSS SDK (with v1 signing) can talk to it for object calls. moto's
XML answers carry the S3 namespace on every element, which the OSS SDK's parser only
strips from the root element: the proxy removes the namespace declaration so that the
multipart calls (whose answers the SDK must read) work too. Nothing else is changed.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_asgi

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

REGION = "us-east-1"
_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_url: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret",
    )


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    name = f"execgate-test-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=name)
    return name


def _namespace_stripping_proxy(upstream: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        answer = await client.request(
            request.method,
            request.url.path,
            params=list(request.query_params.multi_items()),
            headers=headers,
            content=await request.body(),
        )
        body = answer.content
        if b"<?xml" in body[:64]:
            body = body.replace(b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', b"")
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        return Response(body, status_code=answer.status_code, headers=out)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with client:
            yield

    methods = ["GET", "PUT", "POST", "DELETE", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


@pytest.fixture
async def oss_endpoint(moto_url: str) -> AsyncIterator[str]:
    async with serve_asgi(_namespace_stripping_proxy(moto_url)) as url:
        yield url
