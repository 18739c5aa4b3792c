"""The engine: how rules combine, pipelines, wrappers, limits and reasons."""

from __future__ import annotations

import textwrap

import pytest

from policies.rules.engine import evaluate, is_approver
from policies.rules.model import Policy, load_policy_text
from policies.types import (
    ApprovalSpec,
    Decision,
    Effect,
    Limits,
    Principal,
    PrincipalKind,
    RateSpec,
    Target,
)

BASE = """
version: 1
roles:
  oncall: { local_users: [alice], slack_users: [U1], slack_groups: [S9], mcp_clients: [bot] }
  leads: { local_users: [carol], mcp_clients: [bot] }
  everyone-local: { local_users: ["*"] }
targets:
  demo: { provider: "*", functions: ["demo-*"] }
  prod: { provider: fc-prod, functions: ["orders-*"], qualifiers: [LATEST] }
defaults: { timeout: 60s, idle_timeout: 600s, max_output: 1MiB, rate: 30/min }
rules:
"""

ALICE = Principal(PrincipalKind.LOCAL, "alice")
DEMO = Target("demo-api", "c-1", provider="local")


def policy(rules: str) -> Policy:
    return load_policy_text(BASE + textwrap.indent(textwrap.dedent(rules), "  "), "test.yaml")


def decide(
    pol: Policy,
    *stages: tuple[str, ...],
    who: Principal = ALICE,
    where: Target = DEMO,
) -> Decision:
    return evaluate(pol, principal=who, target=where, stages=stages)


DIAG = """
- id: diag
  effect: allow
  who: [oncall]
  where: [demo]
  commands:
    - [ps, "{flags:oneof(aux,-ef)}"]
    - [cat, "{f:path(/code/**)}"]
    - [head, -n, "{n:int(1..100)}"]
  pipeline:
    allow: true
    extra_stages: [[grep, "{p:str}"], [wc, -l], [grep, -P, "{p:str}"]]
"""


def test_nothing_is_allowed_without_a_matching_rule() -> None:
    decision = decide(policy(DIAG), ("id",))
    assert decision.effect is Effect.DENY
    assert decision.rule_id is None
    assert decision.reason.startswith("denied by default: no rule allows [id]")


def test_allow_rule_explains_the_match() -> None:
    decision = decide(policy(DIAG), ("ps", "aux"))
    assert (decision.effect, decision.rule_id) == (Effect.ALLOW, "diag")
    assert decision.reason == "allowed by rule diag: [ps, aux] matched [ps, {flags:oneof(aux,-ef)}]"
    assert decision.stages == (("ps", "aux"),)


def test_deny_overrides_allow_whatever_the_order() -> None:
    rules = (
        DIAG
        + """
- id: no-code-secrets
  effect: deny
  who: ["*"]
  where: ["*"]
  commands: [[cat, "{f:path(/code/secrets/**)}"]]
"""
    )
    decision = decide(policy(rules), ("cat", "/code/secrets/key"))
    assert (decision.effect, decision.rule_id) == (Effect.DENY, "no-code-secrets")
    assert decide(policy(rules), ("cat", "/code/app.py")).effect is Effect.ALLOW


APPROVE_PS = """
- id: ps-needs-approval
  effect: approve
  who: [oncall]
  where: [demo]
  commands: [[ps, aux]]
  approval: { approvers: [leads], threshold: 2, ttl: 5m }
  limits: { timeout: 10s, rate: 2/h }
"""


def test_approve_beats_allow_whatever_the_order() -> None:
    for rules in (DIAG + APPROVE_PS, APPROVE_PS + DIAG):
        decision = decide(policy(rules), ("ps", "aux"))
        assert (decision.effect, decision.rule_id) == (Effect.APPROVE, "ps-needs-approval")
        assert decision.approval == ApprovalSpec(("leads",), threshold=2, ttl_seconds=300.0)
    assert decide(policy(DIAG + APPROVE_PS), ("ps", "-ef")).effect is Effect.ALLOW


def test_a_pipeline_does_not_skip_an_approval_one_stage_needs() -> None:
    decision = decide(policy(DIAG + APPROVE_PS), ("ps", "aux"), ("grep", "x"))
    assert (decision.effect, decision.rule_id) == (Effect.APPROVE, "ps-needs-approval")
    assert "pipeline allowed by rule diag" in decision.reason


def test_rule_limits_merge_over_defaults() -> None:
    pol = policy(DIAG + APPROVE_PS)
    approve = decide(pol, ("ps", "aux"))
    assert approve.limits == Limits(timeout=10.0, idle_timeout=600.0, max_output_bytes=1 << 20)
    assert approve.rate == RateSpec(count=2, per_seconds=3600.0)
    allow = decide(pol, ("ps", "-ef"))
    assert allow.limits == Limits(timeout=60.0, idle_timeout=600.0, max_output_bytes=1 << 20)
    assert allow.rate == RateSpec(count=30, per_seconds=60.0)
    assert allow.approval is None


def test_pipeline_of_allowed_stages_is_allowed() -> None:
    decision = decide(policy(DIAG), ("ps", "aux"), ("grep", "java"), ("wc", "-l"))
    assert (decision.effect, decision.rule_id) == (Effect.ALLOW, "diag")
    assert decision.stages == (("ps", "aux"), ("grep", "java"), ("wc", "-l"))


def test_later_stages_may_use_the_rules_own_commands() -> None:
    assert decide(policy(DIAG), ("ps", "aux"), ("head", "-n", "5")).effect is Effect.ALLOW


def test_a_later_stage_that_is_not_a_filter_execgate_runs_is_refused() -> None:
    # Later stages run inside ExecGate over scrubbed output; `cat FILE` would read the
    # instance, which only the first stage does.
    decision = decide(policy(DIAG), ("ps", "aux"), ("cat", "/code/x"))
    assert (decision.effect, decision.rule_id) == (Effect.DENY, "diag")


def test_a_filter_option_execgate_does_not_implement_is_refused_at_decision_time() -> None:
    decision = decide(policy(DIAG), ("ps", "aux"), ("grep", "-P", "x"))
    assert (decision.effect, decision.rule_id) == (Effect.DENY, "diag")
    assert decide(policy(DIAG), ("ps", "aux"), ("grep", "x")).effect is Effect.ALLOW


def test_pipeline_with_an_unlisted_stage_is_denied_naming_the_stage() -> None:
    decision = decide(policy(DIAG), ("ps", "aux"), ("sort",))
    assert (decision.effect, decision.rule_id) == (Effect.DENY, None)
    assert "stage 2 [sort] is not among the commands or extra_stages of rule diag" in (
        decision.reason
    )


def test_extra_stages_cannot_start_a_pipeline() -> None:
    decision = decide(policy(DIAG), ("grep", "x"), ("wc", "-l"))
    assert decision.effect is Effect.DENY
    assert "no rule with pipeline.allow matches stage 1 [grep, x]" in decision.reason


def test_pipeline_needs_a_rule_that_allows_pipelines() -> None:
    rules = """
- id: single
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [[ps, aux], [wc, -l]]
"""
    decision = decide(policy(rules), ("ps", "aux"), ("wc", "-l"))
    assert decision.effect is Effect.DENY
    assert "rule single matches stage 1 but does not allow pipelines" in decision.reason


def test_deny_rule_matching_any_stage_denies_the_pipeline() -> None:
    rules = (
        DIAG
        + """
- id: no-wc
  effect: deny
  who: ["*"]
  where: ["*"]
  commands: [[wc, "..."]]
"""
    )
    decision = decide(policy(rules), ("ps", "aux"), ("wc", "-l"))
    assert (decision.effect, decision.rule_id) == (Effect.DENY, "no-wc")
    assert decision.reason.startswith("denied by rule no-wc: stage 2 [wc, -l] matched")


WIDE = """
- id: wide
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [["{cmd:str}", "..."]]
"""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("sh", "-c", "id"), id="sh"),
        pytest.param(("/usr/bin/env", "id"), id="env-by-path"),
        pytest.param(("python3", "-c", "1"), id="python"),
        pytest.param(("find", "/", "-exec", "id", ";"), id="find-exec"),
    ],
)
def test_a_placeholder_rule_never_allows_wrappers(argv: tuple[str, ...]) -> None:
    decision = decide(policy(WIDE), argv)
    assert (decision.effect, decision.rule_id) == (Effect.DENY, None)
    assert "so only a rule that names it literally may allow it (wide does not)" in (
        decision.reason
    )
    assert decide(policy(WIDE), ("ls", "-la")).effect is Effect.ALLOW


def test_who_and_where_limit_a_rule() -> None:
    pol = policy(DIAG)
    bob = Principal(PrincipalKind.LOCAL, "bob")
    assert decide(pol, ("ps", "aux"), who=bob).effect is Effect.DENY
    prod = Target("orders-api", "c-1", provider="fc-prod")
    assert decide(pol, ("ps", "aux"), where=prod).effect is Effect.DENY
    stranger = Principal(PrincipalKind.SLACK, "U404")
    assert "slack:U404 (roles: none)" in decide(pol, ("ps", "aux"), who=stranger).reason


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(Target("orders-api", "c", "fc-prod"), {"prod"}, id="no-qualifier-is-latest"),
        pytest.param(Target("orders-api", "c", "fc-prod", "LATEST"), {"prod"}, id="latest"),
        pytest.param(Target("orders-api", "c", "fc-prod", "v2"), set(), id="other-qualifier"),
        pytest.param(Target("orders-api", "c", "local"), set(), id="other-provider"),
        pytest.param(Target("demo-x", "c", "anything"), {"demo"}, id="any-provider"),
        pytest.param(Target("payments", "c", "fc-prod"), set(), id="function-glob"),
    ],
)
def test_targets_match_provider_function_and_qualifier(target: Target, expected: set[str]) -> None:
    assert policy(DIAG).targets_of(target) == expected


@pytest.mark.parametrize(
    ("principal", "roles"),
    [
        pytest.param(
            Principal(PrincipalKind.LOCAL, "alice"), {"oncall", "everyone-local"}, id="local"
        ),
        pytest.param(
            Principal(PrincipalKind.LOCAL, "zed"), {"everyone-local"}, id="local-wildcard"
        ),
        pytest.param(Principal(PrincipalKind.SLACK, "U1"), {"oncall"}, id="slack-user"),
        pytest.param(
            Principal(PrincipalKind.SLACK, "U2", frozenset({"S9"})), {"oncall"}, id="slack-group"
        ),
        pytest.param(Principal(PrincipalKind.SLACK, "U2"), set(), id="slack-unknown"),
        pytest.param(Principal(PrincipalKind.MCP, "bot"), {"oncall", "leads"}, id="mcp-client"),
        pytest.param(Principal(PrincipalKind.MCP, "alice"), set(), id="kinds-are-separate"),
    ],
)
def test_roles_of_principals(principal: Principal, roles: set[str]) -> None:
    assert policy(DIAG).roles_of(principal) == roles


def test_approvers_hold_an_approver_role_and_are_never_mcp_clients() -> None:
    pol = policy(DIAG + APPROVE_PS)
    spec = ApprovalSpec(("leads",))
    assert is_approver(pol, Principal(PrincipalKind.LOCAL, "carol"), spec)
    assert not is_approver(pol, ALICE, spec)
    assert not is_approver(pol, Principal(PrincipalKind.MCP, "bot"), spec)


def test_collect_paths_come_from_the_deciding_rule() -> None:
    rules = """
- id: capture
  effect: approve
  who: [oncall]
  where: [demo]
  commands: [[tcpdump, -c, "{n:int(1..10)}", -w, "{f:path(/tmp/*.cap)}"]]
  approval: { approvers: [leads] }
  collect: ["/tmp/*.cap"]
"""
    decision = decide(policy(rules), ("tcpdump", "-c", "5", "-w", "/tmp/x.cap"))
    assert decision.effect is Effect.APPROVE
    assert decision.collect_paths == ("/tmp/*.cap",)
    assert decision.approval == ApprovalSpec(("leads",), threshold=1, ttl_seconds=900.0)


def test_empty_stages_are_denied() -> None:
    assert decide(policy(DIAG)).effect is Effect.DENY
    assert decide(policy(DIAG), ()).effect is Effect.DENY


def test_first_rule_in_file_order_decides_within_an_effect() -> None:
    rules = """
- id: first
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [["{c:oneof(ps,top)}", "..."]]
- id: second
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [[ps, aux]]
"""
    assert decide(policy(rules), ("ps", "aux")).rule_id == "first"


def test_index_keeps_wild_patterns_in_rule_order() -> None:
    rules = """
- id: wild-first
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [["{c:oneof(ps*)}", "..."]]
- id: literal-second
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [[ps, aux]]
"""
    assert decide(policy(rules), ("ps", "aux")).rule_id == "wild-first"
    assert decide(policy(rules), ("pstree",)).rule_id == "wild-first"


def test_a_large_policy_still_decides_by_the_right_rule() -> None:
    rules = "".join(
        f"""
- id: r{i}
  effect: allow
  who: [oncall]
  where: [demo]
  commands: [[tool{i}, "{{n:int(1..{i + 1})}}"]]
"""
        for i in range(200)
    )
    pol = policy(rules)
    assert decide(pol, ("tool150", "151")).rule_id == "r150"
    assert decide(pol, ("tool150", "152")).effect is Effect.DENY
    assert len(pol.grant_index.keyed) == 200
