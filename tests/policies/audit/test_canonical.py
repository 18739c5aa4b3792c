"""Canonical JSON of chain events: one spelling for every value, as hashed since the
first event (the encoder's fast path must not change a byte)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from policies.audit.chain import canonical, json_value
from policies.audit.records import intent_values, outcome_values
from policies.ports import ArtifactInfo, ExecOutcome, ExecStatus
from policies.types import Effect
from tests.policies.audit.support import intent

WHEN = dt.datetime(2026, 11, 27, 12, 0, 0, 5, tzinfo=dt.UTC)
ELSEWHERE = dt.datetime(2026, 11, 27, 13, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))

VALUES: list[Any] = [
    {"b": 1, "a": [1, 2.5, None, True, False], "c": {"z": "é", "y": "\ud800 lone"}},
    {"when": WHEN, "elsewhere": ELSEWHERE, "status": ExecStatus.COMPLETED, "effect": Effect.DENY},
    {"argv": ("grep", "-i", "\u2028\x00\x1b[31m"), "env": {"B": "2", "A": "1"}, "n": -0.0},
    {"id": "ex_1", "created_at": WHEN, **intent_values(intent(argv=("ls", "/tmp")))},
    outcome_values(
        ExecOutcome(
            ExecStatus.TIMEOUT,
            exit_code=None,
            started_at=WHEN,
            ended_at=ELSEWHERE,
            artifacts=(ArtifactInfo("k/x.txt", 3, "ab" * 32, "text/plain"),),
            approvers=("local:bob",),
        )
    ),
    {"seq": 7, "kind": "exec.intent", "subject": "ex_1", "payload": '{"a":"\\u00e9"}'},
    [],
    {},
    # Keys that are not str: spelled by str() and sorted as text, as always.
    {10: "a", 2: "b", True: "c", None: "d", 1.5: "e"},
    {"outer": [{Effect.DENY: 1, ExecStatus.COMPLETED: 2}], "n": {3: {"x": 1}}},
]


@pytest.mark.parametrize("value", VALUES, ids=[f"value-{i}" for i in range(len(VALUES))])
def test_canonical_json_is_the_spelling_the_chain_has_always_used(value: Any) -> None:
    expected = json.dumps(json_value(value), sort_keys=True, separators=(",", ":"))
    assert canonical(value) == expected


def test_values_without_a_json_form_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical({"when": dt.date(2026, 11, 27)})
