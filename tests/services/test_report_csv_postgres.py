"""CSV certificate reports on PostgreSQL take the text path (every cell formatted by the
database, formulas escaped per block: catalog.CsvText, export.CsvWriter.text_rows): it
writes exactly the bytes of the general path (rows converted cell by cell in Python), on
rows built to trip it (one risky cell in an otherwise plain row): formula-like names and SANs, quotes, commas, line breaks, NUL in a
SAN, non-ASCII, empty and NULL cells, times with microseconds, revoked and expired ones,
with and without a byte order mark, for an MRAO and for an RAO."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertOrigin, CertStatus, CertType, Report, ReportChunk, Role
from app.services.reports import catalog, generation
from app.services.reports.catalog import Filters
from app.services.scope import SYSTEM
from tests.factories import make_admin, make_dept, make_org

NAMES = [
    "=1+2",
    "+cmd",
    "-2",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturn",
    'quote " inside',
    "comma, inside",
    "line\nbreak",
    "Zürich ü €",
    "plain.example",
    "",
    "a\x1f=b",
]


def _certificates(org_id: int, dept_id: int, tag: str) -> None:
    now = datetime.now(UTC)
    for i, name in enumerate(NAMES * 3):
        sans: list[str] | None = [name, f"=san{i}.example", "nul\x00byte"] if i == 3 else []
        if i % 5 == 4:
            sans = None
        db.session.add(
            Certificate(
                fingerprint=hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
                der=b"\x30\x00",
                cert_type=CertType.SSL,
                origin=[CertOrigin.ISSUED, CertOrigin.DISCOVERED, CertOrigin.IMPORTED][i % 3],
                status=[CertStatus.ISSUED, CertStatus.REVOKED, CertStatus.EXTERNAL][i % 3],
                organization_id=org_id,
                # One risky cell in an otherwise plain row, row after row (a risky
                # organization on every row would hide a cell the block search missed).
                department_id=dept_id if i % 13 == 12 else None,
                serial_hex=f"-{i:x}" if i % 13 == 10 else f"{i:x}",
                common_name=name,
                issuer_cn=name if i % 7 else "",
                sans=sans,
                not_before=now - timedelta(days=400, microseconds=123_456),
                not_after=now + timedelta(days=i - 10, microseconds=987_654),
                revoked_at=now - timedelta(days=1, microseconds=5) if i % 3 == 1 else None,
                revocation_reason="keyCompromise" if i % 3 == 1 else "",
                key_type=None if i % 6 == 5 else "EC-P256",
                signature_algorithm="@sig" if i % 13 == 11 else "ecdsa-with-SHA256",
                auto_renew=bool(i % 2),
            )
        )
    db.session.commit()


def _built(report_id: int) -> tuple[list[bytes], bytes]:
    generation.build_here(report_id=report_id)
    chunks = list(
        db.session.execute(
            select(ReportChunk.data)
            .where(ReportChunk.report_id == report_id)
            .order_by(ReportChunk.seq)
        ).scalars()
    )
    download = generation.content(db.session.get(Report, report_id))
    return chunks, b"".join(download.chunks)


@pytest.mark.parametrize("bom", [False, True])
def test_the_text_path_writes_the_general_paths_bytes(
    pg: Flask, monkeypatch: pytest.MonkeyPatch, bom: bool
) -> None:
    tag = secrets.token_hex(3)
    org = make_org(f"Plain {tag}")
    dept = make_dept(org, "-Dept")
    _certificates(org.id, dept.id, tag)
    rao = make_admin(f"csv-rao-{tag}", Role.RAO, org=org)
    rtype = catalog.report_type("ssl_certificates")
    assert rtype.csv_text is not None
    for actor in (SYSTEM, rao):
        outputs = []
        for text_path in (True, False):
            if not text_path:
                monkeypatch.setitem(
                    catalog.TYPES, rtype.key, dataclasses.replace(rtype, csv_text=None)
                )
            report = generation.start_report(
                actor=actor,
                report_type=rtype.key,
                fmt="csv",
                bom=bom,
                chunk_rows=7,
                filters=Filters(organization_id=org.id, as_of=datetime.now(UTC)),
            )
            db.session.commit()
            outputs.append(_built(report.id))
            monkeypatch.undo()
        (text_chunks, text_file), (general_chunks, general_file) = outputs
        assert text_chunks == general_chunks and len(text_chunks) > 3
        assert text_file == general_file
        assert text_file.startswith(b"\xef\xbb\xbf") == bom
        rows = list(csv.reader(io.StringIO(text_file.decode("utf-8-sig"), newline="")))
        assert len(rows) == 1 + len(NAMES) * 3
        names = {row[1] for row in rows[1:]}
        assert {"'=1+2", "'+cmd", "'-2", "'@SUM(A1)", "'\tTabbed", "'\rReturn"} <= names
        assert {'quote " inside', "comma, inside", "line\nbreak", "Zürich ü €"} <= names
        assert {row[3] for row in rows[1:]} == {"", "'-Dept"}
        assert {row[12] for row in rows[1:]} == {"'@sig", "ecdsa-with-SHA256"}
        assert [row[13] for row in rows[1:] if row[13]] == ["'@SUM(A1) =san3.example nulbyte"]
        assert "Expired" in {row[4] for row in rows[1:]}
        assert all(row[9].endswith("Z") and len(row[9]) == 20 for row in rows[1:])
        assert {row[16] for row in rows[1:]} == {"true", "false"}


def test_a_chunk_built_twice_is_stored_and_counted_once(pg: Flask) -> None:
    """On PostgreSQL a chunk's bytes are written before the report row is locked (under a
    lock of that one chunk, in a savepoint): a copy built again replaces the first and is
    counted once, a copy arriving after the report is done or cancelled changes nothing."""
    tag = secrets.token_hex(3)
    org = make_org(f"Twice {tag}")
    dept = make_dept(org, "Ops")
    _certificates(org.id, dept.id, tag)
    filters = Filters(organization_id=org.id, as_of=datetime.now(UTC))
    report = generation.start_report(
        actor=SYSTEM, report_type="ssl_certificates", fmt="csv", chunk_rows=10, filters=filters
    )
    db.session.commit()
    total = report.chunks_total
    assert total >= 3
    for seq in (0, 0, 1):
        generation.build_chunk(report_id=report.id, seq=seq)
        db.session.commit()
    first = db.session.get(Report, report.id)
    assert first.chunks_done == [0, 1] and first.status == "running"
    stored = db.session.execute(
        select(ReportChunk.seq).where(ReportChunk.report_id == report.id)
    ).scalars()
    assert sorted(stored) == [0, 1]
    built = generation.build_here(report_id=report.id)
    assert built.status == "done"
    _, whole = _built(report.id)
    rows_before = built.row_count
    # A late copy of chunk 0 (the report is done): nothing changes.
    late = generation.build_chunk(report_id=report.id, seq=0)
    db.session.commit()
    assert "no longer" in late["message"]
    again = db.session.get(Report, report.id)
    assert again.row_count == rows_before and again.chunks_done == list(range(total))
    assert _built(report.id)[1] == whole
    # Cancelled while a chunk was being rendered: its copy is rolled back, not stored.
    other = generation.start_report(
        actor=SYSTEM, report_type="ssl_certificates", fmt="csv", chunk_rows=10, filters=filters
    )
    db.session.commit()
    original = generation.render_chunk

    def cancelled_meanwhile(*args, **kwargs):
        rendered = original(*args, **kwargs)
        with db.engine.connect() as elsewhere:
            elsewhere.execute(
                Report.__table__.update().where(Report.id == other.id).values(status="cancelled")
            )
            elsewhere.commit()
        return rendered

    generation.render_chunk = cancelled_meanwhile
    try:
        result = generation.build_chunk(report_id=other.id, seq=0)
    finally:
        generation.render_chunk = original
    db.session.commit()
    assert "no longer" in result["message"]
    assert not db.session.execute(
        select(ReportChunk.id).where(ReportChunk.report_id == other.id)
    ).first()


def test_the_text_path_applies_every_filter_alike(
    pg: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status (Expired is derived), issuer, department and date filters: the text path
    lists the same rows as the general path."""
    tag = secrets.token_hex(3)
    org = make_org(f"Filters {tag}")
    dept = make_dept(org, "Ops")
    _certificates(org.id, dept.id, tag)
    rtype = catalog.report_type("ssl_certificates")
    today = datetime.now(UTC).date()
    now = datetime.now(UTC)
    variants = [
        Filters(organization_id=org.id, status="Expired", as_of=now),
        Filters(organization_id=org.id, status="Revoked", as_of=now),
        Filters(organization_id=org.id, issuer="plain", as_of=now),
        Filters(organization_id=org.id, department_id=dept.id, as_of=now),
        Filters(
            organization_id=org.id,
            date_from=today,
            date_to=today + timedelta(days=10),
            date_field="expires",
            as_of=now,
        ),
    ]
    for filters in variants:
        outputs = []
        for text_path in (True, False):
            if not text_path:
                monkeypatch.setitem(
                    catalog.TYPES, rtype.key, dataclasses.replace(rtype, csv_text=None)
                )
            report = generation.start_report(
                actor=SYSTEM, report_type=rtype.key, fmt="csv", chunk_rows=9, filters=filters
            )
            db.session.commit()
            outputs.append(_built(report.id)[1])
            monkeypatch.undo()
        assert outputs[0] == outputs[1], filters
        assert outputs[0].count(b"\r\n") > 1, filters  # a header and some rows
