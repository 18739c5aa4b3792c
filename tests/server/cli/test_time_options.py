"""The CLI's time options take what `policies.units` reads: durations ago or ISO times."""

from __future__ import annotations

import datetime as dt

import pytest

from server.cli.exits import EXIT_USAGE
from server.cli.main import build_parser


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        pytest.param("90min", dt.timedelta(minutes=90), id="90min"),
        pytest.param("2h", dt.timedelta(hours=2), id="2h"),
        pytest.param("1d", dt.timedelta(days=1), id="1d"),
    ],
)
@pytest.mark.parametrize("command", ["list", "export"])
def test_since_and_until_take_a_duration_ago(command: str, text: str, ago: dt.timedelta) -> None:
    before = dt.datetime.now(dt.UTC)
    args = build_parser().parse_args(["audit", command, "--since", text, "--until", text])
    after = dt.datetime.now(dt.UTC)
    assert before - ago <= args.since <= after - ago
    assert args.until == args.since or before - ago <= args.until <= after - ago


def test_since_takes_an_iso_time() -> None:
    args = build_parser().parse_args(["audit", "list", "--since", "2026-11-19T08:30:00+08:00"])
    assert args.since == dt.datetime(2026, 11, 19, 0, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["90x", "yesterday", "-2h"])
def test_a_bad_time_is_a_usage_error_that_names_the_option(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["audit", "list", f"--since={text}"])
    assert info.value.code == EXIT_USAGE
    assert "--since" in capsys.readouterr().err
