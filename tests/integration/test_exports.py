"""Console exports: every list with an export streams its scoped rows in constant memory,
capped at CW_EXPORT_MAX_ROWS (the last line says so), with every text cell formula-escaped
(related names such as organization and department too) and an RFC 6266 file name."""

from __future__ import annotations

import csv
import io
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app.admin.base import SecureModelView
from app.extensions import db
from app.models import Certificate, Department, Organization
from app.services import bulk
from tests.integration.rbac_world import BETA_MARKERS, as_, build_world


@pytest.fixture
def world(app):
    return build_world()


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def exporting_views(app):
    return [
        view
        for admin in app.extensions["admin"]
        for view in admin._views
        if getattr(view, "can_export", False)
    ]


def test_every_console_model_view_uses_the_secure_export(app):
    views = [v for a in app.extensions["admin"] for v in a._views if hasattr(v, "can_export")]
    assert len(views) > 10
    for view in views:
        assert isinstance(view, SecureModelView), view.endpoint
        for name in ("export", "_export_lines", "_export_csv", "_export_tablib"):
            assert getattr(type(view), name) is getattr(SecureModelView, name), (view, name)
    assert {v.endpoint for v in exporting_views(app)} >= {"ssl_certs", "audit"}


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("mrao", {"www.ops.alpha.example": "Alpha Inc / Ops", "www.beta.example": ""}),
        ("alpha-rao", {"www.ops.alpha.example": "Alpha Inc / Ops"}),
        ("ops-drao", {"www.ops.alpha.example": "Alpha Inc / Ops"}),
    ],
)
def test_certificate_export_is_complete_and_scoped(client, world, who, expected):
    """Regression: a certificate in a department ended the stream (DetachedInstanceError):
    an RAO's export was cut short and a DRAO's was empty."""
    as_(client, who)
    response = client.get("/admin/ssl_certs/export/csv/")
    rows = rows_of(response)
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Common name", "Organization", "Department"]
    assert {row[0]: row[2] for row in body} == expected
    text = response.get_data(as_text=True)
    if who != "mrao":
        assert not any(marker in text for marker in BETA_MARKERS)
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith(
        'attachment; filename="SSL Certificates_'
    ) and disposition.endswith('.csv"')


def test_related_names_are_formula_escaped(client, world):
    org = db.session.get(Organization, world["alpha"])
    dept = db.session.get(Department, world["ops"])
    org.name, dept.name = '=HYPERLINK("http://evil.example")', "@SUM(1)"
    db.session.commit()
    as_(client, "alpha-rao")
    row = rows_of(client.get("/admin/ssl_certs/export/csv/"))[1]
    assert row[1] == "'" + org.name
    assert row[2] == "'" + f"{org.name} / {dept.name}"
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)


def test_exports_are_capped_and_say_so(app, client, world):
    app.config["CW_EXPORT_MAX_ROWS"] = 1
    as_(client, "mrao")
    for view in exporting_views(app):
        rows = rows_of(client.get(f"/admin/{view.endpoint}/export/csv/"))
        data = [r for r in rows[1:] if not r[0].startswith("Export capped")]
        assert len(data) <= 1, view.endpoint
    rows = rows_of(client.get("/admin/ssl_certs/export/csv/"))
    assert len(rows) == 3
    assert rows[2][0].startswith("Export capped at 1 rows (CW_EXPORT_MAX_ROWS)")
    app.config["CW_EXPORT_MAX_ROWS"] = 2
    rows = rows_of(client.get("/admin/ssl_certs/export/csv/"))
    assert len(rows) == 3 and not rows[-1][0].startswith("Export capped")


def test_export_follows_the_list_filters_and_search(client, world):
    as_(client, "mrao")
    rows = rows_of(client.get("/admin/ssl_certs/export/csv/?search=beta"))
    assert [r[0] for r in rows[1:]] == ["www.beta.example"]
    rows = rows_of(client.get("/admin/ssl_certs/export/csv/?flt0_0=NoSuchStatus"))
    assert len(rows) == 3  # an invalid filter value is ignored (and flashed), not a 500


def clone_certificates(template_id: int, start: int, count: int) -> None:
    row = dict(
        db.session.execute(select(Certificate.__table__).where(Certificate.id == template_id))
        .one()
        ._mapping
    )
    row.pop("id")
    rows = [
        {
            **row,
            "fingerprint": f"{n:064x}",
            "serial_hex": f"{n:040x}",
            "common_name": f"host{n}.ops.alpha.example",
        }
        for n in range(start, start + count)
    ]
    bulk.insert_rows(Certificate.__table__, rows)
    db.session.commit()


def export_peak(client) -> tuple[int, int]:
    """(lines, peak bytes allocated) while streaming the SSL export to nowhere, read chunk by
    chunk on a thread of its own (as a WSGI server does), not buffered by the test client."""

    def stream() -> int:
        response = client.get("/admin/ssl_certs/export/csv/", buffered=False)
        try:
            return sum(chunk.count(b"\n") for chunk in response.response)
        finally:
            response.close()

    db.session.commit()
    tracemalloc.start()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            lines = pool.submit(stream).result()
        return lines, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_does_not_grow_with_the_rows(client, world):
    clone_certificates(world["ops_cert"], 0, 1500)
    as_(client, "alpha-rao")
    small_lines, small_peak = export_peak(client)
    clone_certificates(world["ops_cert"], 1500, 6000)
    large_lines, large_peak = export_peak(client)
    assert (small_lines, large_lines) == (1502, 7502)
    # Five times the rows; holding them all (as Flask-Admin's export did) would take about
    # five times the memory. Streamed, the peak is one chunk of rows.
    assert large_peak < small_peak * 1.3, (small_peak, large_peak)
