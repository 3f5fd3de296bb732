"""app.scan stays pure: no web, ORM or service imports, no placeholders, short files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "app" / "scan"
BANNED = (
    "flask",
    "flask_admin",
    "flask_login",
    "flask_sqlalchemy",
    "sqlalchemy",
    "alembic",
    "dramatiq",
    "app.models",
    "app.services",
    "app.extensions",
    "app.admin",
    "app.api",
)
SOURCES = sorted(PACKAGE.glob("*.py"))


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.append("." * node.level + (node.module or ""))
    return names


def test_the_package_has_sources() -> None:
    assert len(SOURCES) >= 10


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_banned_imports(path: Path) -> None:
    modules = imported_modules(ast.parse(path.read_text(), filename=str(path)))
    for module in modules:
        assert not module.startswith("."), f"{path.name}: relative import {module}"
        banned = [b for b in BANNED if module == b or module.startswith(b + ".")]
        assert not banned, f"{path.name} imports {module}"
        if module == "app" or module.startswith("app."):
            assert module.startswith("app.scan"), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_placeholders_and_short(path: Path) -> None:
    text = path.read_text()
    for marker in ("TODO", "FIXME", "NotImplementedError"):
        assert marker not in text, f"{path.name} contains {marker}"
    assert len(text.splitlines()) <= 400, f"{path.name} is longer than 400 lines"
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no module docstring"
