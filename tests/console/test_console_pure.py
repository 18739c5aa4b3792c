"""The console's pure parts: query parsing, output text, charts, exports, OIDC claims."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.audit.browse import BucketCount
from policies.ports import ExecIntent, ExecRecord
from policies.types import AuditId
from server.console.charts import bar_chart, bucket_starts
from server.console.export import csv_lines
from server.console.filters import BadFilter, parse_query
from server.console.oidc import principal_from_claims
from server.console.signin import SignInRefused
from server.console.text import page_of, plain
from server.settings import OidcSettings

NOW = dt.datetime(2026, 12, 1, 12, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        pytest.param({"since": "yesterday-ish"}, "since", id="bad-since"),
        pytest.param({"after": "!!"}, "after", id="bad-cursor"),
        pytest.param({"q": "x" * 600}, "q", id="too-long"),
    ],
)
def test_bad_filter_values_are_refused_with_the_parameter_named(
    params: dict[str, str], param: str
) -> None:
    with pytest.raises(BadFilter) as refused:
        parse_query(params, NOW)
    assert refused.value.fields["param"] == param


def test_filters_parse_durations_and_keep_the_values_for_the_form() -> None:
    query = parse_query({"since": "2h", "effect": "deny", "q": " tcpdump ", "x": ""}, NOW)
    assert query.filter.since == NOW - dt.timedelta(hours=2)
    assert (query.filter.effect, query.filter.text) == ("deny", "tcpdump")
    assert query.link(after="abc") == "after=abc&effect=deny&q=tcpdump&since=2h"


def test_output_loses_terminal_escapes_and_control_characters() -> None:
    raw = "\x1b[31mred\x1b[0m \x1b]0;title\x07ok\tdone\r\n\x07bell\x00"
    assert plain(raw) == "red ok\tdone\nbell"


def test_long_output_is_paged_by_lines() -> None:
    text = "\n".join(str(i) for i in range(1000))
    second = page_of(text, 2, per_page=400)
    assert (second.page, second.pages, second.text.split("\n")[0]) == (2, 3, "400")
    assert page_of(text, 99, per_page=400).page == 3


def test_the_chart_is_svg_without_inline_style_or_script_and_escapes_its_labels() -> None:
    starts = bucket_starts(NOW - dt.timedelta(hours=3), NOW, "hour")
    svg = str(bar_chart([BucketCount(starts[1], "deny", 4)], starts, "hour"))
    assert svg.startswith("<svg") and 'class="bar deny"' in svg
    assert "style=" not in svg and "<script" not in svg
    assert len(starts) == 4


def test_csv_exports_cannot_smuggle_spreadsheet_formulas() -> None:
    intent = ExecIntent(
        principal="local:alice",
        surface="cli",
        target="local:demo-api/c-1",
        provider="local",
        function="demo-api",
        instance="c-1",
        argv=("echo", "x"),
        command_text='=HYPERLINK("http://evil")',
        reason="+1",
        effect="allow",
        rule_id="diagnostics",
        decision_reason="",
    )
    rows = "".join(csv_lines([ExecRecord(AuditId("ex_1"), NOW, intent, None)]))
    assert "'=HYPERLINK" in rows and ",'+1," in rows


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param(
            {"https://slack.com/user_id": "U024BE7LH", "sub": "x"},
            "slack:U024BE7LH",
            id="slack-claim",
        ),
        pytest.param({"sub": "U024BE7LH"}, "slack:U024BE7LH", id="falls-back-to-sub"),
    ],
)
def test_an_id_token_names_the_slack_principal_the_policy_uses(
    claims: dict[str, object], expected: str
) -> None:
    assert principal_from_claims(OidcSettings(), claims) == expected


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({}, id="no-claim"),
        pytest.param({"sub": "local:root"}, id="principal-injection"),
        pytest.param({"sub": 7}, id="not-text"),
    ],
)
def test_an_id_token_that_names_no_plain_user_signs_nobody_in(claims: dict[str, object]) -> None:
    with pytest.raises(SignInRefused):
        principal_from_claims(OidcSettings(), claims)
