"""Artifact keys: date / target / audit id, safe segments, link labels."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.artifacts.keys import FILES, OUTPUT, artifact_key, link_label

WHEN = dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))


def test_keys_are_namespaced_by_utc_date_target_and_audit_id() -> None:
    key = artifact_key(
        when=WHEN,
        target="fc-prod:orders@LATEST/c-1a2b",
        audit_id="ex_9",
        kind=FILES,
        name="trace.pcap",
        prefix="/execgate/",
    )
    assert key == "execgate/2026/11/28/fc-prod/orders@LATEST/c-1a2b/ex_9/files/trace.pcap"


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        pytest.param("../../etc", "_.._etc", id="slashes-and-dots"),
        pytest.param(".hidden", "hidden", id="leading-dot"),
        pytest.param("a b;c", "a_b_c", id="spaces-and-shell"),
        pytest.param("", "_", id="empty"),
    ],
)
def test_every_segment_is_reduced_to_safe_characters(name: str, segment: str) -> None:
    key = artifact_key(
        when=WHEN, target="local:demo-api/c-1", audit_id="ex_1", kind=FILES, name=name
    )
    assert key.rsplit("/", 1)[1] == segment


@pytest.mark.parametrize(
    ("kind", "name", "label"),
    [
        pytest.param(OUTPUT, "stdout.txt", "stdout", id="stdout"),
        pytest.param(OUTPUT, "stderr.txt", "stderr", id="stderr"),
        pytest.param(FILES, "stdout.txt", "artifact", id="collected-file-named-stdout"),
    ],
)
def test_link_labels_name_streams_and_collected_files(kind: str, name: str, label: str) -> None:
    key = artifact_key(
        when=WHEN, target="local:demo-api/c-1", audit_id="ex_1", kind=kind, name=name
    )
    assert link_label(key) == label
