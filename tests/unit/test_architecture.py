"""The one rule (STYLE.md, docs/architecture.md): import-linter's contracts in pyproject.toml
hold for the tree, and break when a forbidden import is added; services never read the
request; no placeholders in the application."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SERVICE_BANNED_NAMES = {"request", "session", "g", "flash", "url_for"}


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on `project` (a folder holding pyproject.toml and app/)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py")) if (ROOT / folder).is_dir() else []


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A copy of the application and its contracts, to break on purpose."""
    base = tmp_path_factory.mktemp("arch")
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    shutil.copytree(ROOT / "app", base / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return base


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("app/pki/leak.py", "import sqlalchemy\n", "Pure packages import neither"),
        ("app/acme/leak.py", "import flask\n", "The ACME protocol package is pure"),
        ("app/acme/leak.py", "from app.services import audit\n", "The ACME protocol package"),
        ("app/recurrence_leak.py", "", None),  # a neutral file: nothing breaks
        ("app/scan/leak.py", "from app.models import Certificate\n", "Front doors -> runtime"),
        ("app/services/leak.py", "from app.admin import display\n", "Front doors -> runtime"),
        ("app/services/leak.py", "import wtforms\n", "Services never import a front door"),
        (
            "app/services/structure/leak.py",
            "from app.services.certificates import inventory\n",
            "No import cycles",
        ),
        ("app/models/leak.py", "from app.services import audit\n", "Front doors -> runtime"),
    ],
)
def test_a_broken_contract_fails_the_check(scratch, module, line, contract):
    path = scratch / module
    path.write_text('"""Deliberately wrong."""\n' + line)
    try:
        result = lint_imports(scratch)
    finally:
        path.unlink()
    if contract is None:
        assert result.returncode == 0, result.stdout
    else:
        assert result.returncode != 0, result.stdout
        assert f"{contract}" in result.stdout
        assert "BROKEN" in result.stdout


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
