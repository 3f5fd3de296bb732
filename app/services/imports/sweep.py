"""The hygiene sweep: every certificate in the inventory (issued, discovered, imported) is
checked by the current version of the hygiene checks, in the background, once.

What a check finds is stored in certificate_findings, as an import does: parse findings
(app.pki.bundles), key and signature findings (app.pki.hygiene), a Debian weak key
(openssl-blacklist fingerprints loaded with `ca weak-keys load`), the findings only the
inventory shows (shared keys, reused issuer and serial, blocklisted keys) and the findings
of the pkilint validator that matches the certificate (source "lint": its CA/B Forum
validator for TLS server and S/MIME certificates and CA certificates, RFC 5280 for the
rest).

certificates.hygiene_version says which version of the checks last looked at a
certificate: new certificates start at 0, so the sweep (a system job every
CW_HYGIENE_SWEEP_SECONDS, and after every import) finds them by an indexed range; raising
HYGIENE_VERSION makes it check the whole inventory again. start_sweep() cuts the
certificates to check into ranges of RANGE_SIZE ids, one job each, so that more workers
finish sooner; run_range() checks one range in one transaction and is safe to run twice
(findings are upserts, and a certificate already at the current version is skipped).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import bindparam, delete, func, literal, or_, select, update

from app.extensions import db
from app.models import (
    BlockedKey,
    Certificate,
    CertificateFinding,
    CertType,
    DebianWeakKey,
    Job,
    JobStatus,
)
from app.models.types import utcnow
from app.pki import bundles, hygiene, lint, weak_keys
from app.pki.bundles import Finding
from app.pki.profiles import CertKind
from app.services.ca import blocked_keys
from app.services.imports import findings
from app.services.platform import jobs

log = logging.getLogger(__name__)

# Raise when a check is added or changed: every certificate is checked again.
# 2: shared keys split by organization (shared_key_other_org) and key_on_hosts.
HYGIENE_VERSION: Final = 2
SWEEP_KIND: Final = "hygiene_sweep"
RANGE_KIND: Final = "hygiene_range"
RANGE_SIZE: Final = 200
# Findings that the sweep recomputes from scratch (those from reading the certificate and
# from the inventory are only ever added: they cannot go away).
RECOMPUTED_SOURCES: Final = ("key", "lint")
# ... and these inventory findings, whose meaning a version changed (version 2: a
# "shared_key" with another organization's certificate became "shared_key_other_org").
RECOMPUTED_CODES: Final = ("shared_key", "shared_key_other_org", "key_on_hosts")
# pkilint's severities as stored; INFO findings are not kept (they describe, not warn).
LINT_SEVERITIES: Final = {
    "FATAL": "error",
    "ERROR": "error",
    "WARNING": "warning",
    "NOTICE": "notice",
}
_KINDS: Final = {
    CertType.SSL: CertKind.SSL,
    CertType.CLIENT: CertKind.CLIENT,
    CertType.CODE_SIGNING: CertKind.CODE_SIGNING,
    CertType.DEVICE: CertKind.DEVICE,
}
_KINDS_BY_USAGE: Final = {
    "ssl": CertKind.SSL,
    "client": CertKind.CLIENT,
    "code_signing": CertKind.CODE_SIGNING,
}


def due_count() -> int:
    """How many certificates the current checks have not looked at yet."""
    return int(
        db.session.execute(
            select(func.count(Certificate.id)).where(Certificate.hygiene_version < HYGIENE_VERSION)
        ).scalar_one()
    )


def _ranges_in_flight() -> bool:
    waiting = db.session.execute(
        select(Job.id)
        .where(
            Job.kind == RANGE_KIND,
            Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
        )
        .limit(1)
    ).first()
    return waiting is not None


def start_sweep() -> int:
    """One job per range of RANGE_SIZE certificates still to check (messages after
    commit); how many. Nothing when an earlier sweep's ranges are still waiting or
    running: they will reach the same certificates."""
    if _ranges_in_flight():
        return 0
    due = (
        select(
            Certificate.id.label("id"),
            func.row_number().over(order_by=Certificate.id).label("n"),
        )
        .where(Certificate.hygiene_version < HYGIENE_VERSION)
        .subquery()
    )
    starts = [
        int(i)
        for i in db.session.execute(
            select(due.c.id).where((due.c.n - 1) % RANGE_SIZE == 0).order_by(due.c.id)
        ).scalars()
    ]
    if not starts:
        return 0
    bounds = [(low, high - 1) for low, high in itertools.pairwise(starts)]
    last = db.session.execute(
        select(func.max(Certificate.id)).where(Certificate.hygiene_version < HYGIENE_VERSION)
    ).scalar_one()
    bounds.append((starts[-1], int(last)))
    jobs.create_jobs(kind=RANGE_KIND, payloads=[{"low": low, "high": high} for low, high in bounds])
    return len(bounds)


@dataclass(frozen=True)
class RangeResult:
    checked: int
    findings: int


def run_range(low: int, high: int) -> RangeResult:
    """Check the certificates of one id range that the current checks have not looked at,
    store their findings and mark them checked; the caller commits."""
    rows = db.session.execute(
        select(
            Certificate.id,
            Certificate.der,
            Certificate.cert_type,
            Certificate.is_ca,
            Certificate.hygiene_version,
        )
        .where(
            Certificate.id.between(low, high),
            Certificate.hygiene_version < HYGIENE_VERSION,
        )
        .order_by(Certificate.id)
    ).all()
    if not rows:
        return RangeResult(0, 0)
    ids = [row.id for row in rows]
    found: list[findings.Found] = []
    moduli: dict[int, int] = {}
    for row in rows:
        try:
            cert = bundles.load_certificate(row.der)
        except ValueError as exc:  # stored before the checks knew better: say so, go on
            found.append(
                findings.Found(
                    row.id,
                    Finding("key_unreadable", "error", f"The certificate cannot be read ({exc})."),
                    "key",
                )
            )
            continue
        found += [findings.Found(row.id, f, "parse") for f in bundles.parse_findings(cert)]
        found += [findings.Found(row.id, f, "key") for f in hygiene.key_findings(cert)]
        found += [
            findings.Found(row.id, f, "lint") for f in lint_findings(cert, row.cert_type, row.is_ca)
        ]
        modulus = _rsa_modulus(cert)
        if modulus is not None:
            moduli[row.id] = modulus
    fingerprints = {
        cert_id: weak_keys.debian_fingerprint(modulus) for cert_id, modulus in moduli.items()
    }
    found += _debian_findings(fingerprints)
    known = _key_findings_of(ids)
    # Key and lint findings are recomputed (a newer check may no longer find one); the
    # delete and the inserts are one transaction with the version mark.
    db.session.execute(
        delete(CertificateFinding).where(
            CertificateFinding.certificate_id.in_(ids),
            or_(
                CertificateFinding.source.in_(RECOMPUTED_SOURCES),
                CertificateFinding.code.in_(RECOMPUTED_CODES),
            ),
        )
    )
    found += findings.inventory_findings(ids)
    found += findings.key_on_hosts_findings(ids)
    stored = findings.store(found)
    first_check = {row.id for row in rows if row.hygiene_version == 0}
    findings.notify(
        (f.certificate_id, f.finding.code)
        for f in found
        if f.finding.code in findings.KEY_CODES
        and (f.certificate_id in first_check or (f.certificate_id, f.finding.code) not in known)
    )
    db.session.execute(
        update(Certificate)
        .where(Certificate.id.in_(ids))
        .values(hygiene_version=HYGIENE_VERSION)
        .execution_options(synchronize_session=False)
    )
    if fingerprints:
        db.session.execute(
            update(Certificate.__table__)
            .where(Certificate.__table__.c.id == bindparam("b_cert_id"))
            .values(debian_fingerprint=bindparam("b_debian")),
            [{"b_cert_id": c, "b_debian": f} for c, f in fingerprints.items()],
        )
    return RangeResult(len(ids), stored)


def lint_findings(cert: x509.Certificate, cert_type: CertType | None, is_ca: bool) -> list[Finding]:
    """The findings of the pkilint validator that matches the certificate: CA certificates
    by the BR CA profiles, the others by their type (or, for a certificate of no known
    type, by what its extended key usage says), RFC 5280 when nothing tells."""
    if is_ca or bundles.certificate_type(cert) == "ca":
        kind = None
    else:
        kind = _KINDS.get(cert_type) if cert_type is not None else None
        kind = kind or _KINDS_BY_USAGE.get(bundles.certificate_type(cert), CertKind.DEVICE)
    try:
        results = lint.lint_certificate(cert, kind)
    except Exception as exc:  # pkilint failing on one certificate must not stop the range
        log.warning("pkilint failed on a certificate: %s", exc)
        return [
            Finding(
                "lint_failed",
                "notice",
                f"pkilint could not check this certificate ({type(exc).__name__}: {exc}).",
            )
        ]
    out: dict[str, Finding] = {}
    for result in results:
        severity = LINT_SEVERITIES.get(result.severity)
        if severity is None or result.is_allowed:  # allow-listed: docs/pki.md says why
            continue
        detail = result.message or ""
        if result.path:
            detail = f"{detail} (at {result.path})" if detail else f"at {result.path}"
        code = result.code[:128]
        if code in out:  # the same code at several places: one finding, every place
            previous = out[code]
            out[code] = Finding(code, previous.severity, f"{previous.detail}; {detail}"[:2000])
        else:
            out[code] = Finding(code, severity, detail[:2000])
    return list(out.values())


def _rsa_modulus(cert: x509.Certificate) -> int | None:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):
        return None
    return key.public_numbers().n if isinstance(key, rsa.RSAPublicKey) else None


def _debian_findings(fingerprints: dict[int, str]) -> list[findings.Found]:
    weak = blocked_keys.debian_weak_among(fingerprints.values())
    return [
        findings.Found(cert_id, DEBIAN_WEAK, "key")
        for cert_id, fingerprint in sorted(fingerprints.items())
        if fingerprint in weak
    ]


DEBIAN_WEAK: Final = Finding(
    "debian_weak_key",
    "error",
    "A Debian weak key (CVE-2008-0166: Debian's OpenSSL of 2006-2008 could make only a few "
    "hundred thousand keys, all published): its private key is known. Replace it (CA/B "
    "Forum BR §6.1.1.3(5.1)).",
)


def checked(certificate_ids: Sequence[int]) -> int:
    """How many of these certificates the current checks have looked at (for tests and
    the import page)."""
    if not certificate_ids:
        return 0
    return int(
        db.session.execute(
            select(func.count(Certificate.id)).where(
                Certificate.id.in_(list(certificate_ids)),
                Certificate.hygiene_version >= HYGIENE_VERSION,
            )
        ).scalar_one()
    )


def _key_findings_of(ids: Sequence[int]) -> set[tuple[int, str]]:
    return {
        (cert_id, code)
        for cert_id, code in db.session.execute(
            select(CertificateFinding.certificate_id, CertificateFinding.code).where(
                CertificateFinding.certificate_id.in_(list(ids)),
                CertificateFinding.code.in_(findings.KEY_CODES),
            )
        )
    }


def flag_listed(list_format: str) -> int:
    """After a key list was loaded: the finding on every certificate in the inventory whose
    key it lists, in one statement (no certificate is read again); how many were new."""
    now = utcnow()
    certs = Certificate.__table__
    if list_format == "debian":
        finding = DEBIAN_WEAK
        listed = certs.c.debian_fingerprint.in_(select(DebianWeakKey.fingerprint))
        source = "key"
    else:
        finding = findings.BLOCKED
        listed = certs.c.spki_sha256.in_(select(BlockedKey.spki_sha256))
        source = "inventory"
    rows = select(
        certs.c.id,
        literal(finding.code),
        literal(finding.severity),
        literal(source),
        literal(finding.detail),
        literal(now, type_=CertificateFinding.__table__.c.created_at.type),
    ).where(listed)
    flagged = certs.c.id.not_in(
        select(CertificateFinding.certificate_id).where(CertificateFinding.code == finding.code)
    )
    newly = list(db.session.execute(select(certs.c.id).where(listed, flagged)).scalars())
    count = findings.insert_selected(
        rows, ["certificate_id", "code", "severity", "source", "detail", "created_at"]
    )
    findings.notify((cert_id, finding.code) for cert_id in newly)
    return count
