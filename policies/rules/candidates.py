"""Which patterns may decide a stage: the rule index, and a cache of it per policy.

``RuleIndex`` finds a policy's command patterns by the program they name. Much of a
decision is the same for every request of one principal on one target: which roles and
policy targets they fall under (``fnmatch`` of the target against every selector), which
rules apply to them, and which command patterns could match a given program (the
``program(...)`` tests of deny rules). A ``PolicyCache`` works these out once and keeps
them, so a decision only matches the patterns that can decide it:

- roles per principal, policy targets per (provider, function, qualifier): the instance
  id never takes part in a match, so one entry serves every instance of a function;
- the applicable rules per (roles, targets), in file order;
- ``Candidates`` per (roles, targets, program): the applicable command patterns, deny and
  grant, whose first element can accept the program, in the index's order. A pattern
  whose first element is optional (or absent: ``[...]``) is always kept. Dropping the
  others changes no decision: such a pattern can never match an argv starting with that
  program, and in a grant a guarded first argument is accepted only when it is one of
  the element's literals, which its test accepts as well. For later pipeline stages,
  the same filter over each pipeline rule's commands and ``extra_stages``.

A ``Policy`` is immutable after load and a reload builds a new one, so a cache belongs to
one policy object and is never invalidated. Principals, targets and programs come from
requests (an attacker can vary them freely), so every map is an LRU with a fixed bound.
``functools.lru_cache`` is used for its C implementation: bounded, thread-safe and
cheap on a hit. The cached functions close over the policy's parts, not the policy, so
no reference cycle keeps an old policy alive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from policies.types import Effect, Principal, Target

if TYPE_CHECKING:
    from policies.rules.model import Rule, TargetSelector
    from policies.rules.patterns import CommandPattern

# Bounds. Sizes of real policies and fleets are far below them; they exist because the
# keys are partly chosen by whoever sends requests.
PRINCIPALS_MAX = 1024
TARGETS_MAX = 1024
CONTEXTS_MAX = 256
CANDIDATES_MAX = 4096

TargetKey = tuple[str | None, str, str]
Candidate: TypeAlias = "tuple[Rule, CommandPattern]"


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Command patterns by the literal program they start with, in rule order.

    ``lookup(program)`` returns the patterns that name ``program`` merged with those
    whose first element is not a fixed set (``wild``).
    """

    keyed: Mapping[str, tuple[Candidate, ...]]
    wild: tuple[Candidate, ...]

    def lookup(self, program: str) -> tuple[Candidate, ...]:
        return self.keyed.get(program, self.wild)

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleIndex:
        keyed: dict[str, list[tuple[int, Candidate]]] = {}
        wild: list[tuple[int, Candidate]] = []
        order = 0
        for rule in rules:
            for pattern in rule.commands:
                entry = (order, (rule, pattern))
                order += 1
                keys = pattern.index_keys
                if keys is None:
                    wild.append(entry)
                for key in keys or ():
                    keyed.setdefault(key, []).append(entry)
        merged = {
            key: tuple(c for _, c in sorted([*entries, *wild], key=lambda e: e[0]))
            for key, entries in keyed.items()
        }
        return cls(MappingProxyType(merged), tuple(c for _, c in wild))


@dataclass(frozen=True, slots=True)
class Candidates:
    """The patterns that may decide a stage whose program is fixed, for one context.

    All in rule order and already limited to rules that apply to the context.
    """

    deny: tuple[Candidate, ...]
    grant: tuple[Candidate, ...]  # allow and approve
    piped: tuple[Candidate, ...]  # grant entries whose rule allows pipelines
    approve: tuple[Candidate, ...]  # grant entries of approve rules
    # For a later pipeline stage: by rule position, the rule's commands and extra_stages
    # (in that order) that may match; a rule that has none is left out.
    later: Mapping[int, tuple[CommandPattern, ...]]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """How full each map is; ``size <= bound`` always."""

    name: str
    size: int
    bound: int


class PolicyCache:
    """The per-policy caches behind ``Policy.roles_of``/``targets_of``/``candidates``."""

    __slots__ = ("_applicable", "_candidates", "_roles", "_targets")

    def __init__(
        self,
        rules: tuple[Rule, ...],
        deny_index: RuleIndex,
        grant_index: RuleIndex,
        roles_of: Callable[[Principal], frozenset[str]],
        selectors: Mapping[str, TargetSelector],
    ) -> None:
        self._roles = functools.lru_cache(maxsize=PRINCIPALS_MAX)(roles_of)
        self._targets = functools.lru_cache(maxsize=TARGETS_MAX)(
            functools.partial(_targets_of, tuple(selectors.values()))
        )
        applicable = functools.lru_cache(maxsize=CONTEXTS_MAX)(
            functools.partial(_applicable, rules)
        )
        self._applicable = applicable
        self._candidates = functools.lru_cache(maxsize=CANDIDATES_MAX)(
            functools.partial(_candidates, deny_index, grant_index, applicable)
        )

    def roles_of(self, principal: Principal) -> frozenset[str]:
        return self._roles(principal)

    def targets_of(self, target: Target) -> frozenset[str]:
        # A request without a qualifier is matched as LATEST (TargetSelector.matches).
        return self._targets((target.provider, target.function, target.qualifier or "LATEST"))

    def applicable(self, roles: frozenset[str], targets: frozenset[str]) -> tuple[Rule, ...]:
        return self._applicable(roles, targets)

    def candidates(
        self, roles: frozenset[str], targets: frozenset[str], program: str
    ) -> Candidates:
        return self._candidates(roles, targets, program)

    def stats(self) -> tuple[CacheStats, ...]:
        return tuple(
            CacheStats(name, info.currsize, info.maxsize or 0)
            for name, info in (
                ("roles", self._roles.cache_info()),
                ("targets", self._targets.cache_info()),
                ("applicable", self._applicable.cache_info()),
                ("candidates", self._candidates.cache_info()),
            )
        )


def _targets_of(selectors: tuple[TargetSelector, ...], key: TargetKey) -> frozenset[str]:
    provider, function, qualifier = key
    target = Target(function, "", provider, qualifier)
    return frozenset(sel.name for sel in selectors if sel.matches(target))


def _applicable(
    rules: tuple[Rule, ...], roles: frozenset[str], targets: frozenset[str]
) -> tuple[Rule, ...]:
    return tuple(rule for rule in rules if rule.applies(roles, targets))


def _candidates(
    deny_index: RuleIndex,
    grant_index: RuleIndex,
    applicable: Callable[[frozenset[str], frozenset[str]], tuple[Rule, ...]],
    roles: frozenset[str],
    targets: frozenset[str],
    program: str,
) -> Candidates:
    rules = frozenset(rule.position for rule in applicable(roles, targets))
    deny = _kept(deny_index.lookup(program), rules, program, deny=True)
    grant = _kept(grant_index.lookup(program), rules, program, deny=False)
    later: dict[int, tuple[CommandPattern, ...]] = {}
    for rule in applicable(roles, targets):
        if rule.pipeline:
            patterns = (*rule.commands, *rule.extra_stages)
            kept = tuple(p for p in patterns if _may_start(p, program, deny=False))
            if kept:
                later[rule.position] = kept
    return Candidates(
        deny=deny,
        grant=grant,
        piped=tuple(c for c in grant if c[0].pipeline),
        approve=tuple(c for c in grant if c[0].effect is Effect.APPROVE),
        later=MappingProxyType(later),
    )


def _kept(
    entries: Iterable[Candidate], rules: frozenset[int], program: str, *, deny: bool
) -> tuple[Candidate, ...]:
    return tuple(
        (rule, pattern)
        for rule, pattern in entries
        if rule.position in rules and _may_start(pattern, program, deny=deny)
    )


def _may_start(pattern: CommandPattern, program: str, *, deny: bool) -> bool:
    """False when ``pattern`` can match no argv that starts with ``program``."""
    first = pattern.elements[0] if pattern.elements else None
    return first is None or first.optional or first.test(program, deny)
