"""One vocabulary for key and signature algorithms across issued and discovered certificates,
rules and the dashboard (issue 9 C6); migration 0007_operations rewrites what older code stored."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import AssignmentRule, Certificate
from app.pki import info
from app.services.discovery import rules as rule_service
from app.services.reports import dashboard
from tests.conftest import ROOT, drain, make_config
from tests.factories import make_admin, make_domain, make_org, make_pki, request_certificate

MIGRATIONS = str(ROOT / "migrations")
BEFORE = "0006_trust"


def ec_certificate(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )


def test_issued_and_discovered_ec_p256_certificates_are_named_alike_and_grouped(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _, _, profile = make_pki(key_type="EC-P256")
    request_certificate(
        by=mrao, org=org, profile=profile, cn="www.acme.example", key_type="EC-P256", approve=True
    )
    drain(stub_worker)
    issued = db.session.execute(select(Certificate)).scalar_one()
    # A discovered certificate with the same kind of key, described as discovery stores it.
    found = info.describe_certificate(ec_certificate("found.acme.example"))
    assert (
        (issued.key_algorithm, issued.key_size, issued.key_type)
        == (
            found.key_algorithm,
            found.key_size,
            found.key_type,
        )
        == ("EC", 256, "EC-P256")
    )
    assert issued.signature_algorithm == found.signature_algorithm == "ECDSA-SHA256"
    db.session.add(
        Certificate(
            fingerprint=found.fingerprint_sha256,
            der=b"-",
            origin="Discovered",
            status="External",
            cert_type="ssl",
            organization_id=org.id,
            serial_hex=found.serial_hex,
            not_before=found.not_before,
            not_after=found.not_after,
            key_algorithm=found.key_algorithm,
            key_size=found.key_size,
            key_type=found.key_type,
            signature_algorithm=found.signature_algorithm,
        )
    )
    db.session.commit()
    assert dashboard.certificate_overview(actor=mrao).by_key == {"EC-P256": 2}


def test_a_key_type_rule_written_the_old_way_is_saved_in_the_vocabulary(app):
    org = make_org("Acme")
    rule = rule_service.save_rule(
        actor=make_admin("mrao"),
        data=rule_service.RuleData(
            name="EC servers",
            match_mode="all",
            conditions=[{"field": "key_type", "operator": "equals", "value": " ECDSA-256"}],
            organization_id=org.id,
        ),
    )
    db.session.commit()
    assert rule.conditions[0]["value"] == "EC-P256"


def _insert(connection: sa.Connection, table_name: str, **values: Any) -> int:
    """A row with `values`; every other required column gets a filler of its type."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=connection)
    now = dt.datetime.now(dt.UTC)
    for column in table.columns:
        if column.name in values or column.nullable or column.primary_key:
            continue
        python_type = column.type.python_type if not isinstance(column.type, sa.JSON) else list
        values[column.name] = {
            str: "",
            int: 0,
            bool: False,
            dt.datetime: now,
            list: [],
            bytes: b"",
        }[python_type]
    return int(connection.execute(table.insert().values(**values)).inserted_primary_key[0])


def test_migration_0007_operations_rewrites_stored_names_and_back(
    template_db: Path, tmp_path: Path
):
    path = tmp_path / "names.db"
    shutil.copy(template_db, path)
    app = create_app(make_config(f"sqlite:///{path}"))
    discovered = ec_certificate("old.example")
    with app.app_context():
        try:
            downgrade(directory=MIGRATIONS, revision=BEFORE)
            with db.engine.begin() as connection:
                org_id = _insert(connection, "organizations", name="Acme", country="DE")
                rows = {
                    # What issuance stored: "<hash> with <family>".
                    "issued": dict(
                        origin="Issued",
                        der=b"not a certificate",
                        key_algorithm="EC",
                        key_size=384,
                        signature_algorithm="SHA-384 with ECDSA",
                    ),
                    # What discovery stored: OpenSSL's names.
                    "discovered": dict(
                        origin="Discovered",
                        der=discovered.public_bytes(Encoding.DER),
                        key_algorithm="EC",
                        key_size=256,
                        signature_algorithm="ecdsa-with-SHA256",
                    ),
                    "legacy": dict(
                        origin="Imported",
                        der=b"junk",
                        key_algorithm="RSA",
                        key_size=2048,
                        signature_algorithm="sha1WithRSAEncryption",
                    ),
                }
                ids = {
                    label: _insert(
                        connection,
                        "certificates",
                        fingerprint=label.ljust(64, "0"),
                        serial_hex=label,
                        status="External",
                        **values,
                    )
                    for label, values in rows.items()
                }
                _insert(
                    connection,
                    "assignment_rules",
                    name="EC",
                    organization_id=org_id,
                    conditions=[
                        {"field": "key_type", "operator": "equals", "value": "ECDSA-256"},
                        {"field": "key_type", "operator": "starts_with", "value": "ECDSA"},
                        {"field": "subject_cn", "operator": "equals", "value": "ECDSA-256"},
                    ],
                )
            upgrade(directory=MIGRATIONS)
            names = {
                c.id: (c.key_algorithm, c.key_size, c.key_type, c.signature_algorithm)
                for c in db.session.execute(select(Certificate)).scalars()
            }
            assert names == {
                ids["issued"]: ("EC", 384, "EC-P384", "ECDSA-SHA384"),
                ids["discovered"]: ("EC", 256, "EC-P256", "ECDSA-SHA256"),
                ids["legacy"]: ("RSA", 2048, "RSA-2048", "SHA1-RSA"),
            }
            (rule,) = db.session.execute(select(AssignmentRule)).scalars()
            assert [c["value"] for c in rule.conditions] == ["EC-P256", "EC", "ECDSA-256"]
            db.session.remove()

            downgrade(directory=MIGRATIONS, revision=BEFORE)
            with db.engine.connect() as connection:
                stored = dict(
                    connection.execute(
                        sa.text("SELECT serial_hex, signature_algorithm FROM certificates")
                    ).all()
                )
                conditions = connection.execute(
                    sa.text("SELECT conditions FROM assignment_rules")
                ).scalar_one()
            assert stored == {
                "issued": "SHA-384 with ECDSA",
                "discovered": "ecdsa-with-SHA256",
                "legacy": "sha1WithRSAEncryption",
            }
            assert '"ECDSA-256"' in conditions and '"ECDSA"' in conditions
        finally:
            db.engine.dispose()
