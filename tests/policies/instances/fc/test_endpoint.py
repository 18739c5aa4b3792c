"""Endpoints and request paths for FC 3.0 and FC 2.0."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from policies.errors import ConfigError
from policies.instances.fc.endpoint import FcEndpoint, RequestTarget


def test_public_and_internal_endpoints_follow_the_account_and_region() -> None:
    assert FcEndpoint("123", "cn-hangzhou").base_url == "https://123.cn-hangzhou.fc.aliyuncs.com"
    assert (
        FcEndpoint("123", "cn-hangzhou", internal=True).base_url
        == "https://123.cn-hangzhou-internal.fc.aliyuncs.com"
    )


def test_an_endpoint_override_replaces_the_host_and_picks_ws_or_wss() -> None:
    local = FcEndpoint("1", "r", endpoint="http://127.0.0.1:8080/")
    target = local.instances("fn", None)
    assert local.url(target).startswith("http://127.0.0.1:8080/2023-03-30/functions/fn/")
    exec_target = local.exec("fn", None, "c-1", ["true"], stdin=False, idle_timeout=5)
    assert local.ws_url(exec_target).startswith("ws://127.0.0.1:8080/2023-03-30/")
    assert FcEndpoint("1", "r").ws_url(exec_target).startswith("wss://1.r.fc.aliyuncs.com/")


def test_fc3_exec_repeats_command_in_order_and_sets_every_flag() -> None:
    endpoint = FcEndpoint("1", "r")
    argv = ["sh", "-c", "echo 'a b' && ls /tmp?x=1&y", "ünï"]
    target = endpoint.exec("demo-api", "LATEST", "c-1a2b", argv, stdin=True, idle_timeout=60)
    assert target.path == "/2023-03-30/functions/demo-api/instances/c-1a2b/exec"
    query = parse_qsl(urlsplit(endpoint.url(target)).query, keep_blank_values=True)
    assert [v for k, v in query if k == "command"] == argv
    assert [(k, v) for k, v in query if k != "command"] == [
        ("qualifier", "LATEST"),
        ("stdin", "true"),
        ("stdout", "true"),
        ("stderr", "true"),
        ("tty", "false"),
        ("idleTimeout", "60"),
    ]


def test_fc3_list_instances_asks_for_all_active_instances() -> None:
    target = FcEndpoint("1", "r").instances("fn", "prod", limit=50)
    assert target.path == "/2023-03-30/functions/fn/instances"
    assert target.query == [("qualifier", "prod"), ("withAllActive", "true"), ("limit", "50")]


@pytest.mark.parametrize(
    ("qualifier", "service_segment"),
    [(None, "svc"), ("LATEST", "svc.LATEST"), ("prod", "svc.prod")],
    ids=["no-qualifier", "latest", "alias"],
)
def test_fc2_paths_put_the_qualifier_on_the_service(
    qualifier: str | None, service_segment: str
) -> None:
    endpoint = FcEndpoint("1", "r", api_version="2016-08-15", service="svc")
    base = f"/2016-08-15/services/{service_segment}/functions/fn"
    assert endpoint.instances("fn", qualifier) == RequestTarget(f"{base}/instances", [])
    exec_target = endpoint.exec("fn", qualifier, "c-1", ["ls"], stdin=False, idle_timeout=9)
    assert exec_target.path == f"{base}/instances/c-1/exec"
    assert ("qualifier", qualifier) not in exec_target.query
    assert endpoint.invocations("fn", qualifier).path == f"{base}/invocations"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_version": "2016-08-15"},
        {"endpoint": "ftp://host"},
        {"endpoint": "not a url"},
        {"api_version": "2020-01-01"},
    ],
    ids=["fc2-without-service", "bad-scheme", "not-a-url", "unknown-version"],
)
def test_bad_endpoint_settings_are_config_errors(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        FcEndpoint("1", "r", **kwargs)  # type: ignore[arg-type]
