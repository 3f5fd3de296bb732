"""The dashboard's summary tables on PostgreSQL, where statement-level triggers over
transition tables keep them: after ORM inserts, a bulk insert, UPDATE and DELETE
statements and the expiry sweep the sums equal the certificates' counts; a fold while
another transaction's trigger rows are uncommitted loses none of them; fold and rebuild
run twice change no number."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Flask
from sqlalchemy import delete, insert, update

from app.extensions import db
from app.models import Certificate, CertOrigin, CertStatus, CertType, Role
from app.models.types import utcnow
from app.services import bulk
from app.services.certificates import inventory
from app.services.reports import counts, dashboard
from tests.factories import make_admin, make_org
from tests.integration.test_reports import add_certificates


def same(*admins) -> None:
    db.session.commit()
    assert counts.differences() == []
    now = utcnow()
    for admin in admins:
        summed = dashboard.certificate_overview(actor=admin, now=now)
        direct = dashboard.direct_overview(actor=admin, now=now)
        summed.awaiting_approval = direct.awaiting_approval = 0
        assert summed == direct, admin.login
        # "Requests vs issued" from the month summary, and counted in the certificates.
        assert dashboard.requests_vs_issued(actor=admin) == dashboard.direct_requests_vs_issued(
            actor=admin
        ), admin.login
    db.session.commit()


def row(tag: str, i: int, org_id: int | None, days: int) -> dict:
    now = utcnow()
    return {
        "fingerprint": hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
        "der": b"\x30\x00",
        "cert_type": (CertType.SSL if i % 2 else CertType.DEVICE).value,
        "origin": CertOrigin.DISCOVERED.value,
        "status": (CertStatus.ISSUED if i % 3 == 0 else CertStatus.EXTERNAL).value,
        "organization_id": org_id,
        "serial_hex": f"{i:x}",
        "common_name": f"{tag}-{i}.example",
        "issuer_cn": f"CA {i % 4}",
        "sans": [],
        "not_before": now - timedelta(days=400),
        "not_after": now + timedelta(days=days + i % 300, hours=i % 24),
        "key_type": "RSA-2048",
        "signature_algorithm": "sha256WithRSAEncryption",
        "created_at": now,
    }


def test_triggers_keep_the_summary_equal_to_the_certificates(pg: Flask) -> None:
    tag = secrets.token_hex(3)
    mine, theirs = make_org(f"Mine {tag}"), make_org(f"Theirs {tag}")
    mrao = make_admin(f"mrao-{tag}")
    rao = make_admin(f"rao-{tag}", Role.RAO, org=mine)
    counts.rebuild()  # whatever earlier tests left, from a known state
    same(mrao, rao)

    made = add_certificates(mine, 5, days=2, prefix=f"orm-{tag}-")
    add_certificates(theirs, 3, days=20, prefix=f"theirs-{tag}-")
    same(mrao, rao)
    bulk.insert_rows(
        Certificate.__table__,
        [row(tag, i, mine.id if i % 4 else theirs.id, days=-30) for i in range(600)],
    )
    same(mrao, rao)
    # Issued by Certwright over fourteen months (the month summary), then moved by one
    # UPDATE of many rows to another month.
    issued = []
    for i in range(200):
        made_row = row(f"issued-{tag}", i, mine.id if i % 4 else theirs.id, days=10)
        made_row.update(
            origin=CertOrigin.ISSUED.value,
            created_at=utcnow() - timedelta(days=i * 2 % 430, hours=i % 24),
        )
        issued.append(made_row)
    bulk.insert_rows(Certificate.__table__, issued)
    same(mrao, rao)
    assert sum(m.issued for m in dashboard.requests_vs_issued(actor=rao)) > 100
    db.session.execute(
        update(Certificate)
        .where(Certificate.common_name.like(f"issued-{tag}-1%"))
        .values(created_at=utcnow() - timedelta(days=45))
    )
    same(mrao, rao)
    # One UPDATE of many rows (a statement-level trigger sees them all at once), one that
    # changes no counted column (adds no row), the sweep, a reassignment, a DELETE.
    db.session.execute(
        update(Certificate)
        .where(Certificate.common_name.like(f"{tag}-1%"))
        .values(status=CertStatus.REVOKED)
    )
    db.session.execute(
        update(Certificate)
        .where(Certificate.common_name.like(f"{tag}-%"))
        .values(last_seen_at=utcnow())
    )
    same(mrao, rao)
    inventory.expire_sweep()
    same(mrao, rao)
    made[0].organization_id = theirs.id
    db.session.execute(delete(Certificate).where(Certificate.common_name.like(f"{tag}-2%")))
    same(mrao, rao)
    assert dashboard.certificate_overview(actor=rao).expiring[0] >= 4

    # A fold while another transaction's certificate (and its trigger rows) is uncommitted.
    with db.engine.connect() as other:
        other.execute(insert(Certificate.__table__).values(**row(f"late-{tag}", 1, mine.id, 5)))
        counts.fold()
        db.session.commit()
        other.commit()
    same(mrao, rao)
    for _ in range(2):
        counts.fold()
        db.session.commit()
        same(mrao, rao)
        counts.rebuild()
        db.session.commit()
        same(mrao, rao)


def test_every_panel_query_runs_on_postgresql(pg: Flask) -> None:
    """The other panels' SQL (CASE month and age buckets, the served-endpoint join, the
    findings subqueries) on PostgreSQL, for an MRAO and an RAO."""
    from app.models import DiscoveryTask, Endpoint, RunStatus, ScanRun

    tag = secrets.token_hex(3)
    mine = make_org(f"Panels {tag}")
    rao = make_admin(f"panels-rao-{tag}", Role.RAO, org=mine)
    mrao = make_admin(f"panels-mrao-{tag}")
    expired = add_certificates(mine, 1, days=-2, prefix=f"panels-{tag}-")[0]
    task = DiscoveryTask(name=f"DC {tag}", ranges="10.0.0.0/24", organization_id=mine.id)
    db.session.add(task)
    db.session.flush()
    run = ScanRun(task_id=task.id, status=RunStatus.SUCCESSFUL, finished_at=utcnow())
    db.session.add(run)
    db.session.flush()
    db.session.add(
        Endpoint(
            task_id=task.id, ip="10.0.0.9", port=443, certificate_id=expired.id, last_run_id=run.id
        )
    )
    db.session.commit()
    for admin in (mrao, rao):
        assert dashboard.top_risks(actor=admin)["expired_served"][CertType.SSL] >= 1
        assert len(dashboard.requests_vs_issued(actor=admin)) == 12
        assert set(dashboard.pending_approvals(actor=admin)) == set(CertType)
        assert [t.task_name for t in dashboard.discovery_trend(actor=admin)][-1:] in (
            [task.name],
            [],
        )
    assert dashboard.top_risks(actor=rao)["expired_served"][CertType.SSL] == 1
    db.session.rollback()
