"""The migrations are the schema on SQLite too: no drift from the models, and they go down
to an empty database and up again (batch mode). PostgreSQL: tests/services."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography import x509
from flask_migrate import check, downgrade, upgrade
from sqlalchemy import inspect, select

from app import create_app
from app.extensions import db
from tests.conftest import ROOT, make_config

MIGRATIONS = str(ROOT / "migrations")


def test_migrated_sqlite_database_matches_the_models(template_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "check.db"
    shutil.copy(template_db, path)  # built by the migrations
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            check(directory=MIGRATIONS)  # raises on any difference
        finally:
            db.engine.dispose()


def test_sqlite_migrations_downgrade_to_empty_and_upgrade_again(
    template_db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "roundtrip.db"
    shutil.copy(template_db, path)
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            downgrade(directory=MIGRATIONS, revision="base")
            assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
            upgrade(directory=MIGRATIONS)
            assert "organizations" in inspect(db.engine).get_table_names()
            check(directory=MIGRATIONS)
        finally:
            db.engine.dispose()


def test_trust_services_migration_fixes_the_data(app, stub_worker) -> None:
    """0010_trust_services: EC CAs sign with their curve's hash, certificateHold and
    authority reasons on leaves are rewritten, keyCompromise keys are blocked, names are
    NFC unless that clashes, and names with refused characters are left for a person."""
    import unicodedata

    from sqlalchemy import text

    from app.models import BlockedKey, Certificate, CertificateAuthority, Department, Organization
    from app.pki.weak_keys import spki_sha256
    from app.services.certificates import revocation
    from tests.conftest import drain
    from tests.factories import (
        make_admin,
        make_dept,
        make_domain,
        make_org,
        make_pki,
        request_certificate,
    )

    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_dept(org, "Ops")
    make_domain("acme.example", by=mrao, org=org)
    _root, issuing, profile = make_pki(key_type="EC-P256")
    reqs = [
        request_certificate(
            by=mrao, org=org, profile=profile, cn=f"h{i}.acme.example", approve=True
        )[0]
        for i in range(3)
    ]
    drain(stub_worker)
    for r in reqs:
        db.session.refresh(r)
    certs = [db.session.get(Certificate, r.certificate_id) for r in reqs]
    revocation.revoke(actor=mrao, certificate_ids=[c.id for c in certs], reason="superseded")
    db.session.commit()
    cert_ids, issuing_id = [c.id for c in certs], issuing.id
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision="0009_outbox_department")
    decomposed = unicodedata.normalize("NFD", "Société")
    with db.engine.begin() as conn:  # what the old code stored
        conn.execute(text("UPDATE certificate_authorities SET signature_hash = 'SHA-384'"))
        for cert, reason in zip(
            certs, ("certificateHold", "cACompromise", "keyCompromise"), strict=True
        ):
            conn.execute(
                text("UPDATE certificates SET revocation_reason = :r WHERE id = :id"),
                {"r": reason, "id": cert.id},
            )
        conn.execute(
            text(
                "INSERT INTO organizations (name, country, address1, address2, address3, city, state, postal_code, created_at) VALUES (:n, 'DE', '', '', '', '', '', '', CURRENT_TIMESTAMP)"
            ),
            {"n": decomposed},
        )
        conn.execute(text("UPDATE departments SET name = :n"), {"n": "Ops\u202e"})
    upgrade(directory=MIGRATIONS)
    assert {
        ca.signature_hash for ca in db.session.execute(select(CertificateAuthority)).scalars()
    } == {"SHA-256"}
    reasons = [db.session.get(Certificate, i).revocation_reason for i in cert_ids]
    assert reasons == ["unspecified", "keyCompromise", "keyCompromise"]
    blocked = set(db.session.execute(select(BlockedKey.spki_sha256)).scalars())
    assert blocked == {
        spki_sha256(x509.load_der_x509_certificate(db.session.get(Certificate, i).der).public_key())
        for i in cert_ids[1:]
    }
    names = set(db.session.execute(select(Organization.name)).scalars())
    assert "Société" in names and decomposed not in names
    assert db.session.execute(select(Department.name)).scalar_one() == "Ops\u202e"  # left, listed
    from app.services.ca import crl

    crl.publish_crl(ca_id=issuing_id, trigger="test")  # publishable again
    db.session.commit()


def test_import_migration_fills_the_key_identity_of_stored_certificates(app, stub_worker) -> None:
    """0016_import: every certificate stored before it gets its SPKI SHA-256, so keys shared
    with certificates imported later are found; the downgrade drops the new tables."""
    from app.models import Certificate
    from app.pki.weak_keys import spki_sha256
    from tests.conftest import drain
    from tests.factories import make_admin, make_domain, make_org, make_pki, request_certificate

    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _root, _issuing, profile = make_pki(key_type="EC-P256")
    req, key = request_certificate(
        by=mrao, org=org, profile=profile, cn="h.acme.example", approve=True
    )
    drain(stub_worker)
    db.session.refresh(req)
    cert_id = req.certificate_id
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision="0010_trust_services")
    tables = set(inspect(db.engine).get_table_names())
    assert "certificate_imports" not in tables and "certificate_findings" not in tables
    assert "spki_sha256" not in {c["name"] for c in inspect(db.engine).get_columns("certificates")}
    upgrade(directory=MIGRATIONS)
    stored = db.session.get(Certificate, cert_id)
    assert stored.spki_sha256 == spki_sha256(key.public_key())
