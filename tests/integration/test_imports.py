"""Importing certificates through the service and the job (stub worker, real database): a
ZIP of openssl-made certificates and our own, deduplicated against the inventory, chains
linked, statuses, findings, a per-file CSV, twice-safe runs, and who may import where."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertificateFinding,
    CertificateImport,
    CertOrigin,
    CertStatus,
    ImportedCertificate,
    ImportResult,
    Job,
    JobStatus,
    Role,
)
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.imports import imports, reading
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_dept, make_org
from tests.unit.pki.importfiles import OpensslFiles, raw_member, raw_zip, run, zip_of


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    made = OpensslFiles(tmp_path_factory.mktemp("imports"))
    made.sign("rsa1024", "/CN=small.test", issuer="inter", key="rsa:1024")
    made.sign("shared1", "/CN=shared-one.test", issuer="inter")
    run("x509", "-req", "-in", "shared1.csr", "-CA", "inter.pem", "-CAkey", "inter.key",
        "-days", "30", "-extfile", "shared1.ext", "-out", "shared2.pem", cwd=made.root)  # fmt: skip
    made.sign("neg", "/CN=negative.test", issuer="inter", serial="-7")
    return made


def expired_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired.test")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def fp(pem: bytes) -> str:
    return hashlib.sha256(
        x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    ).hexdigest()


def run_upload(worker, *, actor, org, dept=None, uploads):
    record = imports.start_import(
        actor=actor,
        organization_id=org.id,
        department_id=dept.id if dept else None,
        uploads=uploads,
    )
    db.session.commit()
    drain(worker)
    return db.session.get(CertificateImport, record.id)


def by_fingerprint(fingerprint: str) -> Certificate:
    return db.session.execute(
        select(Certificate).where(Certificate.fingerprint == fingerprint)
    ).scalar_one()


def csv_rows(actor, import_id: int) -> list[dict[str, str]]:
    text = "".join(imports.results_csv(actor=actor, import_id=import_id))
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("part_members", [reading.PART_MEMBERS, 2], ids=["one-part", "parts"])
def test_a_zip_of_everything_lands_once_per_certificate_with_each_files_fate(
    app, stub_worker, files, monkeypatch, part_members
):
    # In parts of two members, read by part jobs (or by the import's own job when it
    # finds one no worker took): the outcome is the same, file by file, in order.
    monkeypatch.setattr(reading, "PART_MEMBERS", part_members)
    org = make_org("Acme")
    mrao = make_admin()
    expired = expired_pem()
    archive = zip_of(
        {
            "chain.pem": files.pem("leaf") + files.pem("inter") + files.pem("root"),
            "again/leaf.crt": files.pem("leaf"),  # the same certificate a second time
            "self.der.pem": files.der("self"),  # DER under a PEM name
            "bundle.p7b": files.pkcs7("inter", "root"),
            "expired.cer": expired,
            "negative-serial.pem": files.pem("neg"),
            "README.txt": b"our certificates\n",
        }
    )
    hostile = raw_zip([raw_member("../../etc/evil.pem", files.pem("self"))])
    record = run_upload(
        stub_worker,
        actor=mrao,
        org=org,
        uploads=[imports.Upload("certs.zip", archive), imports.Upload("evil.zip", hostile)],
    )
    assert record.counts == {"imported": 6, "known": 3, "invalid": 1, "skipped": 1}
    assert record.message == "6 imported, 3 already known, 1 invalid, 1 skipped"
    job = db.session.get(Job, record.job_id)
    assert (job.status, job.progress) == (JobStatus.DONE, 100)
    parts = db.session.execute(select(Job.status).where(Job.kind == reading.PART_KIND)).all()
    # certs.zip's 7 members in 1 part (or 4), evil.zip in 1; the first is the import's own.
    assert [status for (status,) in parts] == [JobStatus.DONE] * (1 if part_members > 7 else 4)
    leaf, inter, root = (by_fingerprint(fp(files.pem(n))) for n in ("leaf", "inter", "root"))
    assert (leaf.origin, leaf.status, leaf.organization_id) == (
        CertOrigin.IMPORTED,
        CertStatus.EXTERNAL,
        org.id,
    )
    assert (leaf.issuer_id, inter.issuer_id, root.issuer_id) == (inter.id, root.id, None)
    assert by_fingerprint(fp(expired)).status == CertStatus.EXPIRED
    assert db.session.scalar(select(func.count(Certificate.id))) == 6
    rows = csv_rows(mrao, record.id)
    fates = [(r["file"], r["member"], r["outcome"]) for r in rows]
    expected = [
        ("certs.zip", "chain.pem", "imported"),
        ("certs.zip", "chain.pem", "imported"),
        ("certs.zip", "chain.pem", "imported"),
        ("certs.zip", "again/leaf.crt", "known"),
        ("certs.zip", "self.der.pem", "imported"),
        ("certs.zip", "bundle.p7b", "known"),
        ("certs.zip", "bundle.p7b", "known"),
        ("certs.zip", "expired.cer", "imported"),
        ("certs.zip", "negative-serial.pem", "imported"),
        ("certs.zip", "README.txt", "invalid"),
        ("evil.zip", "../../etc/evil.pem", "skipped"),
    ]
    if part_members > 7:
        assert fates == expected
    else:
        # Parts read at once: of two files holding one certificate, either may store it
        # first (the other finds it known); every certificate is imported exactly once.
        assert [f[:2] for f in fates] == [f[:2] for f in expected]
        assert [f[2] for f in fates if f[2] not in ("imported", "known")] == [
            "invalid",
            "skipped",
        ]
        by_certificate: dict[str, list[str]] = {}
        for r in rows:
            if r["fingerprint"]:
                by_certificate.setdefault(r["fingerprint"], []).append(r["outcome"])
        assert len(by_certificate) == 6
        assert all(o.count("imported") == 1 for o in by_certificate.values()), by_certificate
    assert rows[3]["reason"] == "already in another file of this import"
    assert rows[3]["certificate_id"] == str(leaf.id)
    readme = next(r for r in rows if r["member"] == "README.txt")
    assert readme["reason"].startswith("not a certificate (PEM, DER or PKCS#7)")
    evil = next(r for r in rows if r["file"] == "evil.zip")
    assert evil["reason"] == "a name that climbs out of the archive (../): skipped"
    negative = by_fingerprint(hashlib.sha256(files.der("neg")).hexdigest())
    assert negative.serial_hex == "-7"
    found = db.session.execute(
        select(CertificateFinding.code).where(
            CertificateFinding.certificate_id == negative.id, CertificateFinding.source != "lint"
        )
    ).scalars()
    assert list(found) == ["serial_not_positive"]
    # The hygiene sweep the import started linted it too, by pkilint's own codes.
    linted = db.session.execute(
        select(CertificateFinding.code).where(
            CertificateFinding.certificate_id == negative.id, CertificateFinding.source == "lint"
        )
    ).scalars()
    assert "cabf.serverauth.subscriber.authority_info_access_extension_absent" in set(linted)


def test_a_known_certificate_gains_the_import_as_a_source_and_is_not_copied(
    app, stub_worker, files
):
    org = make_org("Acme")
    mrao = make_admin()
    first = run_upload(
        stub_worker, actor=mrao, org=org, uploads=[imports.Upload("a.pem", files.pem("self"))]
    )
    cert = by_fingerprint(fp(files.pem("self")))
    # As if discovery had found it first: origin and status stay what they were.
    cert.origin, cert.organization_id = CertOrigin.DISCOVERED, None
    db.session.commit()
    second = run_upload(
        stub_worker, actor=mrao, org=org, uploads=[imports.Upload("b.pem", files.pem("self"))]
    )
    assert second.counts == {"imported": 0, "known": 1, "invalid": 0, "skipped": 0}
    db.session.refresh(cert)
    assert cert.origin == CertOrigin.DISCOVERED
    assert cert.organization_id == org.id  # an unplaced certificate goes where it is imported
    sources = db.session.execute(
        select(ImportedCertificate.import_id, ImportedCertificate.file).where(
            ImportedCertificate.certificate_id == cert.id
        )
    ).all()
    assert sorted(sources) == [(first.id, "a.pem"), (second.id, "b.pem")]
    assert db.session.scalar(select(func.count(Certificate.id))) == 1


def test_running_the_job_twice_stores_nothing_twice(app, stub_worker, files):
    org = make_org("Acme")
    mrao = make_admin()
    record = run_upload(
        stub_worker,
        actor=mrao,
        org=org,
        uploads=[imports.Upload("chain.pem", files.pem("leaf") + files.pem("inter"))],
    )
    before = csv_rows(mrao, record.id)
    # A duplicate delivery of the message: the finished job is not run again.
    job = db.session.get(Job, record.job_id)
    from app.actors.imports import import_certificates

    import_certificates.send(job.id)
    drain(stub_worker)
    # And the service itself run again (a retry after a crash) resumes after what it stored.
    reading.run_import(import_id=record.id)
    assert csv_rows(mrao, record.id) == before
    assert db.session.scalar(select(func.count(Certificate.id))) == 2
    assert db.session.scalar(select(func.count(ImportResult.id))) == 2
    assert db.session.scalar(select(func.count(ImportedCertificate.id))) == 2


def test_weak_and_shared_keys_are_flagged(app, stub_worker, files):
    org = make_org("Acme")
    record = run_upload(
        stub_worker,
        actor=make_admin(),
        org=org,
        uploads=[
            imports.Upload(
                "keys.pem", files.pem("rsa1024") + files.pem("shared1") + files.pem("shared2")
            )
        ],
    )
    assert record.counts["imported"] == 3
    assert _finding_codes(files.pem("rsa1024")) == ["weak_key_size"]
    assert _finding_codes(files.pem("shared1")) == _finding_codes(files.pem("shared2"))
    assert _finding_codes(files.pem("shared2")) == ["shared_key"]


def _finding_codes(pem: bytes) -> list[str]:
    cert = by_fingerprint(fp(pem))
    return sorted(
        db.session.execute(
            select(CertificateFinding.code).where(
                CertificateFinding.certificate_id == cert.id,
                CertificateFinding.source != "lint",
            )
        ).scalars()
    )


def _stored_unassigned(pem: bytes) -> None:
    """As discovery stores a certificate nobody has placed yet."""
    from app.models import CertOrigin
    from app.models.types import utcnow
    from app.pki.bundles import read_file

    (parsed,) = read_file(pem).certificates
    row = reading.certificate_row(parsed, (None, None), utcnow())  # type: ignore[arg-type]
    db.session.add(Certificate(**{**row, "origin": CertOrigin.DISCOVERED, "assigned_at": None}))
    db.session.commit()


def _read_without_sweep(org, uploads) -> None:
    """The import read here, without the hygiene sweep it queues (which recomputes the
    shared-key findings): what the import's batches found themselves."""
    record = imports.start_import(
        actor=make_admin(), organization_id=org.id, department_id=None, uploads=uploads
    )
    db.session.commit()
    reading.run_import(import_id=record.id)


def test_a_key_shared_with_a_discovered_certificate_is_judged_where_that_one_lands(app, files):
    # shared1 was discovered and nobody placed it: importing it places it in Acme, so
    # shared2 (same key, same upload) shares its key within Acme.
    org = make_org("Acme")
    _stored_unassigned(files.pem("shared1"))
    _read_without_sweep(
        org, [imports.Upload("keys.pem", files.pem("shared1") + files.pem("shared2"))]
    )
    assert by_fingerprint(fp(files.pem("shared1"))).organization_id == org.id
    assert _finding_codes(files.pem("shared1")) == _finding_codes(files.pem("shared2"))
    assert _finding_codes(files.pem("shared2")) == ["shared_key"]


def test_a_key_shared_with_an_unplaced_certificate_is_shared_outside_the_organization(app, files):
    org = make_org("Acme")
    _stored_unassigned(files.pem("shared1"))
    _read_without_sweep(org, [imports.Upload("key.pem", files.pem("shared2"))])
    assert by_fingerprint(fp(files.pem("shared1"))).organization_id is None
    assert _finding_codes(files.pem("shared1")) == ["shared_key_other_org"]
    assert _finding_codes(files.pem("shared2")) == ["shared_key_other_org"]


def test_cells_a_spreadsheet_would_evaluate_are_escaped(app, stub_worker, files):
    org = make_org("Acme")
    mrao = make_admin()
    archive = zip_of({'=HYPERLINK("http://x").pem': b"nothing", "@SUM(1).pem": files.pem("self")})
    record = run_upload(
        stub_worker, actor=mrao, org=org, uploads=[imports.Upload("+cmd.zip", archive)]
    )
    text = "".join(imports.results_csv(actor=mrao, import_id=record.id))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(imports.RESULT_COLUMNS)
    assert {r[0] for r in rows[1:]} == {"'+cmd.zip"}
    assert sorted(r[1] for r in rows[1:]) == ['\'=HYPERLINK("http://x").pem', "'@SUM(1).pem"]


def test_rao_and_drao_import_only_into_their_scope(app, stub_worker, files):
    acme, other = make_org("Acme"), make_org("Other")
    it, ops = make_dept(acme, "IT"), make_dept(acme, "Ops")
    rao = make_admin("rao", Role.RAO, org=acme)
    drao = make_admin("drao", Role.DRAO, org=acme, dept=it)
    upload = [imports.Upload("self.pem", files.pem("self"))]
    with pytest.raises(NotFound):
        imports.start_import(
            actor=rao, organization_id=other.id, department_id=None, uploads=upload
        )
    with pytest.raises(Forbidden):
        imports.start_import(
            actor=drao, organization_id=acme.id, department_id=None, uploads=upload
        )
    with pytest.raises(Forbidden):
        imports.start_import(
            actor=drao, organization_id=acme.id, department_id=ops.id, uploads=upload
        )
    with pytest.raises(DomainError, match="not in the organization"):
        imports.start_import(
            actor=rao,
            organization_id=acme.id,
            department_id=make_dept(other, "X").id,
            uploads=upload,
        )
    db.session.rollback()
    record = run_upload(stub_worker, actor=drao, org=acme, dept=it, uploads=upload)
    assert record.counts["imported"] == 1
    assert by_fingerprint(fp(files.pem("self"))).department_id == it.id
    # Someone else's import is not there for them.
    theirs = run_upload(
        stub_worker,
        actor=make_admin(),
        org=other,
        uploads=[imports.Upload("x.pem", files.pem("leaf"))],
    )
    with pytest.raises(NotFound):
        list(imports.results_csv(actor=rao, import_id=theirs.id))
    assert [i.id for i in imports.list_imports(actor=rao)] == [record.id]
    # Known elsewhere: the DRAO learns no id of a certificate outside their department.
    again = run_upload(
        stub_worker,
        actor=drao,
        org=acme,
        dept=it,
        uploads=[imports.Upload("y.pem", files.pem("leaf"))],
    )
    [row] = csv_rows(drao, again.id)
    assert (row["outcome"], row["certificate_id"]) == ("known", "")
    assert row["reason"] == "already in the inventory (outside this organization or department)"


def test_the_import_is_audited_and_bad_uploads_are_refused_whole(app, stub_worker, files):
    org = make_org("Acme")
    mrao = make_admin()
    with pytest.raises(DomainError, match="Choose at least one file"):
        imports.start_import(actor=mrao, organization_id=org.id, department_id=None, uploads=[])
    with pytest.raises(DomainError, match=r"empty\.pem is empty"):
        imports.start_import(
            actor=mrao, organization_id=org.id, department_id=None,
            uploads=[imports.Upload("ok.pem", files.pem("self")), imports.Upload("empty.pem", b"")],
        )  # fmt: skip
    app.config["CW_IMPORT_MAX_MEMBERS"] = 2
    with pytest.raises(DomainError, match=r"has 3 members, more than the limit of 2"):
        imports.start_import(
            actor=mrao, organization_id=org.id, department_id=None,
            uploads=[imports.Upload("many.zip", zip_of({f"{i}": b"x" for i in range(3)}))],
        )  # fmt: skip
    app.config["CW_IMPORT_MAX_UPLOAD_BYTES"] = 10
    with pytest.raises(DomainError, match="CW_IMPORT_MAX_UPLOAD_BYTES"):
        imports.start_import(
            actor=mrao, organization_id=org.id, department_id=None,
            uploads=[imports.Upload("ok.pem", files.pem("self"))],
        )  # fmt: skip
    db.session.rollback()
    assert db.session.scalar(select(func.count(CertificateImport.id))) == 0
    app.config["CW_IMPORT_MAX_UPLOAD_BYTES"] = 1 << 20
    record = run_upload(
        stub_worker, actor=mrao, org=org, uploads=[imports.Upload("ok.pem", files.pem("self"))]
    )
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "certificate.import")
    ).scalar_one()
    assert (event.object_id, event.organization_id) == (str(record.id), org.id)
    assert event.after["files"] == ["ok.pem"]


def test_the_system_may_import_anywhere(app, stub_worker, files):
    org = make_org("Acme")
    record = run_upload(
        stub_worker, actor=SYSTEM, org=org, uploads=[imports.Upload("s.pem", files.pem("root"))]
    )
    assert record.counts["imported"] == 1


def test_a_key_we_certified_and_an_imported_certificate_share_is_flagged_on_both(app, stub_worker):
    from tests.factories import issued_in_acme

    mrao, org, _, ours, key = issued_in_acme(stub_worker)
    assert ours.spki_sha256 != ""
    # The same key in a self-signed certificate someone made on the side.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "side.acme.example")])
    now = dt.datetime.now(dt.UTC)
    side = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    run_upload(
        stub_worker,
        actor=mrao,
        org=org,
        uploads=[imports.Upload("side.pem", side.public_bytes(Encoding.PEM))],
    )
    flagged = db.session.execute(
        select(CertificateFinding.certificate_id).where(CertificateFinding.code == "shared_key")
    ).scalars()
    assert sorted(flagged) == sorted(
        [ours.id, by_fingerprint(fp(side.public_bytes(Encoding.PEM))).id]
    )


def test_the_dashboard_counts_certificates_with_weak_or_shared_keys_in_scope(
    app, client, stub_worker, files
):
    from tests.conftest import login
    from tests.factories import PASSWORD

    acme, other = make_org("Acme"), make_org("Other")
    make_admin("rao", Role.RAO, org=other)
    run_upload(
        stub_worker,
        actor=make_admin(),
        org=acme,
        uploads=[
            imports.Upload(
                "keys.pem", files.pem("rsa1024") + files.pem("shared1") + files.pem("shared2")
            )
        ],
    )
    login(client, "mrao", PASSWORD)
    label = "Certificates with weak or shared keys"
    assert f'data-count="{label}">3<' in client.get("/admin/").get_data(as_text=True)
    client.post("/logout")
    other_client = app.test_client()
    login(other_client, "rao", PASSWORD)
    assert f'data-count="{label}">0<' in other_client.get("/admin/").get_data(as_text=True)


def test_two_certificates_with_one_issuer_and_serial_are_flagged_on_both(app, stub_worker, files):
    one = files.sign("dup1", "/CN=dup-one.test", issuer="inter", serial="4242")
    # The second arrives in a later import: the first, already stored, is flagged too.
    run_upload(
        stub_worker,
        actor=make_admin(),
        org=make_org("Acme"),
        uploads=[imports.Upload("1.pem", one)],
    )
    two = files.sign("dup2", "/CN=dup-two.test", issuer="inter", serial="4242")
    from app.models import Admin

    mrao = db.session.execute(select(Admin)).scalar_one()
    org_id = db.session.execute(select(Certificate.organization_id)).scalars().first()
    imports.start_import(
        actor=mrao, organization_id=org_id, department_id=None,
        uploads=[imports.Upload("2.pem", two + files.pem("leaf"))],
    )  # fmt: skip
    db.session.commit()
    drain(stub_worker)
    flagged = db.session.execute(
        select(CertificateFinding.certificate_id).where(
            CertificateFinding.code == "duplicate_issuer_serial"
        )
    ).scalars()
    assert sorted(flagged) == sorted(by_fingerprint(fp(p)).id for p in (one, two))


def test_an_import_batch_flags_reused_serials_it_brings_and_finds(app, files):
    # What the batches write themselves (the hygiene sweep would recompute it): a stored
    # certificate and one in the upload with one issuer and serial, and two in the upload.
    org = make_org("Acme")
    stored = files.sign("dup1", "/CN=dup-one.test", issuer="inter", serial="4242")
    _stored_unassigned(stored)
    brought = files.sign("dup2", "/CN=dup-two.test", issuer="inter", serial="4242")
    pair = [files.sign(f"dup{i}", f"/CN=dup-{i}.test", issuer="inter", serial="77") for i in (3, 4)]
    _read_without_sweep(
        org, [imports.Upload("dups.pem", brought + pair[0] + pair[1] + files.pem("leaf"))]
    )
    flagged = db.session.execute(
        select(CertificateFinding.certificate_id).where(
            CertificateFinding.code == "duplicate_issuer_serial"
        )
    ).scalars()
    assert sorted(flagged) == sorted(by_fingerprint(fp(p)).id for p in (stored, brought, *pair))


def test_imported_ca_certificates_are_listed_under_other_certificates_in_scope(
    app, client, stub_worker, files
):
    from tests.conftest import login
    from tests.factories import PASSWORD

    acme, other = make_org("Acme"), make_org("Other")
    make_admin("rao", Role.RAO, org=other)
    run_upload(
        stub_worker,
        actor=make_admin(),
        org=acme,
        uploads=[imports.Upload("chain.pem", files.pem("inter") + files.pem("root"))],
    )
    inter = by_fingerprint(fp(files.pem("inter")))
    assert inter.cert_type is None and inter.is_ca
    login(client, "mrao", PASSWORD)
    page = client.get("/admin/other_certs/").get_data(as_text=True)
    assert f"/admin/other_certs/details/?id={inter.id}" in page
    details = client.get(f"/admin/other_certs/details/?id={inter.id}")
    assert details.status_code == 200
    shown = details.get_data(as_text=True)
    assert inter.common_name in shown and 'id="cw-cert-status">External<' in shown
    client.post("/logout")
    outsider = app.test_client()
    login(outsider, "rao", PASSWORD)
    page = outsider.get("/admin/other_certs/").get_data(as_text=True)
    assert f"details/?id={inter.id}" not in page
    refused = outsider.get(f"/admin/other_certs/details/?id={inter.id}", follow_redirects=False)
    assert refused.status_code in (302, 404)
    assert f"id={inter.id}" not in outsider.get("/admin/other_certs/").get_data(as_text=True)


def test_certificate_lists_show_each_certificates_findings_and_export_them(
    app, client, stub_worker, files
):
    from tests.conftest import login
    from tests.factories import PASSWORD

    acme = make_org("Acme")
    run_upload(
        stub_worker,
        actor=make_admin(),
        org=acme,
        uploads=[imports.Upload("weak.pem", files.pem("rsa1024"))],
    )
    weak = by_fingerprint(fp(files.pem("rsa1024")))
    errors = db.session.execute(
        select(func.count(CertificateFinding.id)).where(
            CertificateFinding.certificate_id == weak.id, CertificateFinding.severity == "error"
        )
    ).scalar_one()
    assert errors >= 1  # weak_key_size, and pkilint's own
    login(client, "mrao", PASSWORD)
    page = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert f'/admin/ssl_certs/details/?id={weak.id}#cw-findings">{errors} error' in page
    exported = client.get("/admin/ssl_certs/export/csv/").get_data(as_text=True)
    assert f"{errors} error" in exported
