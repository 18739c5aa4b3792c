"""Golden case files: loading, running and reporting."""

from __future__ import annotations

import pathlib

import pytest

from policies.errors import PolicyError, PolicyLoadError
from policies.rules.model import load_policy_text
from policies.rules.policytest import NO_RULE, SYNTAX_RULE, load_cases, load_cases_text, run_suite
from policies.types import Effect

POLICY = """\
version: 1
roles:
  ops: { local_users: [alice], slack_groups: [S1] }
targets:
  demo: { provider: local, functions: ["demo-*"] }
rules:
  - id: diag
    effect: allow
    who: [ops]
    where: [demo]
    commands: [[uptime]]
"""


def write(tmp_path: pathlib.Path, cases: str) -> pathlib.Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    path = tmp_path / "cases.yaml"
    path.write_text(cases)
    return path


def test_cases_resolve_the_policy_relative_to_their_file(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        """\
policy: policy.yaml
defaults: { as: local:alice, target: demo-api/c-1 }
cases:
  - { id: up, command: uptime, expect: allow, rule: diag }
  - { id: slack-group, as: "slack:U7", groups: [S1], argv: [uptime], expect: allow }
  - { id: other, command: id, expect: deny, rule: "(default)" }
  - { id: syntax, command: "uptime; id", expect: deny, rule: command-syntax, kind: shell_syntax }
""",
    )
    results = run_suite(load_cases(path))
    assert [(r.id, r.ok, r.actual, r.rule) for r in results] == [
        ("up", True, Effect.ALLOW, "diag"),
        ("slack-group", True, Effect.ALLOW, "diag"),
        ("other", True, Effect.DENY, None),
        ("syntax", True, Effect.DENY, SYNTAX_RULE),
    ]
    assert results[3].kind == "shell_syntax"


def test_targets_without_provider_use_the_default_provider(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        """\
policy: policy.yaml
default_provider: elsewhere
cases:
  - { id: up, as: local:alice, target: demo-api/c-1, command: uptime, expect: deny }
  - { id: named, as: local:alice, target: local:demo-api/c-1, command: uptime, expect: allow }
""",
    )
    suite = load_cases(path)
    assert all(r.ok for r in run_suite(suite))
    overridden = run_suite(suite, default_provider="local")
    assert [r.actual for r in overridden] == [Effect.ALLOW, Effect.ALLOW]


def test_failed_expectations_are_reported_not_raised(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        """\
policy: policy.yaml
defaults: { as: local:alice, target: local:demo-api/c-1 }
cases:
  - { id: wrong-effect, command: uptime, expect: deny }
  - { id: wrong-rule, command: uptime, expect: allow, rule: other }
  - { id: wrong-kind, command: "a;b", expect: deny, kind: quoting }
  - { id: no-rule-expected, command: uptime, expect: allow, rule: "(default)" }
""",
    )
    results = run_suite(load_cases(path))
    assert [r.ok for r in results] == [False, False, False, False]
    assert results[0].expected is Effect.DENY and results[0].actual is Effect.ALLOW
    assert results[3].rule == "diag" and NO_RULE == "(default)"


def test_an_explicit_policy_overrides_the_file(tmp_path: pathlib.Path) -> None:
    suite = load_cases_text(
        "cases: [{ id: up, as: local:alice, target: local:demo-api/c, command: uptime, "
        "expect: allow }]",
        "inline.yaml",
    )
    assert suite.policy_path is None
    with pytest.raises(PolicyError):
        run_suite(suite)
    results = run_suite(suite, load_policy_text(POLICY, "p.yaml"))
    assert results[0].ok


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("cases:\n  - { id: a, command: x }\n", 2, id="missing-as-target-expect"),
        pytest.param(
            "cases:\n  - id: a\n    as: local:a\n    target: f/i\n    expect: allow\n", 2,
            id="neither-command-nor-argv",
        ),
        pytest.param(
            "defaults: { as: local:a, target: f/i, expect: deny }\ncases:\n"
            "  - { id: a, command: x, argv: [x] }\n", 3,
            id="both-command-and-argv",
        ),
        pytest.param(
            "defaults: { target: f/i, expect: deny }\ncases:\n  - id: a\n"
            "    as: alice\n    command: x\n", 4,
            id="bad-principal",
        ),
        pytest.param(
            "defaults: { as: local:a, expect: deny }\ncases:\n  - id: a\n"
            "    target: no-instance\n    command: x\n", 4,
            id="bad-target",
        ),
        pytest.param(
            "defaults: { as: local:a, target: f/i }\ncases:\n  - id: a\n"
            "    command: x\n    expect: maybe\n", 5,
            id="bad-expect",
        ),
        pytest.param(
            "defaults: { as: local:a, target: f/i, expect: deny }\ncases:\n"
            "  - { id: a, command: x }\n  - { id: a, command: y }\n", 4,
            id="duplicate-id",
        ),
        pytest.param("cases:\n  - { id: a, command: x, surprise: 1 }\n", 2, id="unknown-key"),
        pytest.param("cases: []\n", 1, id="no-cases"),
    ],
)  # fmt: skip
def test_bad_case_files_name_the_line(text: str, line: int) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load_cases_text(text, "cases.yaml")
    assert (caught.value.file, caught.value.line) == ("cases.yaml", line)
