"""The dashboard's summary tables (certificate_counts, certificate_expiry_counts,
certificate_month_counts) give the
same numbers as counting the certificates, for an MRAO and an RAO, after every kind of
write: issuance, revocation, import, the expiry sweep, reassignment, deletion, a bulk
insert; folding and rebuilding (each run twice) change no number."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import delete, func, select, update

from app.extensions import db
from app.models import (
    Certificate,
    CertificateCount,
    CertificateExpiryCount,
    CertificateMonthCount,
    CertOrigin,
    CertStatus,
    CertType,
    Role,
)
from app.models.types import utcnow
from app.services import bulk
from app.services.certificates import inventory, revocation
from app.services.imports import imports
from app.services.reports import counts, dashboard
from tests.factories import make_admin, make_org, self_signed
from tests.integration.test_imports import run_upload
from tests.integration.test_issuance import issue, world  # noqa: F401  (fixture)
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


def test_summary_equals_direct_counts_after_every_write(world, stub_worker):  # noqa: F811
    mrao, acme = world["mrao"], world["org"]
    other = make_org("Other")
    rao = make_admin("rao", Role.RAO, org=acme)
    same(mrao, rao)

    _, issued = issue(world, stub_worker)
    _, second = issue(world, stub_worker, cn="api.acme.example")
    same(mrao, rao)
    assert dashboard.certificate_overview(actor=rao).by_origin == {"Issued": 2}

    revocation.revoke(actor=mrao, certificate_ids=[issued.id], reason="keyCompromise")
    same(mrao, rao)
    assert dashboard.certificate_overview(actor=rao).by_status == {"Issued": 1, "Revoked": 1}

    run_upload(
        stub_worker,
        actor=mrao,
        org=other,
        uploads=[
            imports.Upload(
                "a.pem", self_signed("imported.other.example").public_bytes(Encoding.PEM)
            )
        ],
    )
    same(mrao, rao)

    lapsing = add_certificates(acme, 3, days=5, prefix="lapsing")
    same(mrao, rao)
    web = world["dept"]  # "Web" of Acme
    drao = make_admin("drao", Role.DRAO, org=acme, dept=web)
    lapsing[1].department_id = web.id
    same(mrao, rao, drao)
    assert dashboard.certificate_overview(actor=drao).total == 1
    # Issued certificates past notAfter read Expired before and after the daily sweep.
    db.session.execute(
        update(Certificate)
        .where(Certificate.id.in_([c.id for c in lapsing[:2]]))
        .values(status=CertStatus.ISSUED, not_after=utcnow() - timedelta(days=3))
    )
    db.session.execute(
        update(Certificate)
        .where(Certificate.id == lapsing[2].id)
        .values(status=CertStatus.ISSUED, not_after=utcnow() - timedelta(minutes=5))
    )
    same(mrao, rao, drao)
    assert dashboard.certificate_overview(actor=rao).by_status["Expired"] == 3
    inventory.expire_sweep()
    same(mrao, rao, drao)

    second.organization_id = other.id  # reassigned out of the RAO's scope
    same(mrao, rao, drao)
    db.session.execute(delete(Certificate).where(Certificate.id == lapsing[0].id))
    same(mrao, rao, drao)

    now = utcnow()
    bulk.insert_rows(
        Certificate.__table__,
        [
            {
                "fingerprint": hashlib.sha256(f"bulk{i}".encode()).hexdigest(),
                "der": b"\x30\x00",
                "cert_type": (CertType.SSL if i % 2 else CertType.CLIENT).value,
                "origin": CertOrigin.DISCOVERED.value,
                "status": CertStatus.EXTERNAL.value,
                "organization_id": acme.id if i % 3 else None,
                "serial_hex": f"{i:x}",
                "common_name": f"bulk{i}.example",
                "issuer_cn": "Bulk CA",
                "sans": [],
                "not_before": now - timedelta(days=1),
                "not_after": now + timedelta(days=i * 11, hours=i),
                "key_type": "RSA-2048",
                "signature_algorithm": "sha256WithRSAEncryption",
                "created_at": now,
            }
            for i in range(40)
        ],
    )
    same(mrao, rao, drao)
    overview = dashboard.certificate_overview(actor=rao)
    assert sum(overview.expiring_weeks) > 0 and overview.by_issuer["Bulk CA"] == 26
    # Issued by Certwright over the last fourteen months (two before the panel's window):
    # a bulk insert, a move to another month, a reassignment, a deletion.
    bulk.insert_rows(
        Certificate.__table__,
        [
            {
                "fingerprint": hashlib.sha256(f"monthly{i}".encode()).hexdigest(),
                "der": b"\x30\x00",
                "cert_type": (CertType.SSL if i % 2 else CertType.DEVICE).value,
                "origin": CertOrigin.ISSUED.value,
                "status": CertStatus.ISSUED.value,
                "organization_id": acme.id if i % 3 else other.id,
                "department_id": web.id if i % 5 == 0 else None,
                "serial_hex": f"m{i:x}",
                "common_name": f"monthly{i}.example",
                "issuer_cn": "Bulk CA",
                "sans": [],
                "not_before": now - timedelta(days=1),
                "not_after": now + timedelta(days=90),
                "key_type": "RSA-2048",
                "signature_algorithm": "sha256WithRSAEncryption",
                "created_at": now - timedelta(days=i * 15, hours=i),
            }
            for i in range(30)
        ],
    )
    same(mrao, rao, drao)
    months = dashboard.requests_vs_issued(actor=rao)
    assert sum(m.issued for m in months) > 10 and len([m for m in months if m.issued]) > 6
    moved = db.session.execute(
        select(Certificate).where(Certificate.common_name == "monthly3.example")
    ).scalar_one()
    moved.created_at = now - timedelta(days=100)
    same(mrao, rao, drao)
    moved.organization_id = acme.id
    same(mrao, rao, drao)
    db.session.execute(delete(Certificate).where(Certificate.common_name.like("monthly1%")))
    same(mrao, rao, drao)

    rows = db.session.execute(select(func.count(CertificateCount.id))).scalar_one()
    first, again = counts.fold(), counts.fold()
    assert first["rows_before"] == rows and again["rows_before"] == again["rows_after"]
    assert again["rows_after"] <= rows
    same(mrao, rao, drao)
    assert db.session.execute(select(func.count(CertificateMonthCount.id))).scalar_one() > 0
    # Folding merged the days before today into one (PAST) per group.
    days = db.session.execute(select(CertificateExpiryCount.expiry_day)).scalars().all()
    assert not [d for d in days if counts.PAST < d < utcnow().date()]
    counts.rebuild()
    counts.rebuild()
    same(mrao, rao, drao)
    # A wrong row (a bug, a hand edit) is found, and a rebuild repairs it.
    db.session.add(
        CertificateCount(
            organization_id=acme.id,
            cert_type="ssl",
            status="Issued",
            origin="Issued",
            issuer_cn="",
            key_type="",
            signature_algorithm="",
            n=5,
        )
    )
    db.session.commit()
    assert len(counts.differences()) == 1
    counts.rebuild()
    same(mrao, rao, drao)


def test_the_fold_job_recurs_every_ten_minutes(app):
    import app.actors.reports  # noqa: F401  (registers the kinds)
    from app.services.platform import jobs

    assert jobs.SYSTEM_SCHEDULES[counts.JOB_KIND] == 600


def test_the_counts_command_checks_folds_and_repairs(app):
    acme = make_org("Acme")
    add_certificates(acme, 4)
    runner = app.test_cli_runner()
    for args in (["report", "counts"], ["report", "counts", "--fold"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert "agree with the certificates" in result.output
    db.session.execute(update(CertificateCount).values(n=CertificateCount.n + 1))
    db.session.commit()
    result = runner.invoke(args=["report", "counts"])
    assert result.exit_code != 0 and "differ from the certificates" in result.output
    for _ in range(2):
        result = runner.invoke(args=["report", "counts", "--rebuild"])
        assert result.exit_code == 0, result.output
    # The month summary ("requests vs issued") is checked and repaired the same way.
    db.session.execute(update(CertificateMonthCount).values(n=CertificateMonthCount.n + 2))
    db.session.commit()
    result = runner.invoke(args=["report", "counts"])
    assert result.exit_code != 0 and "month {" in result.output
    result = runner.invoke(args=["report", "counts", "--rebuild"])
    assert result.exit_code == 0 and "agree with the certificates" in result.output
    both = runner.invoke(args=["report", "counts", "--fold", "--rebuild"])
    assert both.exit_code != 0 and "choose one" in both.output
