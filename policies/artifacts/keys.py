"""Artifact keys: ``[prefix]YYYY/MM/DD/<provider>/<function>/<instance>/<audit id>/<kind>/<name>``.

Dates first, so retention and bucket lifecycle rules can work by prefix; then the
target, so everything fetched from one instance sits together; then the audit id, so a
key leads back to the exec that made it. ``kind`` is ``output`` for the full output of
a command (``stdout.txt``/``stderr.txt``) and ``files`` for collected files.
"""

from __future__ import annotations

import datetime as dt
import re

OUTPUT = "output"
FILES = "files"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def _segment(text: str) -> str:
    safe = _UNSAFE.sub("_", text).lstrip(".")
    return safe[:128] or "_"


def artifact_key(
    *, when: dt.datetime, target: str, audit_id: str, kind: str, name: str, prefix: str = ""
) -> str:
    """The key of one artifact; every segment is reduced to ``[A-Za-z0-9._@-]``.

    ``target`` is the resolved target text (``provider:function[@qualifier]/instance``).
    """
    provider, _, rest = target.rpartition(":")
    function, _, instance = rest.partition("/")
    segments = [
        when.astimezone(dt.UTC).strftime("%Y/%m/%d"),
        _segment(provider or "default"),
        _segment(function),
        _segment(instance),
        _segment(audit_id),
        _segment(kind),
        _segment(name),
    ]
    head = prefix.strip("/")
    return (head + "/" if head else "") + "/".join(segments)


def link_label(key: str) -> str:
    """How a surface names a link to ``key``: ``stdout``/``stderr`` or ``artifact``."""
    parts = key.rsplit("/", 2)
    if len(parts) == 3 and parts[1] == OUTPUT and parts[2] in ("stdout.txt", "stderr.txt"):
        return parts[2].removesuffix(".txt")
    return "artifact"
