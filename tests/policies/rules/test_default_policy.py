"""The shipped default policy against its golden cases."""

from __future__ import annotations

import pathlib

import pytest

from policies.rules.model import Policy, load_policy
from policies.rules.policytest import GoldenCase, load_cases, run_case
from policies.types import Effect

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
GOLDEN = pathlib.Path(__file__).parent / "golden" / "default.yaml"

SUITE = load_cases(GOLDEN)


@pytest.fixture(scope="module")
def default_policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


def test_the_golden_file_uses_the_shipped_policy() -> None:
    assert SUITE.policy_path is not None
    assert SUITE.policy_path.resolve() == DEFAULT_POLICY


@pytest.mark.parametrize("case", SUITE.cases, ids=[case.id for case in SUITE.cases])
def test_default_policy_golden_case(default_policy: Policy, case: GoldenCase) -> None:
    result = run_case(default_policy, case)
    assert result.ok, result.message


def test_golden_cases_cover_every_effect_and_every_rule(default_policy: Policy) -> None:
    assert {case.expect for case in SUITE.cases} == set(Effect)
    named = {case.rule for case in SUITE.cases}
    assert {rule.id for rule in default_policy.rules} <= named


def test_default_roles_let_a_second_local_user_approve(default_policy: Policy) -> None:
    from policies.rules.engine import is_approver
    from policies.types import ApprovalSpec, Principal

    spec = ApprovalSpec(("approvers",))
    assert is_approver(default_policy, Principal.parse("local:bob"), spec)
    assert not is_approver(default_policy, Principal.parse("mcp:claude"), spec)
    assert not is_approver(default_policy, Principal.parse("slack:U1"), spec)


def test_default_limits(default_policy: Policy) -> None:
    limits = default_policy.defaults.limits
    assert (limits.timeout, limits.idle_timeout, limits.max_output_bytes) == (60, 600, 1 << 20)
    assert default_policy.defaults.rate is not None
    assert (default_policy.defaults.rate.count, default_policy.defaults.rate.per_seconds) == (
        60,
        60,
    )
    capture = default_policy.rule("packet-capture")
    assert capture is not None and capture.approval is not None
    assert (capture.approval.threshold, capture.approval.ttl_seconds) == (1, 900)


def test_the_local_user_the_serve_banner_signs_in_is_an_auditor_by_default(
    default_policy: Policy,
) -> None:
    import getpass

    from policies.types import Principal

    for user in (getpass.getuser(), "alice"):
        assert "auditors" in default_policy.roles_of(Principal.parse(f"local:{user}"))
    # Only local users: an MCP client or a Slack user is named by the team.
    assert "auditors" not in default_policy.roles_of(Principal.parse("mcp:claude"))
    assert "auditors" not in default_policy.roles_of(Principal.parse("slack:U1"))
