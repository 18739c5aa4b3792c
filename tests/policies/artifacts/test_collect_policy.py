"""evaluate_collect: which rule lets whom fetch which file, with deny > approve > allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.rules.engine import evaluate_collect
from policies.rules.model import Policy, load_policy, load_policy_text
from policies.types import Effect, Principal, Target

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"
DEMO = Target("demo-api", "c-1", provider="local")

POLICY = """
version: 1
roles:
  ops: { local_users: [alice] }
  leads: { local_users: [lead] }
targets:
  demo: { functions: ["demo-*"] }
  prod: { functions: ["orders-*"] }
defaults: { max_output: 1MiB }
rules:
  - id: no-secrets
    effect: deny
    who: ["*"]
    where: ["*"]
    commands: [[cat, "{f:path(/tmp/secrets/**)}"]]
  - id: demo-files
    effect: allow
    who: [ops]
    where: [demo]
    commands: [[stat, "{f:path(/tmp/**)}"]]
    limits: { max_output: 64MiB }
    collect: ["/tmp/**"]
  - id: prod-dumps
    effect: approve
    who: [ops]
    where: [demo, prod]
    commands: [[stat, "{f:path(/tmp/*.hprof)}"]]
    approval: { approvers: [leads] }
    collect: ["/tmp/*.hprof"]
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_text(POLICY, "test-policy.yaml")


@pytest.mark.parametrize(
    ("who", "target", "path", "effect", "rule"),
    [
        pytest.param(
            "local:alice",
            DEMO,
            "/tmp/trace.pcap",
            Effect.ALLOW,
            "demo-files",
            id="allowed-under-tmp",
        ),
        pytest.param(
            "local:alice",
            DEMO,
            "/tmp/heap.hprof",
            Effect.APPROVE,
            "prod-dumps",
            id="approve-beats-allow",
        ),
        pytest.param(
            "local:alice",
            DEMO,
            "/tmp/secrets/key.pem",
            Effect.DENY,
            "no-secrets",
            id="deny-on-reading-beats-allow",
        ),
        pytest.param(
            "local:alice", DEMO, "/etc/passwd", Effect.DENY, None, id="outside-every-glob"
        ),
        pytest.param(
            "local:alice",
            Target("orders-api", "c-1", provider="local"),
            "/tmp/trace.pcap",
            Effect.DENY,
            None,
            id="other-target",
        ),
        pytest.param("local:mallory", DEMO, "/tmp/trace.pcap", Effect.DENY, None, id="no-role"),
    ],
)
def test_collect_decisions_name_the_rule(
    policy: Policy, who: str, target: Target, path: str, effect: Effect, rule: str | None
) -> None:
    decision = evaluate_collect(policy, principal=Principal.parse(who), target=target, path=path)
    assert (decision.effect, decision.rule_id) == (effect, rule)
    assert decision.stages == (("execgate-collect", path),)


def test_the_deciding_rule_gives_the_size_cap_and_the_allowed_tree(policy: Policy) -> None:
    decision = evaluate_collect(
        policy, principal=Principal.parse("local:alice"), target=DEMO, path="/tmp/a.cap"
    )
    assert decision.limits.max_output_bytes == 64 << 20
    assert decision.collect_paths == ("/tmp/**",)


def test_an_approval_decision_carries_the_approvers(policy: Policy) -> None:
    decision = evaluate_collect(
        policy, principal=Principal.parse("local:alice"), target=DEMO, path="/tmp/h.hprof"
    )
    assert decision.approval is not None and decision.approval.approver_roles == ("leads",)


def test_a_default_denial_lists_what_may_be_collected_there(policy: Policy) -> None:
    decision = evaluate_collect(
        policy, principal=Principal.parse("local:alice"), target=DEMO, path="/var/x"
    )
    assert decision.effect is Effect.DENY
    assert "/tmp/**" in decision.reason and "/tmp/*.hprof" in decision.reason


@pytest.fixture(scope="module")
def default_policy() -> Policy:
    return load_policy(DEFAULT)


@pytest.mark.parametrize(
    ("path", "effect", "rule"),
    [
        pytest.param("/tmp/trace.pcap", Effect.ALLOW, "collect-debug-files", id="pcap"),
        pytest.param("/tmp/trace.cap", Effect.ALLOW, "collect-debug-files", id="cap"),
        pytest.param("/tmp/cpu.pprof", Effect.ALLOW, "collect-debug-files", id="pprof"),
        pytest.param("/tmp/cpu.pb.gz", Effect.ALLOW, "collect-debug-files", id="pb-gz"),
        pytest.param("/tmp/cpu.prof", Effect.ALLOW, "collect-debug-files", id="prof"),
        pytest.param("/tmp/heap.hprof", Effect.ALLOW, "collect-debug-files", id="hprof"),
        pytest.param("/tmp/sub/trace.pcap", Effect.DENY, None, id="subdirectory"),
        pytest.param("/tmp/app.log", Effect.DENY, None, id="other-file"),
        pytest.param("/proc/kcore", Effect.DENY, "no-credential-reading", id="kcore"),
        pytest.param("/root/.ssh/id_rsa", Effect.DENY, "no-credential-reading", id="root-home"),
        pytest.param("/dev/zero", Effect.DENY, None, id="device"),
    ],
)
def test_default_policy_lets_operators_collect_captures_and_profiles_from_demo_tmp(
    default_policy: Policy, path: str, effect: Effect, rule: str | None
) -> None:
    decision = evaluate_collect(
        default_policy, principal=Principal.parse("local:alice"), target=DEMO, path=path
    )
    assert (decision.effect, decision.rule_id) == (effect, rule)


def test_default_policy_caps_collected_files_at_256_mib(default_policy: Policy) -> None:
    decision = evaluate_collect(
        default_policy,
        principal=Principal.parse("local:alice"),
        target=DEMO,
        path="/tmp/x.pcap",
    )
    assert decision.effect is Effect.ALLOW
    assert decision.limits.max_output_bytes == 256 << 20


def test_an_assistant_collects_a_capture_only_after_approval(default_policy: Policy) -> None:
    decision = evaluate_collect(
        default_policy,
        principal=Principal.parse("mcp:assistant"),
        target=DEMO,
        path="/tmp/x.pcap",
    )
    assert (decision.effect, decision.rule_id) == (Effect.APPROVE, "collect-by-assistants")
    assert decision.limits.max_output_bytes == 256 << 20
