"""Imports flow one way: bot -> policies <- server; server may import bot only to mount it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("policies"), ids=lambda p: str(p.relative_to(ROOT)))
def test_policy_engine_imports_neither_bot_nor_server(path: Path) -> None:
    assert not _imported_packages(path) & {"bot", "server"}


@pytest.mark.parametrize("path", _files("bot") or [ROOT / "bot" / "__init__.py"], ids=str)
def test_slack_adapter_does_not_import_server(path: Path) -> None:
    assert "server" not in _imported_packages(path)


def test_schema_head_constant_matches_the_newest_migration() -> None:
    from migrations import SCHEMA_HEAD
    from policies.audit.migrate import head_revision

    assert head_revision() == SCHEMA_HEAD
