"""The bypass corpus: every attempt is refused by the default policy."""

from __future__ import annotations

import pathlib

import pytest

from policies.rules.commands import MAX_ARGS, MAX_LENGTH
from policies.rules.model import Policy, load_policy
from policies.rules.policytest import SYNTAX_RULE, GoldenCase, load_cases, run_case
from policies.types import Effect, Principal, Target

HERE = pathlib.Path(__file__).parent
DEFAULT_POLICY = HERE.parents[2] / "policies" / "default.yaml"
CORPUS = [
    (path.stem, case)
    for path in sorted((HERE / "corpus").glob("*.yaml"))
    for case in load_cases(path).cases
]

ALICE = Principal.parse("local:alice")
DEMO = Target.parse("demo-api/c-1")
OVERLONG = [
    GoldenCase("overlong-text", ALICE, DEMO, Effect.DENY, command="ps " + "a" * MAX_LENGTH),
    GoldenCase(
        "overlong-pipeline", ALICE, DEMO, Effect.DENY, command=" | ".join(["wc"] * MAX_LENGTH)
    ),
    GoldenCase("overlong-argv", ALICE, DEMO, Effect.DENY, argv=("printenv", "A" * MAX_LENGTH)),
    GoldenCase("too-many-args", ALICE, DEMO, Effect.DENY, argv=("ls",) * (MAX_ARGS + 1)),
    GoldenCase(
        "many-short-args-over-length",
        ALICE,
        DEMO,
        Effect.DENY,
        argv=("grep", *["x" * 40] * 120),
    ),
]


@pytest.fixture(scope="module")
def default_policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


def test_the_corpus_has_at_least_150_attempts() -> None:
    assert len(CORPUS) + len(OVERLONG) >= 150


def test_corpus_ids_are_unique_within_each_file() -> None:
    ids = [f"{group}/{case.id}" for group, case in CORPUS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "case", [case for _, case in CORPUS], ids=[f"{group}/{case.id}" for group, case in CORPUS]
)
def test_bypass_attempt_is_refused(default_policy: Policy, case: GoldenCase) -> None:
    result = run_case(default_policy, case)
    assert result.actual is Effect.DENY, result.message
    assert result.ok, result.message


@pytest.mark.parametrize("case", OVERLONG, ids=[case.id for case in OVERLONG])
def test_overlong_input_is_refused_before_matching(
    default_policy: Policy, case: GoldenCase
) -> None:
    result = run_case(default_policy, case)
    assert (result.actual, result.rule, result.kind) == (Effect.DENY, SYNTAX_RULE, "too_long")
