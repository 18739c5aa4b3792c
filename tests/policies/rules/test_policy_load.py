"""Loading policy files: a bad file is rejected whole, naming its line."""

from __future__ import annotations

import hashlib
import pathlib
import textwrap

import pytest

from policies.errors import PolicyLoadError
from policies.rules.model import load_policy, load_policy_text
from policies.types import Effect, RateSpec
from policies.units import parse_duration, parse_rate, parse_size

GOOD = """\
version: 1
roles:
  oncall: { local_users: [alice] }
  leads: { local_users: [carol] }
targets:
  demo: { functions: ["demo-*"] }
defaults: { timeout: 90s, idle_timeout: 5m, max_output: 64KiB, rate: 10/min }
rules:
  - id: diag
    effect: allow
    who: [oncall]
    where: [demo]
    commands:
      - [top, -b, -n, 1]
      - [ls, no]
  - id: capture
    effect: approve
    who: [oncall]
    where: ["*"]
    commands: [[tcpdump, -c, "{n:int(1..10)}"]]
    approval: { approvers: [leads], threshold: 2, ttl: 15m }
"""


def test_a_good_policy_compiles() -> None:
    policy = load_policy_text(GOOD, "good.yaml")
    assert [rule.id for rule in policy.rules] == ["diag", "capture"]
    assert policy.digest == hashlib.sha256(GOOD.encode()).hexdigest()
    assert policy.defaults.limits.timeout == 90.0
    assert policy.defaults.limits.idle_timeout == 300.0
    assert policy.defaults.limits.max_output_bytes == 64 * 1024
    assert policy.defaults.rate == RateSpec(count=10, per_seconds=60.0)
    assert policy.rules[1].effect is Effect.APPROVE
    assert policy.rules[1].line == 16


def test_scalars_stay_as_written_in_commands() -> None:
    # YAML 1.1 would read `no` as false and `1` as an integer; patterns keep the text.
    policy = load_policy_text(GOOD, "good.yaml")
    assert [p.source for p in policy.rules[0].commands] == [
        ("top", "-b", "-n", "1"),
        ("ls", "no"),
    ]


def test_load_policy_reads_a_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    assert load_policy(path).source == str(path)


def _marked(text: str) -> tuple[str, int]:
    """The text without its ``#<`` marker, and the 1-based line the marker was on."""
    text = textwrap.dedent(text)
    lines = text.splitlines()
    line = next(i for i, row in enumerate(lines, 1) if row.rstrip().endswith("#<"))
    return text.replace("#<", ""), line


RULE = """\
version: 1
roles:
  oncall: { local_users: [alice] }
targets:
  demo: { functions: ["demo-*"] }
rules:
  - id: diag
    effect: allow
    who: [oncall]
    where: [demo]
"""

LS = "    commands: [[ls]]\n"


def rule(tail: str = LS, swap: tuple[str, str] = ("", "")) -> str:
    """RULE with ``tail`` appended and one replacement made."""
    return RULE.replace(*swap) + tail if swap[0] else RULE + tail


APPROVE = ("effect: allow", "effect: approve")

BAD_FILES = [
    pytest.param("version: 1\nroles:\n  a: b: c #<\n", id="yaml-syntax"),
    pytest.param("version: 1\nversion: 1 #<\n", id="duplicate-key"),
    pytest.param("version: 2 #<\n", id="wrong-version"),
    pytest.param("version: 1\nsurprise: true #<\n", id="unknown-top-level-key"),
    pytest.param("version: 1\nroles:\n  ops:\n    locl_users: [a] #<\n", id="unknown-role-key"),
    pytest.param("version: 1\nroles:\n  ops:\n    local_users: alice #<\n", id="not-a-list"),
    pytest.param("version: 1\ndefaults:\n  timeout: soon #<\n", id="bad-duration"),
    pytest.param("version: 1\ndefaults:\n  max_output: 1 MB? #<\n", id="bad-size"),
    pytest.param("version: 1\ndefaults:\n  rate: often #<\n", id="bad-rate"),
    pytest.param("version: 1\ntargets:\n  t: #<\n    provider: x\n", id="target-no-functions"),
    pytest.param(rule(LS + "    effect: allow #<\n"), id="duplicate-rule-key"),
    pytest.param(rule(swap=("effect: allow", "effect: permit #<")), id="bad-effect"),
    pytest.param(rule(swap=("who: [oncall]", "who: [oncal] #<")), id="unknown-role"),
    pytest.param(rule(swap=("where: [demo]", "where: [prod] #<")), id="unknown-target"),
    pytest.param(rule('    commands:\n      - [ls, "{d:path(/tmp/**"] #<\n'), id="bad-placeholder"),
    pytest.param(rule('    commands:\n      - [ls]\n      - [grep, "/(x/"] #<\n'), id="bad-regex"),
    pytest.param(rule('    commands:\n      - [ls, "{n:colour}"] #<\n'), id="unknown-type"),
    pytest.param(rule('    commands:\n      - ["..."] #<\n'), id="grant-without-program"),
    pytest.param(
        rule(LS + "  - id: diag #<\n    effect: deny\n    who: ['*']\n    where: ['*']\n" + LS),
        id="duplicate-rule-id",
    ),
    pytest.param(rule(swap=("effect: allow", "effect: approve #<")), id="approve-no-approval"),
    pytest.param(rule(LS + "    approval: { approvers: [oncall] } #<\n"), id="approval-on-allow"),
    pytest.param(
        rule(LS + "    approval:\n      approvers: [nobody] #<\n", APPROVE),
        id="unknown-approver-role",
    ),
    pytest.param(
        rule(LS + "    approval:\n      approvers: [oncall]\n      threshold: 0 #<\n", APPROVE),
        id="zero-threshold",
    ),
    pytest.param(
        rule(LS + "    pipeline: { allow: true } #<\n", ("effect: allow", "effect: deny")),
        id="pipeline-on-deny",
    ),
    pytest.param(
        rule(LS + "    pipeline:\n      extra_stages: [[wc]] #<\n"),
        id="extra-stages-without-allow",
    ),
    pytest.param(
        rule(
            LS + '    pipeline:\n      allow: true\n      extra_stages: [[wc, "{x}", "{x}"]] #<\n'
        ),
        id="bad-extra-stage",
    ),
    pytest.param(rule(LS + "    collect: [relative/*.cap] #<\n"), id="relative-collect"),
    pytest.param(rule("    commands: [] #<\n"), id="no-commands"),
    pytest.param(rule(LS + "    limits: { timeout: -1s } #<\n"), id="negative-limit"),
    pytest.param(rule(swap=("id: diag", "id: 'has space' #<")), id="bad-rule-id"),
    pytest.param("version: 1\nrules: !!python/object:os.system {} #<\n", id="python-tag"),
]


@pytest.mark.parametrize("marked", BAD_FILES)
def test_a_bad_policy_is_rejected_with_its_line(marked: str) -> None:
    text, line = _marked(marked)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_text(text, "bad.yaml")
    assert caught.value.code == "policy_invalid"
    assert caught.value.file == "bad.yaml"
    assert caught.value.line == line, caught.value.reason


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("version: 1\n---\nversion: 1\n", id="two-documents"),
        pytest.param("- a list\n", id="not-a-mapping"),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, n in zip("abcdef", "bcdefg", strict=True)
            ),
            id="alias-bomb",
        ),
    ],
)
def test_unusable_documents_are_rejected(text: str) -> None:
    with pytest.raises(PolicyLoadError):
        load_policy_text(text, "bad.yaml")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("missing.yaml", None, id="missing"),
        pytest.param("latin1.yaml", b"version: 1\ndescription: caf\xe9\n", id="not-utf8"),
    ],
)
def test_unreadable_files_are_rejected(
    tmp_path: pathlib.Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    assert caught.value.file == str(path)
    assert caught.value.line is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("500ms", 0.5), ("60s", 60.0), ("15m", 900.0), ("15min", 900.0), ("2h", 7200.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("64KiB", 65536), ("1MiB", 1 << 20), ("10MB", 10_000_000), ("1GiB", 1 << 30)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/min", RateSpec(30, 60.0)),
        ("100/h", RateSpec(100, 3600.0)),
        ("5/10s", RateSpec(5, 10.0)),
    ],
)
def test_rates(text: str, rate: RateSpec) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0s", "-1s", "1w", "", "0/min", "5/fortnight", "1.5MiB"])
def test_bad_units_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        (parse_rate if "/" in text else parse_size if "B" in text else parse_duration)(text)
