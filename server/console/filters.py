"""The activity page's query string <-> a BrowseFilter. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from policies.audit.browse import BrowseFilter, Cursor
from policies.errors import ExecGateError
from policies.units import parse_instant

# Query parameter -> BrowseFilter field, for the exact-match filters.
EXACT = {
    "principal": "principal",
    "target": "target",
    "function": "function",
    "surface": "surface",
    "effect": "effect",
    "status": "status",
    "rule": "rule",
    "session": "session_id",
}
TIMES = ("since", "until")
TEXT = "q"
MAX_PARAM = 512


class BadFilter(ExecGateError):
    code = "bad_filter"
    default_message = "a filter value is not valid"


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed activity query: the filter, the raw values (to refill the form) and
    where the page starts."""

    filter: BrowseFilter
    values: dict[str, str]
    after: Cursor | None

    def link(self, **changes: str | None) -> str:
        """This query's string with ``changes`` (None removes a parameter)."""
        values = dict(self.values)
        for name, value in changes.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        return urlencode(sorted(values.items()))


def parse_query(params: Mapping[str, str], now: dt.datetime) -> Query:
    """Raises: BadFilter (with the parameter's name in ``fields``)."""
    values = {k: v.strip() for k, v in params.items() if v and v.strip()}
    for name, value in values.items():
        if len(value) > MAX_PARAM:
            raise BadFilter(f"{name} is too long", param=name)
    fields: dict[str, object] = {
        field: values[param] for param, field in EXACT.items() if param in values
    }
    for name in TIMES:
        if name in values:
            try:
                fields[name] = parse_instant(values[name], now)
            except ValueError:
                raise BadFilter(
                    f"{name}: give an ISO time or a duration ago (90min, 2h, 1d)", param=name
                ) from None
    if TEXT in values:
        fields["text"] = values[TEXT]
    after = None
    if "after" in values:
        try:
            after = Cursor.decode(values["after"])
        except ValueError:
            raise BadFilter("the page cursor is not valid", param="after") from None
    return Query(BrowseFilter(**fields), values, after)  # type: ignore[arg-type]
