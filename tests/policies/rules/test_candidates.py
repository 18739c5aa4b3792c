"""The per-policy caches: decisions are the same with and without them, and they stay
bounded whatever principals, targets and programs requests bring."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from policies.rules import candidates
from policies.rules.engine import evaluate, evaluate_collect, may_act_on
from policies.rules.model import Policy, load_policy_text
from policies.types import Decision, Effect, Principal, PrincipalKind, Target

POLICY = """
version: 1
roles:
  oncall: { local_users: [alice], slack_users: [U1], slack_groups: [S9], mcp_clients: [bot] }
  leads: { local_users: [carol], mcp_clients: [bot] }
  everyone-local: { local_users: ["*"] }
  any-grouped: { slack_groups: ["*"] }
targets:
  demo: { provider: "*", functions: ["demo-*"] }
  prod: { provider: fc-prod, functions: ["orders-*"], qualifiers: [LATEST] }
  apis: { provider: "fc-*", functions: ["*-api"], qualifiers: ["v*"] }
defaults: { timeout: 60s, idle_timeout: 600s, max_output: 1MiB, rate: 30/min }
rules:
  - id: no-destructive
    effect: deny
    who: ["*"]
    where: ["*"]
    commands:
      - ["{c:program(rm,mkfs*)}", "..."]
      - ["{c:program(cat,head,grep)}", "{a:/.*/}?", "{b:/.*/}?", "{f:path(/etc/shadow)}", "..."]
  - id: no-curl-anywhere
    effect: deny
    who: [everyone-local]
    where: [prod]
    commands: [["{x:/.*/}?", "{c:program(curl)}", "..."]]
  - id: diagnostics
    effect: allow
    who: [oncall, any-grouped]
    where: [demo, apis]
    commands:
      - [ps, "{f:oneof(aux,-ef)}"]
      - [cat, "{f:path(/proc/*,/code/**)}"]
      - [timeout, "{n:int(1..9)}", "{c:str}", "..."]
      - ["{w:oneof(nice,timeout)}", "{c:oneof(ps,sh)}", "..."]
      - [env]
    pipeline: { allow: true, extra_stages: [[grep, "{o:oneof(-i,-v)}?", "{p:str}"], [wc, -l]] }
    collect: ["/tmp/*.cap"]
  - id: grep-inverted-needs-approval
    effect: approve
    who: ["*"]
    where: [demo, prod]
    commands: [[grep, -v, "{p:str}"], [tcpdump, "-w", "{f:path(/tmp/*.cap)}"]]
    approval: { approvers: [leads] }
    collect: ["/tmp/**"]
  - id: local-reads
    effect: allow
    who: [everyone-local]
    where: ["*"]
    commands:
      - [head, "-n", "{n:int(1..100)}", "{f:path(/var/log/**)}"]
      - [grep, "{p:str}", "{f:path(/var/log/**)}"]
"""

PRINCIPALS = [
    Principal(PrincipalKind.LOCAL, "alice"),
    Principal(PrincipalKind.LOCAL, "carol"),
    Principal(PrincipalKind.LOCAL, "zed"),
    Principal(PrincipalKind.SLACK, "U1"),
    Principal(PrincipalKind.SLACK, "U2", frozenset({"S9"})),
    Principal(PrincipalKind.SLACK, "U3", frozenset({"S7"})),
    Principal(PrincipalKind.SLACK, "U4"),
    Principal(PrincipalKind.MCP, "bot"),
    Principal(PrincipalKind.MCP, "alice"),
]
TARGETS = [
    Target("demo-api", "c-1", "local"),
    Target("demo-api", "c-2", None),
    Target("orders-api", "c-1", "fc-prod"),
    Target("orders-api", "c-2", "fc-prod", "LATEST"),
    Target("orders-api", "c-3", "fc-prod", ""),
    Target("orders-api", "c-4", "fc-prod", "v2"),
    Target("payments-api", "c-1", "fc-eu", "v1"),
    Target("payments-api", "c-1", "fc-eu"),
    Target("other", "c-1", "local"),
]
COMMANDS: list[tuple[tuple[str, ...], ...]] = [
    (("ps", "aux"),),
    (("ps", "aux"), ("grep", "-i", "java"), ("wc", "-l")),
    (("ps", "aux"), ("grep", "-v", "java")),
    (("ps", "aux"), ("head", "-n", "5", "/var/log/a")),
    (("cat", "/proc/meminfo"), ("grep", "x")),
    (("cat", "/etc/shadow"),),
    (("cat", "/code/../etc/shadow"),),
    (("grep", "-i", "x", "/etc/shadow"),),
    (("grep", "x", "/var/log/app.log"),),
    (("grep", "-v", "x"),),
    (("head", "-n", "5", "/var/log/a"),),
    (("/bin/rm", "-rf", "/"),),
    (("mkfs.ext4", "/dev/sda"),),
    (("curl", "http://x"),),
    (("x", "curl", "http://x"),),
    (("timeout", "5", "sh", "-c", "id"),),
    (("timeout", "5", "ps"),),
    (("nice", "sh"),),
    (("env",),),
    (("env",), ("wc", "-l")),
    (("tcpdump", "-w", "/tmp/a.cap"),),
    (("unknown-tool",),),
    (("ps", "aux"), ("sh",)),
]
PATHS = ["/tmp/a.cap", "/tmp/a/b", "/etc/shadow", "/var/log/a"]


def policy() -> Policy:
    return load_policy_text(POLICY, "cache-test.yaml")


def uncached(pol: Policy) -> Policy:
    """The same compiled policy with empty caches (the cache is built per object)."""
    return dataclasses.replace(pol)


def decide(
    pol: Policy, principal: Principal, target: Target, stages: tuple[tuple[str, ...], ...]
) -> Decision:
    return evaluate(pol, principal=principal, target=target, stages=stages)


def test_cached_decisions_equal_uncached_ones_across_principals_and_targets() -> None:
    pol = policy()
    mix = list(itertools.product(PRINCIPALS, TARGETS, COMMANDS))
    random.Random(5).shuffle(mix)
    effects = set()
    for _ in range(2):  # the second pass decides from warm caches only
        for principal, target, stages in mix:
            cached = decide(pol, principal, target, stages)
            assert cached == decide(uncached(pol), principal, target, stages)
            effects.add((cached.effect, cached.rule_id))
    # The mix reaches every rule and the default deny, so every path was compared.
    assert {rule for _, rule in effects} == {rule.id for rule in pol.rules} | {None}
    assert {effect for effect, _ in effects} == set(Effect)


def test_cached_collect_and_act_decisions_equal_uncached_ones() -> None:
    pol = policy()
    for _ in range(2):
        for principal, target in itertools.product(PRINCIPALS, TARGETS):
            assert may_act_on(pol, principal, target) == may_act_on(
                uncached(pol), principal, target
            )
            for path in PATHS:
                cached = evaluate_collect(pol, principal=principal, target=target, path=path)
                fresh = evaluate_collect(
                    uncached(pol), principal=principal, target=target, path=path
                )
                assert cached == fresh


def test_targets_of_is_every_selector_that_matches() -> None:
    pol = policy()
    for _ in range(2):
        for target in TARGETS:
            expected = {name for name, sel in pol.targets.items() if sel.matches(target)}
            assert pol.targets_of(target) == expected


def test_instances_of_one_function_share_one_cache_entry() -> None:
    pol = policy()
    for instance in range(50):
        pol.targets_of(Target("orders-api", f"c-{instance}", "fc-prod"))
    assert _sizes(pol)["targets"] == 1


def test_caches_stay_within_their_bounds_and_still_decide_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PRINCIPALS_MAX", "TARGETS_MAX", "CONTEXTS_MAX", "CANDIDATES_MAX"):
        monkeypatch.setattr(candidates, name, 4)
    pol = policy()
    for index in range(60):
        principal = Principal(PrincipalKind.SLACK, f"U{index}", frozenset({f"S{index % 3 + 7}"}))
        target = Target(f"demo-{index}", "c-1", f"p{index % 5}")
        for stages in ((f"tool-{index}",), ("ps", "aux"), ("grep", "-v", f"x{index}")):
            cached = decide(pol, principal, target, (stages,))
            assert cached == decide(uncached(pol), principal, target, (stages,))
    assert pol.cache_stats()
    for stats in pol.cache_stats():
        assert stats.bound == 4
        assert stats.size <= stats.bound


def test_default_bounds_hold_against_many_distinct_requests() -> None:
    pol = policy()
    for index in range(candidates.CANDIDATES_MAX + 100):
        principal = Principal(PrincipalKind.LOCAL, f"user-{index % 1500}")
        target = Target(f"demo-{index % 1500}", "c-1", "local")
        decide(pol, principal, target, ((f"tool-{index}", "x"),))
    sizes = _sizes(pol)
    assert sizes["roles"] == candidates.PRINCIPALS_MAX
    assert sizes["targets"] == candidates.TARGETS_MAX
    assert sizes["candidates"] == candidates.CANDIDATES_MAX


def test_each_policy_object_has_its_own_caches() -> None:
    first, reloaded = policy(), policy()
    decide(first, PRINCIPALS[0], TARGETS[0], (("ps", "aux"),))
    assert all(size == 0 for size in _sizes(reloaded).values())
    assert all(size > 0 for size in _sizes(first).values())


def test_a_loaded_policy_cannot_be_changed() -> None:
    pol = policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        pol.rules = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        pol.targets["demo"] = pol.targets["prod"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pol.rules[0].who = frozenset()  # type: ignore[misc]


def _sizes(pol: Policy) -> dict[str, int]:
    return {stats.name: stats.size for stats in pol.cache_stats()}
