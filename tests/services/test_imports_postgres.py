"""An import on PostgreSQL: odd certificates (a negative serial, a subject that is not
UTF-8, a 21-octet serial) stored with their findings, chains linked, and a second run of
the job storing nothing twice."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Certificate, CertificateFinding, ImportResult, Job, JobStatus
from app.services.imports import imports, reading
from app.services.platform import jobs
from tests.factories import make_admin, make_org
from tests.unit.pki.importfiles import OpensslFiles, run, zip_of


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    made = OpensslFiles(tmp_path_factory.mktemp("pg-imports"))
    made.sign("neg", "/CN=negative.test", issuer="inter", serial="-9")
    made.sign("long", "/CN=long.test", issuer="inter", serial="0x" + "0a" * 21)
    made.sign("latin", "/CN=cafXX.test", issuer="inter")
    made.sign("shared1", "/CN=shared-one.test", issuer="inter")
    run("x509", "-req", "-in", "shared1.csr", "-CA", "inter.pem", "-CAkey", "inter.key",
        "-days", "30", "-extfile", "shared1.ext", "-out", "shared2.pem", cwd=made.root)  # fmt: skip
    made.sign("dup1", "/CN=dup-one.test", issuer="inter", serial="4243")
    made.sign("dup2", "/CN=dup-two.test", issuer="inter", serial="4243")
    return made


def test_odd_certificates_land_on_postgres_with_their_findings(pg: Flask, files) -> None:
    tag = secrets.token_hex(3)
    mrao = make_admin(f"mrao-{tag}")
    org = make_org(f"Imports {tag}")
    mangled = files.der("latin").replace(b"cafXX", b"caf\xff\xfe")
    archive = zip_of(
        {
            "chain.pem": files.pem("leaf") + files.pem("inter") + files.pem("root"),
            "neg.pem": files.pem("neg"),
            "long.crt": files.pem("long"),
            "latin.der": mangled,
            "keys.pem": files.pem("shared1") + files.pem("shared2"),
            "dups.pem": files.pem("dup1") + files.pem("dup2"),
        }
    )
    record = imports.start_import(
        actor=mrao,
        organization_id=org.id,
        department_id=None,
        uploads=[imports.Upload("odd.zip", archive)],
        send=False,
    )
    db.session.commit()
    assert jobs.execute(record.job_id, reading.run_import_job) == "done"
    db.session.expire_all()
    assert db.session.get(Job, record.job_id).status == JobStatus.DONE
    assert record.counts == {"imported": 10, "known": 0, "invalid": 0, "skipped": 0}

    def codes(der: bytes) -> list[str]:
        cert = db.session.execute(
            select(Certificate).where(Certificate.fingerprint == hashlib.sha256(der).hexdigest())
        ).scalar_one()
        return sorted(
            db.session.execute(
                select(CertificateFinding.code).where(CertificateFinding.certificate_id == cert.id)
            ).scalars()
        )

    assert codes(files.der("neg")) == ["serial_not_positive"]
    assert codes(files.der("long")) == ["serial_too_long"]
    assert codes(mangled) == ["subject_not_decodable"]
    # What the import's batches found (its hygiene sweep has not run): their look-ups take
    # one array parameter on PostgreSQL (bulk.among).
    assert codes(files.der("shared1")) == codes(files.der("shared2")) == ["shared_key"]
    assert codes(files.der("dup1")) == codes(files.der("dup2")) == ["duplicate_issuer_serial"]
    leaf = db.session.execute(
        select(Certificate).where(
            Certificate.fingerprint == hashlib.sha256(files.der("leaf")).hexdigest()
        )
    ).scalar_one()
    assert leaf.issuer_id is not None
    # The service run again (a retry after a crash) stores nothing twice.
    reading.run_import(import_id=record.id)
    count = db.session.scalar(
        select(func.count(ImportResult.id)).where(ImportResult.import_id == record.id)
    )
    assert count == 10
