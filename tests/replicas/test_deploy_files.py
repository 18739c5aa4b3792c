"""The deployment files under deploy/ are checked offline: Kubernetes manifests against
the API schema (kubernetes-validate, strict), the replica configuration by ExecGate's
own settings loader, the compose file's structure, the haproxy configuration by
haproxy itself, and the Dockerfile's shape. No container engine runs here."""

from __future__ import annotations

import asyncio
import shutil
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.settings import load_settings
from tests.replicas.deployment import INSTALL_HAPROXY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.31"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for path in MANIFESTS for d in _docs(path)}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_kubernetes_manifest_validates_against_the_api_schema(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _by_kind()["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_deployment_runs_two_non_root_replicas_with_probes_a_pdb_and_a_migration_job() -> None:
    kinds = _by_kind()
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Job"} <= set(
        kinds
    )
    spec = kinds["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"][0]["secretRef"]["name"] == "execgate-secrets"
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert kinds["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param((DEPLOY / "execgate.toml").read_text(), id="compose"),
        pytest.param(_by_kind()["ConfigMap"]["data"]["execgate.toml"], id="configmap"),
    ],
)
def test_replica_configuration_loads_with_the_local_host_disabled(
    tmp_path: Path, text: str
) -> None:
    config = tmp_path / "execgate.toml"
    config.write_text(text)
    settings = load_settings(config, environ={})
    assert tomllib.loads(text)["local_host"]["enabled"] is False
    assert settings.local_host.enabled is False
    assert settings.mcp.stateless_http is True
    assert settings.database.auto_upgrade is False
    ttl = settings.replica.lease_ttl_seconds + settings.replica.heartbeat_seconds
    assert ttl <= 30  # a dead replica's execs are interrupted within 30 s


def test_compose_runs_two_replicas_after_the_migration_behind_the_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "replica-a", "replica-b", "proxy"} <= set(services)
    for name in ("replica-a", "replica-b"):
        replica = services[name]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert replica["command"] == ["serve"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    assert "balance roundrobin" in haproxy
    assert "server replica-a replica-a:8765" in haproxy
    assert "server replica-b replica-b:8765" in haproxy


async def test_haproxy_accepts_the_proxy_configuration() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail(f"haproxy is not installed; run: {INSTALL_HAPROXY}")
    proc = await asyncio.create_subprocess_exec(
        haproxy,
        "-c",
        "-f",
        str(DEPLOY / "haproxy.cfg"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


def test_the_image_is_multi_stage_non_root_and_without_bubblewrap() -> None:
    text = (DEPLOY / "Dockerfile").read_text().splitlines()
    lines = [line.strip() for line in text if not line.lstrip().startswith("#")]
    stages = [line for line in lines if line.startswith("FROM ")]
    users = [line for line in lines if line.startswith("USER ")]
    assert len(stages) == 2
    assert users and not users[-1].startswith(("USER root", "USER 0"))
    assert not any("bubblewrap" in line or "bwrap" in line for line in lines)
    assert "COPY --from=build /app /app" in lines
