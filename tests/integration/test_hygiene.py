"""The hygiene sweep over the whole inventory (issue 16 §3, §4): every certificate, issued,
discovered or imported, is checked once by the current checks in range jobs (stub worker,
real database): key and signature findings, pkilint findings by the matching validator,
Debian weak keys from an openssl-blacklist file (fingerprints checked against real
`openssl x509 -modulus`), and the CA refusing a listed key."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess

import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertificateFinding,
    CertOrigin,
    CertStatus,
    CertType,
    DebianWeakKey,
    Job,
    JobStatus,
    RequestMode,
    Role,
)
from app.pki import weak_keys
from app.services.errors import DomainError, Forbidden
from app.services.imports import findings, key_lists, sweep
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_org


def _cert(
    key, *, cn: str, hash_algorithm=None, days: int = 90, ca: bool = False, server: bool = True
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def _store(cert: x509.Certificate, *, org_id: int | None, cert_type=CertType.SSL) -> Certificate:
    """A discovered certificate in the inventory, as discovery stores one (no findings)."""
    der = cert.public_bytes(Encoding.DER)
    row = Certificate(
        fingerprint=hashlib.sha256(der).hexdigest(),
        der=der,
        cert_type=cert_type,
        origin=CertOrigin.DISCOVERED,
        status=CertStatus.EXTERNAL,
        organization_id=org_id,
        serial_hex=f"{cert.serial_number:x}",
        common_name=cert.subject.rfc4514_string()[3:],
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spki_sha256=weak_keys.spki_sha256(cert.public_key()),
    )
    db.session.add(row)
    db.session.commit()
    return row


def _codes(cert_id: int, source: str | None = None) -> set[str]:
    query = select(CertificateFinding.code).where(CertificateFinding.certificate_id == cert_id)
    if source is not None:
        query = query.where(CertificateFinding.source == source)
    return set(db.session.execute(query).scalars())


def _sweep(worker) -> None:
    sweep.start_sweep()
    db.session.commit()
    drain(worker)


def test_the_sweep_checks_discovered_and_issued_certificates_once_with_their_validator(
    app, stub_worker
):
    from tests.factories import issued_in_acme

    _, org, _, good, _ = issued_in_acme(stub_worker)
    weak = _store(_cert(rsa.generate_private_key(65537, 1024), cn="old.acme.test"), org_id=org.id)
    assert sweep.due_count() == 2
    _sweep(stub_worker)
    assert sweep.due_count() == 0
    assert _codes(weak.id, "key") == {"weak_key_size"}
    # pkilint's CA/B Forum TLS validator, by pkilint's own codes: RSA-1024 breaks the
    # Baseline Requirements.
    lint_weak = (
        db.session.execute(
            select(CertificateFinding).where(
                CertificateFinding.certificate_id == weak.id, CertificateFinding.source == "lint"
            )
        )
        .scalars()
        .all()
    )
    assert lint_weak, "pkilint found nothing in an RSA-1024 SHA-1 server certificate"
    assert any(f.severity == "error" for f in lint_weak)
    assert "cabf.rsa_modulus_invalid_length" in {f.code for f in lint_weak}
    # What we issue passes its validator (allow-listed findings are not stored).
    assert not _codes(good.id, "key") and not _codes(good.id, "lint")
    # Filters: "pkilint error" finds the weak one and not the good one.
    with_errors = set(
        db.session.execute(
            select(Certificate.id).where(findings.with_finding(findings.LINT_ERROR, actor=SYSTEM))
        ).scalars()
    )
    assert weak.id in with_errors and good.id not in with_errors
    # Twice-safe: another sweep finds nothing due, and a range run again changes nothing.
    before = db.session.execute(select(func.count(CertificateFinding.id))).scalar_one()
    assert sweep.start_sweep() == 0
    assert sweep.run_range(weak.id, good.id) == sweep.RangeResult(0, 0)
    assert db.session.execute(select(func.count(CertificateFinding.id))).scalar_one() == before


def test_ranges_are_cut_by_count_and_not_sent_twice(app, stub_worker, monkeypatch):
    monkeypatch.setattr(sweep, "RANGE_SIZE", 2)
    org = make_org("Acme")
    for i in range(5):
        _store(_cert(ec.generate_private_key(ec.SECP256R1()), cn=f"h{i}.acme.test"), org_id=org.id)
    assert sweep.start_sweep() == 3
    db.session.commit()
    # Ranges still waiting: a second sweep adds none (they reach the same certificates).
    assert sweep.start_sweep() == 0
    drain(stub_worker)
    done = db.session.execute(
        select(func.count(Job.id)).where(Job.kind == sweep.RANGE_KIND, Job.status == JobStatus.DONE)
    ).scalar_one()
    assert done == 3
    assert sweep.due_count() == 0


def _openssl_modulus_fingerprint(cert: x509.Certificate, tmp_path) -> str:
    """What Debian's openssl-vulnkey computes: SHA-1 of openssl's own Modulus= line."""
    path = tmp_path / "c.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    line = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-modulus"],
        check=True,
        capture_output=True,
    ).stdout
    assert line.startswith(b"Modulus=")
    return hashlib.sha1(line).hexdigest()[-20:]


def test_a_debian_weak_key_list_flags_certificates_and_refuses_the_key(app, stub_worker, tmp_path):
    from app.services.certificates import enrollment
    from app.services.structure import domains
    from tests.factories import make_pki

    mrao = make_admin()
    org = make_org("Acme", city="Berlin", state="Berlin")
    domains.create_domain(
        actor=mrao, name="acme.example", organization_id=org.id, types=list(CertType)
    )
    db.session.commit()
    key = rsa.generate_private_key(65537, 2048)
    cert = _cert(key, cn="legacy.acme.example")
    listed = _store(cert, org_id=org.id)
    other = _store(
        _cert(rsa.generate_private_key(65537, 2048), cn="fine.acme.example"), org_id=org.id
    )
    _sweep(stub_worker)  # checked before the list exists: nothing Debian about them yet
    assert "debian_weak_key" not in _codes(listed.id)
    fingerprint = weak_keys.debian_fingerprint(key.public_key().public_numbers().n)
    assert fingerprint == _openssl_modulus_fingerprint(cert, tmp_path)
    lines = [
        "# blacklist.RSA-2048 as Debian's openssl-blacklist ships it",
        fingerprint,
        "0" * 20,
        "",
    ]
    loaded = key_lists.load_key_list(
        actor=mrao, lines=lines, list_format="debian", source="blacklist.RSA-2048"
    )
    db.session.commit()
    assert (loaded.read, loaded.added, loaded.total, loaded.flagged) == (2, 2, 2, 1)
    assert "debian_weak_key" in _codes(listed.id)
    assert "debian_weak_key" not in _codes(other.id)
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "weak_keys.loaded")
    ).scalar_one()
    assert event.after["added"] == 2 and event.after["certificates_flagged"] == 1
    # Loading it again adds nothing and flags nothing new.
    again = key_lists.load_key_list(
        actor=mrao, lines=lines, list_format="debian", source="blacklist.RSA-2048"
    )
    assert (again.added, again.flagged) == (0, 0)
    # The CA refuses the key from now on (BR 6.1.1.3(5.1)).
    _, _, profile = make_pki()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "new.acme.example")]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(DomainError, match="Debian weak key"):
        enrollment.submit_request(
            actor=mrao,
            data=enrollment.RequestData(
                organization_id=org.id,
                profile_id=profile.id,
                term_days=90,
                mode=RequestMode.CSR,
                csr=csr.public_bytes(Encoding.PEM),
                eula_accepted=True,
            ),
        )


def test_a_malformed_list_is_refused_whole_and_only_an_mrao_loads_lists(app):
    mrao = make_admin()
    org = make_org("Acme")
    rao = make_admin(login="rao", role=Role.RAO, org=org)
    good = "ab" * 10
    with pytest.raises(DomainError, match=r"line 3: expected 20 hexadecimal digits"):
        key_lists.load_key_list(
            actor=mrao, lines=[good, "# c", "not-a-fingerprint"], list_format="debian", source="x"
        )
    db.session.rollback()
    assert db.session.execute(select(func.count(DebianWeakKey.id))).scalar_one() == 0
    with pytest.raises(DomainError, match="Unknown key list format"):
        key_lists.load_key_list(actor=mrao, lines=[good], list_format="pgp", source="x")
    with pytest.raises(Forbidden):
        key_lists.load_key_list(actor=rao, lines=[good], list_format="debian", source="x")


def test_the_command_line_loads_lists_and_runs_the_sweep(app, tmp_path):
    make_admin()
    org = make_org("Acme")
    key = rsa.generate_private_key(65537, 2048)
    listed = _store(_cert(key, cn="cli.acme.test"), org_id=org.id)
    runner = app.test_cli_runner()
    result: Result = runner.invoke(args=["cert", "hygiene"])
    assert result.exit_code == 0, result.output
    assert "Checked 1 certificates" in result.output
    spki_list = tmp_path / "compromised.txt"
    spki_list.write_text(weak_keys.spki_sha256(key.public_key()) + "\n")
    result = runner.invoke(
        args=["ca", "weak-keys", "load", str(spki_list), "--format", "spki-sha256"]
    )
    assert result.exit_code == 0, result.output
    assert "1 certificates in the inventory newly flagged" in result.output
    db.session.expire_all()
    assert "blocked_key" in _codes(listed.id)
    bad = tmp_path / "bad.txt"
    bad.write_text("zz\n")
    result = runner.invoke(args=["ca", "weak-keys", "load", str(bad), "--format", "debian"])
    assert result.exit_code != 0
    assert "line 1: expected 20 hexadecimal digits" in result.output


def test_a_rule_tells_of_weak_shared_or_listed_keys_once(app, stub_worker, tmp_path):
    from app.services.notifications import rules
    from app.services.platform import mail
    from tests import notify

    mrao = make_admin()
    org = make_org("Acme")
    rules.save_rule(
        actor=mrao,
        data=rules.RuleData(
            name="keys", type="key_finding", places=[(org.id, None)], roles=["admins", "mrao"]
        ),
    )
    db.session.commit()
    for controller, inbox in notify.smtp_server():
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@x.test")
        weak = _store(
            _cert(rsa.generate_private_key(65537, 1024), cn="old.acme.test"), org_id=org.id
        )
        key = rsa.generate_private_key(65537, 2048)
        listed = _store(_cert(key, cn="listed.acme.test"), org_id=org.id)
        _store(_cert(ec.generate_private_key(ec.SECP256R1()), cn="fine.acme.test"), org_id=org.id)
        _sweep(stub_worker)
        mail.dispatch_due()
        db.session.commit()
        drain(stub_worker)
        subjects = sorted(str(m["Subject"]).strip() for m in inbox.to("mrao@example.com"))
        assert subjects == ["Weak, shared or compromised key found: old.acme.test"]
        # A list loaded later: its certificate is told of at once, the weak one not again.
        key_lists.load_key_list(
            actor=mrao,
            lines=[weak_keys.spki_sha256(key.public_key())],
            list_format="spki-sha256",
            source="compromised.txt",
        )
        db.session.commit()
        drain(stub_worker)
        mail.dispatch_due()
        db.session.commit()
        drain(stub_worker)
        subjects = sorted(str(m["Subject"]).strip() for m in inbox.to("mrao@example.com"))
        assert subjects == [
            "Weak, shared or compromised key found: listed.acme.test",
            "Weak, shared or compromised key found: old.acme.test",
        ]
        assert listed.id and weak.id


def test_a_key_shared_across_organizations_is_shown_to_mraos_only(app, client, stub_worker):
    """Two certificates of Acme and one of Other share a key: Acme's carry "shared_key"
    (and, for the MRAO, "shared_key_other_org"); an RAO of Other sees no sharing at all,
    in the details, the list column, the filter, its choices and the dashboard count."""
    from tests.conftest import login
    from tests.factories import PASSWORD

    mrao = make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    rao = make_admin("rao-other", Role.RAO, org=other)
    key = ec.generate_private_key(ec.SECP256R1())
    one = _store(_cert(key, cn="one.acme.test"), org_id=acme.id)
    two = _store(_cert(key, cn="two.acme.test"), org_id=acme.id)
    theirs = _store(_cert(key, cn="other.test"), org_id=other.id)
    _sweep(stub_worker)
    inventory = {"shared_key", "shared_key_other_org"}
    assert _codes(one.id, "inventory") == _codes(two.id, "inventory") == inventory
    assert _codes(theirs.id, "inventory") == {"shared_key_other_org"}

    def shown(actor, cert_id):
        return {f.code for f in findings.of_certificate(cert_id, actor=actor)} & inventory

    assert shown(mrao, theirs.id) == {"shared_key_other_org"}
    assert shown(rao, theirs.id) == set()
    as_rao = findings.counts_by_certificate([theirs.id], actor=rao)[theirs.id]
    as_mrao = findings.counts_by_certificate([theirs.id], actor=mrao)[theirs.id]
    assert as_mrao == {**as_rao, "warning": as_rao.get("warning", 0) + 1}
    hidden = select(Certificate.id).where(findings.with_finding("shared_key_other_org", actor=rao))
    assert list(db.session.execute(hidden).scalars()) == []
    assert findings.count_with_findings(actor=rao) == 0
    assert findings.count_with_findings(actor=mrao) == 3
    # The console, as each of them.
    login(client, "rao-other", PASSWORD)
    page = client.get(f"/admin/ssl_certs/details/?id={theirs.id}").get_data(as_text=True)
    assert "other.test" in page and 'data-code="shared_key_other_org"' not in page
    listing = client.get("/admin/ssl_certs/").get_data(as_text=True)
    # (the label would be among the Finding filter's choices)
    assert "other.test" in listing and "Key shared with another organization" not in listing
    master = app.test_client()
    login(master, "mrao", PASSWORD)
    page = master.get(f"/admin/ssl_certs/details/?id={theirs.id}").get_data(as_text=True)
    assert 'data-code="shared_key_other_org"' in page
    listing = master.get("/admin/ssl_certs/").get_data(as_text=True)
    assert "Key shared with another organization" in listing


def test_a_key_shared_with_another_organization_is_told_to_mrao_rules_only(app, stub_worker):
    from app.services.notifications import rules
    from app.services.platform import mail
    from tests import notify

    mrao = make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    rao = make_admin("rao-other", Role.RAO, org=other)
    rules.save_rule(
        actor=mrao,
        data=rules.RuleData(name="all", type="key_finding", applies_to_all=True, roles=["mrao"]),
    )
    rules.save_rule(
        actor=rao,
        data=rules.RuleData(
            name="ours", type="key_finding", places=[(other.id, None)], roles=["admins"]
        ),
    )
    db.session.commit()
    for controller, inbox in notify.smtp_server():
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@x.test")
        key = ec.generate_private_key(ec.SECP256R1())
        _store(_cert(key, cn="one.acme.test"), org_id=acme.id)
        _store(_cert(key, cn="other.test"), org_id=other.id)
        _sweep(stub_worker)
        mail.dispatch_due()
        db.session.commit()
        drain(stub_worker)
        told = sorted(str(m["Subject"]).strip() for m in inbox.to("mrao@example.com"))
        assert told == [
            "Weak, shared or compromised key found: one.acme.test",
            "Weak, shared or compromised key found: other.test",
        ]
        assert inbox.to(rao.email) == []


def test_the_sweep_after_an_upgrade_moves_old_cross_organization_sharing_out_of_sight(
    app, stub_worker
):
    """Version 1 flagged a key shared across organizations "shared_key", which RAOs see:
    checked again by version 2, it becomes "shared_key_other_org"."""
    from app.models import CertificateFinding

    acme, other = make_org("Acme"), make_org("Other")
    key = ec.generate_private_key(ec.SECP256R1())
    one = _store(_cert(key, cn="one.acme.test"), org_id=acme.id)
    two = _store(_cert(key, cn="other.test"), org_id=other.id)
    for cert in (one, two):
        cert.hygiene_version = 1
        db.session.add(
            CertificateFinding(
                certificate_id=cert.id,
                code="shared_key",
                severity="warning",
                source="inventory",
                detail="old",
            )
        )
    db.session.commit()
    _sweep(stub_worker)
    assert _codes(one.id, "inventory") == _codes(two.id, "inventory") == {"shared_key_other_org"}
    assert sweep.due_count() == 0
