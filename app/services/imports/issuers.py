"""Linking imported certificates to their issuers in the inventory: a certificate whose
subject is the child's issuer name and whose key verifies the child's signature."""

from __future__ import annotations

import hashlib
import warnings
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models import Certificate, ImportedCertificate
from app.services import bulk

BATCH: Final = 500


def link_issuers(import_id: int) -> None:
    """Link each certificate of this import to its issuer in the inventory: a certificate
    whose subject is its issuer name and whose key verifies its signature."""
    last = 0
    while True:
        bulk.plan_for_now()
        children = db.session.execute(
            select(Certificate.id, Certificate.der, Certificate.issuer_dn)
            .join(ImportedCertificate, ImportedCertificate.certificate_id == Certificate.id)
            .where(
                ImportedCertificate.import_id == import_id,
                Certificate.id > last,
                Certificate.issuer_id.is_(None),
                Certificate.is_self_signed.is_(False),
                Certificate.issuer_dn != "",
                _issuer_name_known(),
            )
            .order_by(Certificate.id)
            .limit(BATCH)
        ).all()
        if not children:
            return
        last = children[-1].id
        names = {c.issuer_dn for c in children}
        candidates: dict[str, list[tuple[int, x509.Certificate]]] = {}
        for cert_id, der, subject in db.session.execute(
            select(Certificate.id, Certificate.der, Certificate.subject_dn).where(
                *_subject_among(names)
            )
        ):
            try:
                loaded = x509.load_der_x509_certificate(der)
            except ValueError:
                continue
            candidates.setdefault(subject, []).append((cert_id, loaded))
        for child in children:
            issuer = _issuer_of(child.der, candidates.get(child.issuer_dn, []), child.id)
            if issuer is not None:
                db.session.execute(
                    update(Certificate).where(Certificate.id == child.id).values(issuer_id=issuer)
                )
        db.session.commit()


def _issuer_name_known() -> ColumnElement[bool]:
    """Some other certificate has the child's issuer name as its subject: the only
    children worth loading (an import of leaves whose CA is not in the inventory reads
    no certificate bodies here)."""
    issuer = aliased(Certificate)
    where = [issuer.subject_dn == Certificate.issuer_dn, issuer.id != Certificate.id]
    if db.session.get_bind().dialect.name == "postgresql":
        where.append(func.md5(issuer.subject_dn) == func.md5(Certificate.issuer_dn))
    return exists(select(issuer.id).where(*where))


def _subject_among(names: set[str]) -> list[ColumnElement[bool]]:
    """Certificates whose subject is one of ``names``. On PostgreSQL through the index on
    md5(subject_dn) (a subject may be longer than a b-tree entry may be); without it every
    batch of children read the whole inventory, which made linking quadratic."""
    where = [Certificate.subject_dn.in_(names)]
    if db.session.get_bind().dialect.name == "postgresql":
        digests = [hashlib.md5(n.encode(), usedforsecurity=False).hexdigest() for n in names]
        where.append(func.md5(Certificate.subject_dn).in_(digests))
    return where


def _issuer_of(
    der: bytes, candidates: list[tuple[int, x509.Certificate]], own_id: int
) -> int | None:
    if not candidates:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
    for cert_id, candidate in candidates:
        if cert_id == own_id:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
            continue  # a wrong candidate, or an algorithm cryptography cannot verify
        return cert_id
    return None
