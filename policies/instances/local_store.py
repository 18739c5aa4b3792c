"""The provisioned instances of a data directory, persisted in ``instances.json``.

Provisioned instances keep their ids across restarts, so an id a user copied from
``instances list`` still names the same instance (and state directory) tomorrow.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from policies.errors import ConfigError

FILE_NAME = "instances.json"
_VERSION = 1
# Ids become directory names: anything else in the file is refused, not joined to a path.
INSTANCE_ID_RE = re.compile(r"^c-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{12}$")

Provisioned = dict[str, list[tuple[str, int]]]


def load_provisioned(data_dir: Path) -> Provisioned:
    """function name -> [(instance id, created ms)] as saved; empty when nothing was saved.

    Raises: ConfigError when the file exists but is unreadable or malformed.
    """
    path = data_dir / FILE_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return _parse(raw)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{path} is unreadable or malformed; remove it to create new provisioned instances"
        ) from exc


def save_provisioned(data_dir: Path, provisioned: Provisioned) -> None:
    """Write the file atomically (a crash leaves the old or the new file, never half)."""
    path = data_dir / FILE_NAME
    doc = {
        "version": _VERSION,
        "functions": {
            name: [{"instance_id": i, "created_ms": ms} for i, ms in instances]
            for name, instances in provisioned.items()
        },
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _parse(raw: Any) -> Provisioned:
    if not isinstance(raw, dict) or raw.get("version") != _VERSION:
        raise ValueError("unknown instances.json version")
    functions = raw["functions"]
    if not isinstance(functions, dict):
        raise TypeError("functions must be an object")
    out: Provisioned = {}
    for name, entries in functions.items():
        if not isinstance(entries, list):
            raise TypeError("instances must be a list")
        parsed = []
        for entry in entries:
            instance_id, created_ms = entry["instance_id"], entry["created_ms"]
            if not isinstance(instance_id, str) or not INSTANCE_ID_RE.match(instance_id):
                raise ValueError("bad instance id")
            if not isinstance(created_ms, int):
                raise TypeError("created_ms must be an integer")
            parsed.append((instance_id, created_ms))
        out[str(name)] = parsed
    return out
