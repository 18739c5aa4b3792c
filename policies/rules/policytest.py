"""Golden cases for policies: `execgate policy test FILE...` and the test suite.

A case file::

    policy: ../../policies/default.yaml   # optional, relative to this file
    default_provider: local               # provider for targets that name none
    defaults:                              # optional values every case inherits
      as: local:alice
      target: demo-api/c-1
    cases:
      - id: ps-aux-is-allowed
        command: ps aux                    # text, parsed like a person's input...
        expect: allow                      # allow | deny | approve
        rule: read-only-diagnostics        # optional; "(default)" = no rule matched,
                                           # "command-syntax" = refused before matching
      - id: argv-semicolon-is-a-literal
        argv: [ls, ";"]                    # ...or an argv list, run without a shell
        expect: deny
        kind: shell_syntax                 # optional: CommandRejected kind expected

``as`` is ``kind:id`` (``local:alice``, ``slack:U123``, ``mcp:claude``); a Slack case may
add ``groups: [S123]``. Text that ``parse_command_text`` refuses counts as effect
``deny`` with rule ``command-syntax``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from policies.errors import CommandRejected, PolicyError, TargetError
from policies.rules.commands import parse_command_text, validate_argv
from policies.rules.engine import evaluate
from policies.rules.model import Policy, load_policy, read_text
from policies.rules.yamldoc import YamlDocument, parse_yaml, validate_document
from policies.types import Effect, Principal, Target

SYNTAX_RULE = "command-syntax"
NO_RULE = "(default)"

_EffectName = Literal["allow", "deny", "approve"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class _CaseDefaults(_Strict):
    principal: str | None = Field(default=None, alias="as")
    target: str | None = None
    expect: _EffectName | None = None
    groups: tuple[str, ...] = ()


class _CaseModel(_Strict):
    id: str = Field(min_length=1)
    principal: str | None = Field(default=None, alias="as")
    target: str | None = None
    command: str | None = None
    argv: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    expect: _EffectName | None = None
    rule: str | None = None
    kind: str | None = None
    description: str = ""


class _SuiteModel(_Strict):
    policy: str | None = None
    default_provider: str = "local"
    description: str = ""
    defaults: _CaseDefaults = _CaseDefaults()
    cases: tuple[_CaseModel, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class GoldenCase:
    id: str
    principal: Principal
    target: Target
    expect: Effect
    command: str | None = None
    argv: tuple[str, ...] | None = None
    rule: str | None = None
    kind: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class GoldenSuite:
    source: str
    policy_path: pathlib.Path | None
    cases: tuple[GoldenCase, ...]
    default_provider: str = "local"


@dataclass(frozen=True, slots=True)
class CaseResult:
    id: str
    ok: bool
    expected: Effect
    actual: Effect
    rule: str | None
    message: str
    kind: str | None = None
    line: int | None = None


def load_cases(path: pathlib.Path) -> GoldenSuite:
    """Read a golden case file.

    Raises: PolicyLoadError (with file and line) for a bad file or case.
    """
    return load_cases_text(read_text(path), str(path), base=path.parent)


def load_cases_text(text: str, source: str, *, base: pathlib.Path | None = None) -> GoldenSuite:
    """Raises: PolicyLoadError."""
    doc = parse_yaml(text, source)
    model = validate_document(_SuiteModel, doc)
    doc.reject_duplicates("cases", [case.id for case in model.cases], "case")
    cases = [_case(doc, model, index, case) for index, case in enumerate(model.cases)]
    policy_path = None
    if model.policy is not None:
        policy_path = (base or pathlib.Path.cwd()) / model.policy
    return GoldenSuite(source, policy_path, tuple(cases), model.default_provider)


def _case(doc: YamlDocument, model: _SuiteModel, index: int, case: _CaseModel) -> GoldenCase:
    at: tuple[str | int, ...] = ("cases", index)
    if (case.command is None) == (case.argv is None):
        doc.fail(at, "a case needs exactly one of 'command' (text) and 'argv' (list)")
    principal_text = case.principal or model.defaults.principal
    target_text = case.target or model.defaults.target
    expect = case.expect or model.defaults.expect
    for key, value in (("as", principal_text), ("target", target_text), ("expect", expect)):
        if value is None:
            doc.fail(at, f"missing required key {key!r} (in the case or in defaults)")
    assert principal_text is not None and target_text is not None and expect is not None
    groups = case.groups if case.groups is not None else model.defaults.groups
    try:
        parsed = Principal.parse(principal_text)
        principal = Principal(parsed.kind, parsed.id, frozenset(groups))
    except ValueError:
        doc.fail((*at, "as"), f"{principal_text!r} is not kind:id (local:, slack:, mcp:)")
    try:
        target = Target.parse(target_text)
    except TargetError as exc:
        doc.fail((*at, "target"), exc.safe_message)
    return GoldenCase(
        id=case.id,
        principal=principal,
        target=target,
        expect=Effect(expect),
        command=case.command,
        argv=case.argv,
        rule=case.rule,
        kind=case.kind,
        line=doc.line_of(at),
    )


def run_suite(
    suite: GoldenSuite, policy: Policy | None = None, *, default_provider: str | None = None
) -> list[CaseResult]:
    """Evaluate every case; ``policy`` overrides the file named by the suite.

    Raises: PolicyLoadError when the suite's policy file is bad; PolicyError when there
    is no policy at all.
    """
    if policy is None:
        if suite.policy_path is None:
            raise PolicyError(f"{suite.source} names no policy; pass one with --policy")
        policy = load_policy(suite.policy_path)
    provider = default_provider or suite.default_provider
    return [run_case(policy, case, default_provider=provider) for case in suite.cases]


def run_case(policy: Policy, case: GoldenCase, *, default_provider: str = "local") -> CaseResult:
    """Evaluate one case and compare it with its expectations."""
    target = case.target if case.target.provider else case.target.with_provider(default_provider)
    kind: str | None = None
    rule: str | None
    try:
        if case.command is not None:
            stages = parse_command_text(case.command).stages
        else:
            stages = (validate_argv(case.argv or ()),)
    except CommandRejected as exc:
        actual, rule, kind, message = Effect.DENY, SYNTAX_RULE, exc.kind, exc.safe_message
    else:
        decision = evaluate(policy, principal=case.principal, target=target, stages=stages)
        actual, rule, message = decision.effect, decision.rule_id, decision.reason
    problems: list[str] = []
    if actual is not case.expect:
        problems.append(f"expected {case.expect.value}, got {actual.value}")
    if case.rule is not None and case.rule != (rule or NO_RULE):
        problems.append(f"expected rule {case.rule}, got {rule or NO_RULE}")
    if case.kind is not None and case.kind != kind:
        problems.append(f"expected refusal kind {case.kind}, got {kind or 'none'}")
    if problems:
        message = "; ".join(problems) + f" ({message})"
    return CaseResult(
        id=case.id,
        ok=not problems,
        expected=case.expect,
        actual=actual,
        rule=rule,
        message=message,
        kind=kind,
        line=case.line,
    )
