"""Points in time as people write them: a duration ago, or an ISO 8601 time."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.units import parse_instant

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90min", NOW - dt.timedelta(minutes=90), id="minutes"),
        pytest.param("15m", NOW - dt.timedelta(minutes=15), id="m"),
        pytest.param("2h", NOW - dt.timedelta(hours=2), id="hours"),
        pytest.param("1d", NOW - dt.timedelta(days=1), id="days"),
        pytest.param("30s", NOW - dt.timedelta(seconds=30), id="seconds"),
        pytest.param("2026-11-19", dt.datetime(2026, 11, 19, tzinfo=dt.UTC), id="date"),
        pytest.param(
            "2026-11-19T08:30:00", dt.datetime(2026, 11, 19, 8, 30, tzinfo=dt.UTC), id="naive-utc"
        ),
        pytest.param(
            "2026-11-19T08:30:00+08:00",
            dt.datetime(2026, 11, 19, 0, 30, tzinfo=dt.UTC),
            id="with-zone",
        ),
    ],
)
def test_an_instant_is_a_duration_ago_or_an_iso_time(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "90x", "-2h", "0s", "2026-13-01"])
def test_text_that_names_no_instant_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_instant(text, NOW)
