"""Durations, sizes and rates as policy and config files write them.

- durations: ``500ms``, ``60s``, ``15m``, ``2h``, ``1d`` or a bare number of seconds;
- sizes: ``512``, ``64KiB``, ``1MiB``, ``2GiB`` (powers of 1024) or ``10KB``, ``1MB``,
  ``1GB`` (powers of 1000);
- rates: ``COUNT/PERIOD`` where PERIOD is ``s``, ``sec``, ``min``, ``h``, ``hour``, ``day``
  or a duration (``30/min``, ``100/h``, ``5/10s``);
- instants: a duration ago (``90min``, ``2h``, ``1d``) or an ISO 8601 date or time, in
  UTC unless it names its zone (``2026-11-19``, ``2026-11-19T08:30:00+08:00``).

Every parser raises ``ValueError`` with a message fit for a policy author.
"""

from __future__ import annotations

import datetime as dt
import re

from policies.types import RateSpec

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?$")
# The first unit of each table is the one a bare number is in.
_DURATION_UNITS = {"s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$")
_SIZE_UNITS: dict[str, float] = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}

_RATE_RE = re.compile(r"^(\d+)\s*/\s*(\S+)$")
_RATE_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _scaled(text: str, pattern: re.Pattern[str], units: dict[str, float], what: str) -> float:
    """The number in ``text`` times its unit (the table's first unit when none is written)."""
    match = pattern.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a {what}; write e.g. {_EXAMPLES[what]}")
    value = float(match[1]) * units[match[2] or next(iter(units))]
    if value <= 0:
        raise ValueError(f"{what} {text!r} must be more than zero")
    return value


_EXAMPLES = {"duration": "60s, 15m, 2h", "size": "64KiB, 1MiB, 10MB"}


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``60s``, ``15m``, ``500ms``, ``2h``, ``1d``, ``30``).

    Raises: ValueError when the text is not a positive duration.
    """
    return _scaled(text, _DURATION_RE, _DURATION_UNITS, "duration")


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``1MiB``, ``64KiB``, ``10MB``, ``4096``).

    Raises: ValueError when the text is not a positive size.
    """
    return int(_scaled(text, _SIZE_RE, _SIZE_UNITS, "size"))


def parse_rate(text: str) -> RateSpec:
    """A rate such as ``30/min``, ``100/h`` or ``5/10s``.

    Raises: ValueError when the text is not a positive rate.
    """
    match = _RATE_RE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate; write e.g. 30/min, 100/h")
    count = int(match[1])
    period = _RATE_PERIODS.get(match[2])
    if period is None:
        try:
            period = parse_duration(match[2])
        except ValueError:
            raise ValueError(f"{text!r} is not a rate; write e.g. 30/min, 100/h") from None
    if count <= 0:
        raise ValueError(f"rate {text!r} must allow at least one command")
    return RateSpec(count=count, per_seconds=period)


def parse_instant(text: str, now: dt.datetime) -> dt.datetime:
    """The moment ``text`` names: a duration before ``now`` or an ISO 8601 time.

    Raises: ValueError when the text is neither.
    """
    try:
        return now - dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90min, 2h, 1d) nor an ISO 8601 time"
        ) from None
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
