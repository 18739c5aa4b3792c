"""Policies: load a YAML policy file, validate it whole, compile it for the engine.

A policy file (version 1)::

    version: 1
    roles:                      # who is who; "*" in a list = any principal of that kind
      oncall:
        slack_users: [U024BE7LH]
        slack_groups: [S0614TZR7]   # "*" = any Slack user in some user group
        mcp_clients: [claude-desktop-alice]
        local_users: [alice]
    targets:                    # where: provider glob, function globs, qualifier globs
      prod: { provider: fc-prod, functions: ["orders-*"], qualifiers: [LATEST] }
    defaults: { timeout: 60s, idle_timeout: 600s, max_output: 1MiB, rate: 30/min }
    rules:
      - id: read-only-diagnostics
        effect: allow           # allow | approve | deny
        who: [oncall]           # role names, or "*" for anyone
        where: [prod]           # target names, or "*" for any instance
        commands:               # argument patterns, see policies.rules.patterns
          - [ps, "{flags:oneof(aux,-ef)}"]
        pipeline: { allow: true, extra_stages: [[wc, -l]] }
        limits: { timeout: 30s }            # over defaults
        approval: { approvers: [leads], threshold: 1, ttl: 15m }   # approve rules only
        collect: ["/tmp/*.cap"]             # files the requester may fetch afterwards

A target without ``qualifiers`` matches every qualifier; a request without a qualifier
is matched as ``LATEST``. How rules combine is in ``policies.rules.engine``. A file that fails
any check is rejected whole with ``PolicyLoadError(file, line, reason)``; the caller keeps
its last good policy.
"""

from __future__ import annotations

import fnmatch
import hashlib
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from policies.errors import PolicyLoadError
from policies.rules.argtypes import path_test
from policies.rules.candidates import CacheStats, Candidates, PolicyCache, RuleIndex
from policies.rules.patterns import CommandPattern, PatternError, compile_command
from policies.rules.schema import PolicyModel, RoleModel, RuleModel, TargetModel
from policies.rules.yamldoc import YamlDocument, parse_yaml, validate_document
from policies.types import (
    ApprovalSpec,
    Effect,
    Limits,
    Principal,
    PrincipalKind,
    RateSpec,
    Target,
)

ANY = "*"
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TargetSelector:
    name: str
    provider: str
    functions: tuple[str, ...]
    qualifiers: tuple[str, ...] | None

    def matches(self, target: Target) -> bool:
        provider = target.provider
        if provider is None:
            if self.provider != ANY:
                return False
        elif not fnmatch.fnmatchcase(provider, self.provider):
            return False
        if not any(fnmatch.fnmatchcase(target.function, glob) for glob in self.functions):
            return False
        if self.qualifiers is None:
            return True
        qualifier = target.qualifier or "LATEST"
        return any(fnmatch.fnmatchcase(qualifier, glob) for glob in self.qualifiers)


@dataclass(frozen=True, slots=True)
class Defaults:
    limits: Limits
    rate: RateSpec | None


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule; ``limits`` and ``rate`` are already merged over the defaults."""

    id: str
    effect: Effect
    who: frozenset[str]
    where: frozenset[str]
    commands: tuple[CommandPattern, ...]
    pipeline: bool
    extra_stages: tuple[CommandPattern, ...]
    approval: ApprovalSpec | None
    limits: Limits
    rate: RateSpec | None
    collect: tuple[str, ...]
    line: int
    position: int
    description: str = ""

    def applies(self, roles: frozenset[str], targets: frozenset[str]) -> bool:
        """Whether the rule applies to a principal holding ``roles`` on ``targets``."""
        return (ANY in self.who or not roles.isdisjoint(self.who)) and (
            ANY in self.where or not targets.isdisjoint(self.where)
        )


@dataclass(frozen=True, slots=True)
class _RoleLookup:
    members: Mapping[tuple[PrincipalKind, str], frozenset[str]]
    wildcard: Mapping[PrincipalKind, frozenset[str]]
    groups: Mapping[str, frozenset[str]]
    any_group: frozenset[str]

    def roles_of(self, principal: Principal) -> frozenset[str]:
        roles = self.members.get((principal.kind, principal.id), _EMPTY)
        roles = roles | self.wildcard.get(principal.kind, _EMPTY)
        if principal.kind is PrincipalKind.SLACK and principal.groups:
            roles = roles | self.any_group
            for group in principal.groups:
                roles = roles | self.groups.get(group, _EMPTY)
        return roles

    @classmethod
    def build(cls, roles: Mapping[str, RoleModel]) -> _RoleLookup:
        members: dict[tuple[PrincipalKind, str], set[str]] = {}
        wildcard: dict[PrincipalKind, set[str]] = {}
        groups: dict[str, set[str]] = {}
        any_group: set[str] = set()
        for name, role in roles.items():
            for kind, ids in (
                (PrincipalKind.SLACK, role.slack_users),
                (PrincipalKind.MCP, role.mcp_clients),
                (PrincipalKind.LOCAL, role.local_users),
            ):
                for ident in ids:
                    if ident == ANY:
                        wildcard.setdefault(kind, set()).add(name)
                    else:
                        members.setdefault((kind, ident), set()).add(name)
            for group in role.slack_groups:
                (any_group if group == ANY else groups.setdefault(group, set())).add(name)
        return cls(
            MappingProxyType({k: frozenset(v) for k, v in members.items()}),
            MappingProxyType({k: frozenset(v) for k, v in wildcard.items()}),
            MappingProxyType({k: frozenset(v) for k, v in groups.items()}),
            frozenset(any_group),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A validated, compiled policy. ``digest`` is the sha256 of the source text."""

    source: str
    digest: str
    roles: Mapping[str, RoleModel]
    targets: Mapping[str, TargetSelector]
    defaults: Defaults
    rules: tuple[Rule, ...]
    deny_index: RuleIndex = field(repr=False)
    grant_index: RuleIndex = field(repr=False)
    _role_lookup: _RoleLookup = field(repr=False)
    # Derived from the fields above, which never change: see policies.rules.candidates.
    _cache: PolicyCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cache = PolicyCache(
            self.rules,
            self.deny_index,
            self.grant_index,
            self._role_lookup.roles_of,
            self.targets,
        )
        object.__setattr__(self, "_cache", cache)

    def roles_of(self, principal: Principal) -> frozenset[str]:
        """The roles ``principal`` holds (Slack groups via ``principal.groups``)."""
        return self._cache.roles_of(principal)

    def targets_of(self, target: Target) -> frozenset[str]:
        """The names of the policy's targets that ``target`` falls under."""
        return self._cache.targets_of(target)

    def applicable(self, roles: frozenset[str], targets: frozenset[str]) -> tuple[Rule, ...]:
        """The rules that apply to ``roles`` on ``targets``, in file order."""
        return self._cache.applicable(roles, targets)

    def candidates(
        self, roles: frozenset[str], targets: frozenset[str], program: str
    ) -> Candidates:
        """The applicable patterns that may match a stage starting with ``program``."""
        return self._cache.candidates(roles, targets, program)

    def cache_stats(self) -> tuple[CacheStats, ...]:
        return self._cache.stats()

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


def load_policy(path: pathlib.Path) -> Policy:
    """Read, validate and compile the policy file at ``path``.

    Raises: PolicyLoadError (unreadable file, YAML or schema error, unknown role or
    target, bad pattern, duplicate rule id), with the file, 1-based line and reason.
    """
    return load_policy_text(read_text(path), str(path))


def read_text(path: pathlib.Path) -> str:
    """The UTF-8 text of a policy or case file.

    Raises: PolicyLoadError when it cannot be read or is not UTF-8.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyLoadError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise PolicyLoadError(str(path), None, "is a directory, not a file") from None
    except PermissionError:
        raise PolicyLoadError(str(path), None, "permission denied") from None
    except OSError:
        raise PolicyLoadError(str(path), None, "the file cannot be read") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyLoadError(str(path), None, "the file is not UTF-8 text") from None


def load_policy_text(text: str, source: str) -> Policy:
    """Validate and compile policy text; ``source`` names it in errors.

    Raises: PolicyLoadError.
    """
    doc = parse_yaml(text, source)
    model = validate_document(PolicyModel, doc)
    defaults = Defaults(
        Limits(
            timeout=model.defaults.timeout,
            idle_timeout=model.defaults.idle_timeout,
            max_output_bytes=model.defaults.max_output,
        ),
        model.defaults.rate,
    )
    targets = {name: _selector(doc, name, spec) for name, spec in model.targets.items()}
    _check_roles(doc, model)
    doc.reject_duplicates("rules", [spec.id for spec in model.rules], "rule")
    # Rules that repeat a pattern share one compiled object, so a decision can remember
    # how a stage fared against it instead of matching it again for every rule.
    interned: dict[tuple[tuple[str, ...], bool], CommandPattern] = {}
    rules = [
        _compile_rule(doc, model, position, spec, defaults, interned)
        for position, spec in enumerate(model.rules)
    ]
    return Policy(
        source=source,
        digest=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        roles=MappingProxyType(dict(model.roles)),
        targets=MappingProxyType(targets),
        defaults=defaults,
        rules=tuple(rules),
        deny_index=RuleIndex.build(r for r in rules if r.effect is Effect.DENY),
        grant_index=RuleIndex.build(r for r in rules if r.effect is not Effect.DENY),
        _role_lookup=_RoleLookup.build(model.roles),
    )


def _selector(doc: YamlDocument, name: str, spec: TargetModel) -> TargetSelector:
    if not spec.provider:
        doc.fail(("targets", name, "provider"), "provider must not be empty ('*' for any)")
    for index, glob in enumerate(spec.functions):
        if not glob:
            doc.fail(("targets", name, "functions", index), "function glob must not be empty")
    return TargetSelector(name, spec.provider, spec.functions, spec.qualifiers)


def _check_roles(doc: YamlDocument, model: PolicyModel) -> None:
    for name, role in model.roles.items():
        for key in ("slack_users", "slack_groups", "mcp_clients", "local_users"):
            for index, ident in enumerate(getattr(role, key)):
                if not ident.strip() or ident != ident.strip():
                    doc.fail(("roles", name, key, index), "ids must be non-empty, unpadded")


def _names(
    doc: YamlDocument,
    loc: tuple[str | int, ...],
    values: tuple[str, ...],
    known: Mapping[str, object],
    what: str,
    *,
    wildcard: bool = True,
) -> frozenset[str]:
    for index, value in enumerate(values):
        if value == ANY and wildcard:
            continue
        if value not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            doc.fail((*loc, index), f"unknown {what} {value!r} (known: {listed})")
    return frozenset(values)


def _compile_rule(
    doc: YamlDocument,
    model: PolicyModel,
    position: int,
    spec: RuleModel,
    defaults: Defaults,
    interned: dict[tuple[tuple[str, ...], bool], CommandPattern],
) -> Rule:
    at: tuple[str | int, ...] = ("rules", position)
    effect = Effect(spec.effect)
    grant = effect is not Effect.DENY
    who = _names(doc, (*at, "who"), spec.who, model.roles, "role")
    where = _names(doc, (*at, "where"), spec.where, model.targets, "target")
    commands = _patterns(doc, (*at, "commands"), spec.commands, interned, grant=grant)
    approval: ApprovalSpec | None = None
    if effect is Effect.APPROVE:
        if spec.approval is None:
            doc.fail((*at, "effect"), "an approve rule needs an 'approval:' block")
        approvers = spec.approval.approvers
        _names(doc, (*at, "approval", "approvers"), approvers, model.roles, "role", wildcard=False)
        approval = ApprovalSpec(approvers, spec.approval.threshold, spec.approval.ttl)
    elif spec.approval is not None:
        doc.fail((*at, "approval"), "only approve rules take an 'approval:' block")
    pipeline = spec.pipeline
    extra: tuple[CommandPattern, ...] = ()
    if pipeline is not None:
        if not grant:
            doc.fail((*at, "pipeline"), "deny rules match every stage on their own")
        if pipeline.extra_stages and not pipeline.allow:
            doc.fail((*at, "pipeline", "extra_stages"), "extra_stages needs 'allow: true'")
        extra = _patterns(
            doc, (*at, "pipeline", "extra_stages"), pipeline.extra_stages, interned, grant=True
        )
    for index, glob in enumerate(spec.collect):
        try:
            path_test([glob])
        except ValueError as exc:
            doc.fail((*at, "collect", index), str(exc))
    limits, rate = defaults.limits, defaults.rate
    if spec.limits is not None:
        over = spec.limits
        limits = Limits(
            timeout=over.timeout if over.timeout is not None else limits.timeout,
            idle_timeout=over.idle_timeout
            if over.idle_timeout is not None
            else limits.idle_timeout,
            max_output_bytes=over.max_output
            if over.max_output is not None
            else limits.max_output_bytes,
        )
        rate = over.rate if over.rate is not None else rate
    return Rule(
        id=spec.id,
        effect=effect,
        who=who,
        where=where,
        commands=commands,
        pipeline=pipeline is not None and pipeline.allow,
        extra_stages=extra,
        approval=approval,
        limits=limits,
        rate=rate,
        collect=spec.collect,
        line=doc.line_of(at),
        position=position,
        description=spec.description,
    )


def _patterns(
    doc: YamlDocument,
    loc: tuple[str | int, ...],
    lists: tuple[tuple[str, ...], ...],
    interned: dict[tuple[tuple[str, ...], bool], CommandPattern],
    *,
    grant: bool,
) -> tuple[CommandPattern, ...]:
    compiled: list[CommandPattern] = []
    for index, items in enumerate(lists):
        key = (tuple(items), grant)
        pattern = interned.get(key)
        if pattern is None:
            try:
                pattern = interned[key] = compile_command(items, grant=grant)
            except PatternError as exc:
                doc.fail((*loc, index, exc.index), str(exc))
        compiled.append(pattern)
    return tuple(compiled)
