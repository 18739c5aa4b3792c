"""The policy decision: ``evaluate`` is pure and explains itself.

How rules combine (deny > approve > allow, default deny):

1. A rule applies when the principal holds one of its ``who`` roles (or ``who`` has
   ``"*"``) and the target falls under one of its ``where`` targets (or ``"*"``).
2. Deny: if an applicable deny rule matches ANY stage, the request is denied by the
   first such rule in file order. Deny rules match "any way": wrappers, flags and
   ``..`` paths (normalised) included.
3. A single command is *covered* by applicable allow/approve rules whose commands match
   it. A pipeline is covered by an applicable allow/approve rule with
   ``pipeline.allow`` whose commands match the first stage and whose commands or
   ``extra_stages`` match every later stage.
4. Approve beats allow: a covering approve rule wins over a covering allow rule; and if
   the covering rule is an allow rule but some stage on its own matches an applicable
   approve rule, that approve rule decides (a pipeline never skips an approval).
5. Otherwise the request is denied by default (``rule_id`` None); the reason says what
   did not match, naming the pipeline stage when there is one.

Within one effect the first rule in file order wins. Guarded arguments (shells,
interpreters, wrappers, ``find -exec``...; see ``policies.rules.wrappers``) are matched by
allow and approve rules only through literal pattern elements.

Collecting a file (``evaluate_collect``) uses the rules' ``collect:`` globs instead of
their commands, with the same precedence: a deny rule that refuses *reading* the path
(``cat PATH`` matches it, e.g. the credential-file rules) refuses collecting it; then an
applicable approve rule whose ``collect:`` globs match the path makes the collect wait
for approval; then an applicable allow rule allows it; otherwise it is denied by default.
The deciding rule's ``max_output`` is the size cap of the collected file (the file is
that rule's output) and its ``timeout`` bounds the transfer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence

from policies.collect.protocol import COLLECT_VERB
from policies.errors import CommandRejected
from policies.filters import compile_stage
from policies.rules.argtypes import Test, path_test
from policies.rules.candidates import Candidate, Candidates
from policies.rules.model import Policy, Rule
from policies.rules.patterns import CommandPattern
from policies.rules.wrappers import explain, guarded_positions
from policies.types import ApprovalSpec, Decision, Effect, Principal, PrincipalKind, Target

Stages = tuple[tuple[str, ...], ...]
_PLAIN = re.compile(r"[A-Za-z0-9_./:=@%+,-]+")


def evaluate(policy: Policy, *, principal: Principal, target: Target, stages: Stages) -> Decision:
    """Decide whether ``principal`` may run ``stages`` on ``target``. No I/O.

    ``target.provider`` must already be resolved by the caller.

    Raises: nothing for well-formed input; an empty ``stages`` or an empty stage is
    denied by default.
    """
    if not stages or any(not stage for stage in stages):
        return _default(policy, stages, "the command is empty")
    context = _Context(policy, principal, target)
    views = tuple(context.candidates(stage[0]) for stage in stages)
    for index, stage in enumerate(stages):
        for rule, pattern in views[index].deny:
            if pattern.matches(stage, deny=True):
                where = _stage_label(stages, index)
                return _decide(
                    Effect.DENY,
                    rule,
                    stages,
                    f"denied by rule {rule.id}: {where}{_show(stage)} matched {pattern}",
                )
    request = _Request(stages)
    covering = _covering(request, views)
    if covering is None:
        return _refusal(context, request, views)
    rule, patterns = covering
    unrunnable = _unrunnable_filter(rule, stages)
    if unrunnable is not None:
        return unrunnable
    matched = "; ".join(f"{_show(s)} matched {p}" for s, p in zip(stages, patterns, strict=True))
    prefix = "pipeline " if len(stages) > 1 else ""
    if rule.effect is Effect.APPROVE:
        return _decide(Effect.APPROVE, rule, stages, f"{_needs(rule)}: {prefix}{matched}")
    if len(stages) > 1:
        for index, stage in enumerate(stages):
            escalation = _first_match(views[index].approve, request, index)
            if escalation is not None:
                approve_rule, pattern = escalation
                return _decide(
                    Effect.APPROVE,
                    approve_rule,
                    stages,
                    f"{_needs(approve_rule)}: {_stage_label(stages, index)}{_show(stage)} "
                    f"matched {pattern} (pipeline allowed by rule {rule.id})",
                )
    return _decide(Effect.ALLOW, rule, stages, f"allowed by rule {rule.id}: {prefix}{matched}")


def evaluate_collect(
    policy: Policy, *, principal: Principal, target: Target, path: str
) -> Decision:
    """Decide whether ``principal`` may fetch the file ``path`` from ``target``. No I/O.

    ``path`` is absolute and free of ``..`` (``policies.collect.protocol.check_path``); the
    match is lexical: where a symlink leads is checked again on the resolved path.
    ``stages`` of the decision is the collect's symbolic argv, ``collect_paths`` the
    deciding rule's globs (the tree the resolved path must stay in).

    Raises: nothing for well-formed input.
    """
    stage = (COLLECT_VERB, path)
    context = _Context(policy, principal, target)
    for rule, pattern in context.candidates("cat").deny:
        if pattern.matches(("cat", path), deny=True):
            return _decide(
                Effect.DENY,
                rule,
                (stage,),
                f"denied by rule {rule.id}: reading {_show([path])} matched {pattern}",
            )
    covering: Rule | None = None
    for rule in context.rules:
        if rule.effect is Effect.DENY or not rule.collect:
            continue
        if not _collect_test(rule.collect)(path, False):
            continue
        if covering is None or (rule.effect is Effect.APPROVE and covering.effect is Effect.ALLOW):
            covering = rule
        if covering.effect is Effect.APPROVE:
            break
    if covering is None:
        who = f"{principal} (roles: {', '.join(sorted(context.roles)) or 'none'})"
        allowed = sorted(
            {
                glob
                for rule in context.rules
                if rule.effect is not Effect.DENY
                for glob in rule.collect
            }
        )
        hint = f"; collectable here: {', '.join(allowed)}" if allowed else ""
        return _default(policy, (stage,), f"no rule lets {who} collect {path} on {target}{hint}")
    matched = f"{path} matched collect {_show(covering.collect)}"
    if covering.effect is Effect.APPROVE:
        return _decide(Effect.APPROVE, covering, (stage,), f"{_needs(covering)}: {matched}")
    return _decide(Effect.ALLOW, covering, (stage,), f"allowed by rule {covering.id}: {matched}")


@functools.lru_cache(maxsize=256)
def _collect_test(globs: tuple[str, ...]) -> Test:
    return path_test(globs)


def may_act_on(policy: Policy, principal: Principal, target: Target) -> bool:
    """Whether any allow or approve rule applies to ``principal`` on ``target``.

    Sessions use this: opening one on an instance the policy gives you nothing on would
    only let you probe it with builtins.
    """
    context = _Context(policy, principal, target)
    return any(rule.effect is not Effect.DENY for rule in context.rules)


def is_approver(policy: Policy, principal: Principal, spec: ApprovalSpec) -> bool:
    """True when ``principal`` holds one of the approver roles of ``spec``.

    MCP clients never approve, whatever their roles: nothing a model sends may approve.
    Refusing the requester (self-approval) is the service's job: it knows who asked.
    """
    if principal.kind is PrincipalKind.MCP:
        return False
    return not policy.roles_of(principal).isdisjoint(spec.approver_roles)


class _Context:
    """What one evaluation knows about the principal and target (cached by the policy)."""

    def __init__(self, policy: Policy, principal: Principal, target: Target) -> None:
        self.policy = policy
        self.principal = principal
        self.target = target
        self.roles = policy.roles_of(principal)
        self.targets = policy.targets_of(target)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules that apply here, in file order."""
        return self.policy.applicable(self.roles, self.targets)

    def candidates(self, program: str) -> Candidates:
        """The applicable patterns that may match a stage running ``program``."""
        return self.policy.candidates(self.roles, self.targets, program)


class _Request:
    """The stages of one request, their guarded positions, and the grant matches so far.

    Rules that repeat a pattern share one compiled object (``policies.rules.model`` interns
    them), so many rules ask the same question of the same stage: each is answered once.
    """

    __slots__ = ("_seen", "guards", "stages")

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.guards = tuple(guarded_positions(stage) for stage in stages)
        self._seen: dict[tuple[int, int], bool] = {}

    def grants(self, pattern: CommandPattern, index: int) -> bool:
        """Whether ``pattern`` matches stage ``index`` the way an allow/approve rule does."""
        key = (id(pattern), index)
        seen = self._seen.get(key)
        if seen is None:
            seen = pattern.matches(self.stages[index], guarded=self.guards[index])
            self._seen[key] = seen
        return seen


def _covering(
    request: _Request, views: Sequence[Candidates]
) -> tuple[Rule, tuple[CommandPattern, ...]] | None:
    """The deciding allow/approve rule and the pattern each stage matched."""
    later = range(1, len(request.stages))
    best: tuple[Rule, tuple[CommandPattern, ...]] | None = None
    for rule, pattern in views[0].piped if later else views[0].grant:
        if best is not None and best[0].effect is Effect.APPROVE:
            break
        if best is not None and rule.effect is Effect.ALLOW:
            continue
        if not request.grants(pattern, 0):
            continue
        found = [_stage_pattern(rule, request, views, index) for index in later]
        if all(p is not None for p in found):
            best = (rule, (pattern, *[p for p in found if p is not None]))
    return best


def _stage_pattern(
    rule: Rule, request: _Request, views: Sequence[Candidates], index: int
) -> CommandPattern | None:
    """The first of the rule's commands and extra_stages that stage ``index`` matches."""
    for pattern in views[index].later.get(rule.position, ()):
        if request.grants(pattern, index):
            return pattern
    return None


def _first_match(
    candidates: Sequence[Candidate], request: _Request, index: int
) -> Candidate | None:
    for rule, pattern in candidates:
        if request.grants(pattern, index):
            return rule, pattern
    return None


def _refusal(context: _Context, request: _Request, views: Sequence[Candidates]) -> Decision:
    """The default deny, with the most useful explanation we can give."""
    stages, guards = request.stages, request.guards
    who = f"{context.principal} (roles: {', '.join(sorted(context.roles)) or 'none'})"
    head = f"no rule allows {_show_stages(stages)} for {who} on {context.target}"
    for index, stage in enumerate(stages):
        if not guards[index]:
            continue  # without a guarded argument both matches below are the same
        for rule, pattern in views[index].grant:
            if pattern.matches(stage, guarded=frozenset()) and not request.grants(pattern, index):
                named = frozenset().union(*(e.literals for e in pattern.elements))
                unnamed = sorted(p for p in guards[index] if stage[p] not in named)
                position = unnamed[0] if unnamed else min(guards[index])
                hint = (
                    f"{explain(stage, position)}, so only a rule that names it "
                    f"literally may allow it ({rule.id} does not)"
                )
                return _default(context.policy, stages, f"{head}: {hint}")
    if len(stages) > 1:
        return _default(context.policy, stages, f"{head}: {_pipeline_hint(request, views)}")
    return _default(context.policy, stages, head)


def _pipeline_hint(request: _Request, views: Sequence[Candidates]) -> str:
    stages = request.stages
    for rule, pattern in views[0].grant:
        if not request.grants(pattern, 0):
            continue
        if not rule.pipeline:
            return f"rule {rule.id} matches stage 1 but does not allow pipelines"
        for index, stage in enumerate(stages[1:], 1):
            if _stage_pattern(rule, request, views, index) is None:
                return (
                    f"stage {index + 1} {_show(stage)} is not among the commands or "
                    f"extra_stages of rule {rule.id}"
                )
    return f"no rule with pipeline.allow matches stage 1 {_show(stages[0])}"


def _unrunnable_filter(rule: Rule, stages: Stages) -> Decision | None:
    """A pipeline's later stages run inside ExecGate over scrubbed output
    (``policies.filters``): one it does not implement as asked is refused here."""
    for index, stage in enumerate(stages[1:], 1):
        try:
            compile_stage(stage)
        except CommandRejected as exc:
            return _decide(
                Effect.DENY,
                rule,
                stages,
                f"stage {index + 1} {_show(stage)} cannot run: {exc.safe_message}",
            )
    return None


def _decide(effect: Effect, rule: Rule, stages: Stages, reason: str) -> Decision:
    granted = effect is not Effect.DENY
    return Decision(
        effect=effect,
        rule_id=rule.id,
        reason=reason,
        limits=rule.limits,
        approval=rule.approval if effect is Effect.APPROVE else None,
        rate=rule.rate if granted else None,
        stages=stages,
        collect_paths=rule.collect if granted else (),
    )


def _default(policy: Policy, stages: Stages, reason: str) -> Decision:
    return Decision(
        effect=Effect.DENY,
        rule_id=None,
        reason=f"denied by default: {reason}",
        limits=policy.defaults.limits,
        stages=stages,
    )


def _needs(rule: Rule) -> str:
    spec = rule.approval
    roles = ", ".join(spec.approver_roles) if spec else "?"
    threshold = spec.threshold if spec else 1
    return f"needs approval by rule {rule.id} (approvers: {roles}; {threshold} needed)"


def _stage_label(stages: Stages, index: int) -> str:
    return f"stage {index + 1} " if len(stages) > 1 else ""


def _show(argv: Sequence[str]) -> str:
    """``[ps, aux]``; arguments that are not plain ASCII words are JSON-quoted."""
    return "[" + ", ".join(a if _PLAIN.fullmatch(a) else json.dumps(a) for a in argv) + "]"


def _show_stages(stages: Stages) -> str:
    return " | ".join(_show(stage) for stage in stages)
