"""app.pki stays pure: no web, database or service imports, and the house rules hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKI = Path(__file__).resolve().parents[3] / "app" / "pki"
BANNED = ("flask", "sqlalchemy", "app.models", "app.services", "app.extensions")
MODULES = sorted(PKI.glob("*.py"))


def _imports(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from . import x is inside app.pki
                module = "app.pki" + ("." + module if module else "")
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_modules_found() -> None:
    assert {p.stem for p in MODULES} >= {
        "__init__", "errors", "keys", "names", "csr", "profiles", "issuer", "issue",
        "lint", "crl", "ocsp", "formats", "keystore", "info",
    }  # fmt: skip


def _banned(source: str) -> list[str]:
    return [
        name
        for name in _imports(source)
        if name.startswith("flask_")  # Flask-SQLAlchemy, Flask-Login, ...
        or any(name == banned or name.startswith(banned + ".") for banned in BANNED)
    ]


def test_checker_catches_banned_imports() -> None:
    source = (
        "import flask\nfrom sqlalchemy.orm import Session\nimport flask_login\n"
        "from app.models.pki import CertificateAuthority\nfrom app import services\n"
        "from app.services import issuance\nimport app.extensions\nimport flaskish\n"
    )
    assert set(_banned(source)) == {
        "flask",
        "sqlalchemy.orm",
        "sqlalchemy.orm.Session",
        "flask_login",
        "app.models.pki",
        "app.models.pki.CertificateAuthority",
        "app.services",
        "app.services.issuance",
        "app.extensions",
    }
    assert _banned("from app.pki import keys\nfrom . import names\nimport cryptography\n") == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_banned_imports(path: Path) -> None:
    assert _banned(path.read_text()) == [], f"{path.name} imports from outside the pure core"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_house_rules(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 400, f"{path.name} is over 400 lines: split it"
    for marker in ("TODO", "FIXME"):
        assert marker not in text, f"{path.name} contains {marker}"
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            assert not (isinstance(raised, ast.Name) and raised.id == "NotImplementedError"), (
                f"{path.name} raises NotImplementedError (line {node.lineno})"
            )
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
