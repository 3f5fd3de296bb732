"""Every setting is declared once (app/settings.py SETTINGS): the README's table is rendered
from the declarations, every variable the docs name is declared, nothing else in the
application reads the environment, and a value of the wrong type stops the start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.settings import SETTING, SETTINGS, Setting, SettingError, settings_table

ROOT = Path(__file__).resolve().parents[2]
# Variables of the test suite and the benchmarks, not of the application.
NOT_SETTINGS = re.compile(r"CW_(TEST|E2E|CHROMIUM|BENCH)\w*")


def readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| Variable | Default | Meaning |")
    return text[start : text.index("\n\n", start)] + "\n"


def test_the_readme_table_is_the_declarations():
    """Fails when a setting is added, removed or changed in one place only. To update the
    README: .venv/bin/python -c 'from app.settings import settings_table; print(settings_table())'"""
    assert readme_table() == settings_table()


def test_every_variable_the_docs_name_is_declared():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        name
        for path in documents
        for name in re.findall(r"\b(CW_[A-Z0-9_]+|SMTP_[A-Z]+|MAIL_FROM)\b", path.read_text())
        if not NOT_SETTINGS.fullmatch(name)
    }
    assert named - set(SETTING) == set()
    assert {"CW_SCAN_DENY", "CW_SCAN_MAX_ADDRESSES", "CW_OCSP_CACHE_SECONDS"} <= named


def test_nothing_but_the_declarations_reads_the_environment():
    readers = re.compile(r"os\.environ|os\.getenv|getenv\(")
    offences = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        if path != ROOT / "app" / "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if readers.search(line)
    ]
    assert offences == []


def test_each_name_is_declared_once():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("setting", "raw", "message"),
    [
        (Setting("X_PORT", int, 25, "m"), "abc", "X_PORT='abc': expected an integer"),
        (Setting("X_ON", bool, False, "m"), "ture", "X_ON='ture': expected 1/0"),
        (Setting("X_N", int, 2, "m", minimum=1), "0", "X_N='0': must be at least 1"),
        (Setting("X_F", float, 5.0, "m"), "soon", "X_F='soon': expected a number"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(setting, raw, message):
    with pytest.raises(SettingError, match=re.escape(message)):
        setting.read({setting.name: raw})


@pytest.mark.parametrize(
    ("setting", "raw", "value"),
    [
        (Setting("X_ON", bool, False, "m"), "Yes", True),
        (Setting("X_ON", bool, True, "m"), "off", False),
        (Setting("X_ON", bool, True, "m"), "", True),  # empty: the default
        (Setting("X_N", int, 2, "m"), " 7 ", 7),
        (Setting("X_F", float, 5.0, "m"), "0.25", 0.25),
        (Setting("X_S", str, "d", "m"), "value", "value"),
    ],
)
def test_values_are_parsed_by_type(setting, raw, value):
    assert setting.read({setting.name: raw}) == value
    assert setting.read({}) == setting.default
