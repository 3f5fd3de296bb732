"""The one rule (STYLE.md): pure packages import no Flask, SQLAlchemy or app layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["app/pki", "app/scan", "app/reports"]
BANNED = (
    "flask",
    "flask_admin",
    "flask_login",
    "flask_wtf",
    "flask_sqlalchemy",
    "sqlalchemy",
    "dramatiq",
    "app.models",
    "app.services",
    "app.extensions",
    "app.admin",
    "app.api",
    "app.portal",
    "app.actors",
)
SERVICE_BANNED_NAMES = {"request", "session", "g", "flash", "url_for"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py")) if (ROOT / folder).is_dir() else []


@pytest.mark.parametrize("folder", PURE)
def test_pure_packages_import_nothing_from_the_web_or_database(folder):
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files(folder)
        for line, name in imported_modules(path)
        if name == "app" or any(name == b or name.startswith(b + ".") for b in BANNED)
    ]
    assert offences == []


def test_services_never_touch_the_request():
    offences = []
    for path in python_files("app/services"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                bad = {a.name for a in node.names} & SERVICE_BANNED_NAMES
                if bad:
                    offences.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(bad)} from flask"
                    )
    assert offences == []


def test_the_rule_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sqlalchemy import select\nimport app.models\n")
    names = [n for _, n in imported_modules(bad)]
    assert names == ["sqlalchemy", "app.models"]


def test_no_placeholders_in_the_application():
    """A feature with a TODO or a NotImplementedError is not done."""
    markers = ("TODO", "FIXME", "raise NotImplementedError", "raise NotImplemented")
    offences = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files("app")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if any(marker in line for marker in markers)
    ]
    assert offences == []
