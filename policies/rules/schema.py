"""The policy file schema (pydantic): the shape of a file before it is compiled.

Unknown keys are errors everywhere. Scalars arrive as strings (see
``policies.rules.yamldoc``) and are typed here: durations, sizes and rates use
``policies.units``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
)

from policies.types import RateSpec
from policies.units import parse_duration, parse_rate, parse_size

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _text(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _identifier(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (letters, digits, '-', '_', '.'; at most 64)"
        )
    return value


def _version(value: object) -> int:
    if str(value).strip() != "1":
        raise ValueError("must be 1")
    return 1


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


def _size(value: object) -> object:
    return parse_size(value) if isinstance(value, str) else value


def _rate(value: object) -> RateSpec:
    if not isinstance(value, str):
        raise ValueError("a rate is written COUNT/PERIOD, e.g. 30/min")
    return parse_rate(value)


Duration = Annotated[float, BeforeValidator(_duration)]
Size = Annotated[int, BeforeValidator(_size)]
Rate = Annotated[RateSpec, PlainValidator(_rate)]
Name = Annotated[str, BeforeValidator(_text), AfterValidator(_identifier)]
NonEmptyList = Annotated[tuple[str, ...], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class RoleModel(_Strict):
    """Who holds a role. ``"*"`` in a list means any principal of that kind."""

    description: str = ""
    slack_users: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()
    mcp_clients: tuple[str, ...] = ()
    local_users: tuple[str, ...] = ()


class TargetModel(_Strict):
    """Instances by provider, function glob and (optionally) qualifier glob."""

    description: str = ""
    provider: str = "*"
    functions: NonEmptyList
    qualifiers: tuple[str, ...] | None = None


class LimitsModel(_Strict):
    timeout: Duration | None = None
    idle_timeout: Duration | None = None
    max_output: Size | None = None
    rate: Rate | None = None


class DefaultsModel(_Strict):
    timeout: Duration = 60.0
    idle_timeout: Duration = 600.0
    max_output: Size = 1 << 20
    rate: Rate | None = None


class ApprovalModel(_Strict):
    approvers: NonEmptyList
    threshold: Annotated[int, Field(ge=1, le=20)] = 1
    ttl: Duration = 900.0


class PipelineModel(_Strict):
    allow: bool = False
    extra_stages: tuple[tuple[str, ...], ...] = ()


class RuleModel(_Strict):
    id: Name
    description: str = ""
    effect: Literal["allow", "deny", "approve"]
    who: NonEmptyList
    where: NonEmptyList
    commands: Annotated[tuple[tuple[str, ...], ...], Field(min_length=1)]
    pipeline: PipelineModel | None = None
    approval: ApprovalModel | None = None
    limits: LimitsModel | None = None
    collect: tuple[str, ...] = ()


class PolicyModel(_Strict):
    version: Annotated[int, BeforeValidator(_version)]
    description: str = ""
    roles: dict[Name, RoleModel] = Field(default_factory=dict)
    targets: dict[Name, TargetModel] = Field(default_factory=dict)
    defaults: DefaultsModel = DefaultsModel()
    rules: tuple[RuleModel, ...] = ()
