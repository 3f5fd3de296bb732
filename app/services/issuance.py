"""Issuance: turn a batch of Approved requests into stored, downloadable certificates.

One transaction per batch: serials are reserved (unique per CA) before anything is signed,
certificates are bulk-inserted, requests move Approved -> Issued by a conditional update
(a retried or duplicated batch that finds them Issued stores nothing), audit events and
collection mails are written, then everything commits at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    Certificate,
    CertificateProfile,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    LintMode,
    RequestMode,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki import issue, keys, keystore, names
from app.pki.errors import PkiError
from app.pki.issuer import Issuer
from app.pki.profiles import LeafProfile
from app.services import audit, ca, mail, revocation
from app.services.profiles import KIND_OF

KEY_ALGORITHM = {
    "RSA-2048": ("RSA", 2048),
    "RSA-3072": ("RSA", 3072),
    "RSA-4096": ("RSA", 4096),
    "EC-P256": ("EC", 256),
    "EC-P384": ("EC", 384),
}


@dataclass
class BatchResult:
    issued: list[int] = field(default_factory=list)  # certificate ids
    failed: dict[int, str] = field(default_factory=dict)  # request id -> reason
    skipped: list[int] = field(default_factory=list)  # not Approved any more

    def summary(self) -> str:
        return f"{len(self.issued)} issued, {len(self.failed)} failed, {len(self.skipped)} skipped"


def _should_lint(profile: CertificateProfile, index: int) -> bool:
    if profile.lint_mode == LintMode.EVERY:
        return True
    position = profile.issued_since_change + index
    return position == 0 or position % max(1, profile.lint_sample_n) == 0


def _subject(req: CertificateRequest) -> Any:
    s = req.subject
    return names.build_subject(
        common_name=s.get("CN"),
        organization=s.get("O"),
        organizational_unit=s.get("OU"),
        locality=s.get("L"),
        state=s.get("ST"),
        country=s.get("C"),
    )


def _row(
    req: CertificateRequest,
    cert: Any,
    der: bytes,
    issuer: Issuer,
    profile: CertificateProfile,
    sealed: bytes | None,
    token_hash: str,
) -> dict[str, Any]:
    algorithm, size = KEY_ALGORITHM.get(req.key_type, ("", None))
    return {
        "fingerprint": hashlib.sha256(der).hexdigest(),
        "der": der,
        "cert_type": req.cert_type,
        "origin": CertOrigin.ISSUED,
        "status": CertStatus.ISSUED,
        "organization_id": req.organization_id,
        "department_id": req.department_id,
        "ca_id": profile.ca_id,
        "profile_id": profile.id,
        "request_id": req.id,
        "serial_hex": f"{cert.serial_number:x}",
        "subject_dn": cert.subject.rfc4514_string(),
        "common_name": req.common_name,
        "subject_o": req.subject.get("O", ""),
        "subject_ou": req.subject.get("OU", ""),
        "issuer_dn": issuer.name.rfc4514_string(),
        "issuer_cn": issuer.name.rfc4514_string().split("CN=", 1)[-1].split(",", 1)[0],
        "sans": req.sans,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "key_algorithm": algorithm,
        "key_size": size,
        "signature_algorithm": f"{issuer.signature_hash.value} with {'RSA' if issuer.key_type.startswith('RSA') else 'ECDSA'}",
        "sealed_key": sealed,
        "collect_token_hash": token_hash,
        "auto_renew": req.auto_renew,
        "renew_days_before": req.renew_days_before,
        "renewal_state": "Auto-renew on" if req.auto_renew else "",
        "created_at": utcnow(),
    }


def issue_requests(request_ids: Sequence[int]) -> BatchResult:
    """Issue every still-Approved request of the batch. The caller commits."""
    result = BatchResult()
    reqs = (
        db.session.execute(
            select(CertificateRequest)
            .where(CertificateRequest.id.in_(list(request_ids)))
            .options(
                selectinload(CertificateRequest.profile).selectinload(CertificateProfile.ca),
                selectinload(CertificateRequest.organization),
            )
            .order_by(CertificateRequest.id)
        )
        .scalars()
        .all()
    )
    pending = [r for r in reqs if r.status == RequestStatus.APPROVED]
    result.skipped = [r.id for r in reqs if r.status != RequestStatus.APPROVED]
    by_profile: dict[int, list[CertificateRequest]] = defaultdict(list)
    for req in pending:
        by_profile[req.profile_id].append(req)
    rows: list[dict[str, Any]] = []
    tokens: dict[int, str] = {}
    now = issue.utc_now()
    keks = ca.keks()
    for group in by_profile.values():
        profile = group[0].profile
        try:
            issuer = ca.load_issuer(profile.ca)
        except Exception as exc:  # a retired CA or an unsealable key fails the whole group
            for req in group:
                result.failed[req.id] = str(getattr(exc, "message", exc))
            continue
        leaf = LeafProfile(
            KIND_OF[profile.cert_type], include_client_auth=profile.include_client_auth
        )
        serials = ca.reserve_serials(profile.ca, len(group))
        for index, (req, serial) in enumerate(zip(group, serials, strict=True)):
            sealed = None
            try:
                if req.mode == RequestMode.KEYGEN:
                    private_key = keys.generate_private_key(keys.parse_key_type(req.key_type))
                    public_key = private_key.public_key()
                    sealed = keystore.seal_private_key(private_key, keks)
                else:
                    public_key = serialization.load_der_public_key(req.public_key_der or b"")
                cert = issue.issue_leaf(
                    issuer,
                    public_key=public_key,
                    subject=_subject(req),
                    alt_names=names.parse_alt_names(req.sans),  # type: ignore[arg-type]
                    profile=leaf,
                    serial=serial,
                    term_days=req.term_days,
                    now=now,
                    allowed_key_types=profile.key_types,
                    lint=_should_lint(profile, index),  # type: ignore[arg-type]
                )
            except (PkiError, ValueError) as exc:
                result.failed[req.id] = str(exc)
                continue
            token = secrets.token_urlsafe(24)
            tokens[req.id] = token
            rows.append(
                _row(
                    req,
                    cert,
                    cert.public_bytes(Encoding.DER),
                    issuer,
                    profile,
                    sealed,
                    hashlib.sha256(token.encode()).hexdigest(),
                )
            )
        db.session.execute(
            update(CertificateProfile)
            .where(CertificateProfile.id == profile.id)
            .values(issued_since_change=CertificateProfile.issued_since_change + len(group))
        )
    if rows:
        inserted = db.session.execute(
            insert(Certificate).returning(
                Certificate.id, Certificate.request_id, sort_by_parameter_order=True
            ),
            rows,
        ).all()
        cert_of = {request_id: cert_id for cert_id, request_id in inserted}
        moved = db.session.execute(
            update(CertificateRequest.__table__)
            .where(
                CertificateRequest.__table__.c.id == bindparam("rid"),
                CertificateRequest.__table__.c.status == RequestStatus.APPROVED.value,
            )
            .values(
                status=RequestStatus.ISSUED.value,
                certificate_id=bindparam("cid"),
                issue_attempts=CertificateRequest.__table__.c.issue_attempts + 1,
            ),
            [{"rid": rid, "cid": cid} for rid, cid in cert_of.items()],
        )
        if moved.rowcount != len(cert_of):
            # Someone else issued some of these meanwhile: store nothing from this batch.
            raise IssuanceRaced(
                f"{len(cert_of) - moved.rowcount} of {len(cert_of)} requests were issued by another worker"
            )
        result.issued = list(cert_of.values())
        by_id = {r.id: r for r in pending}
        serial_of = {row["request_id"]: row["serial_hex"] for row in rows}
        for request_id, cert_id in cert_of.items():
            req = by_id[request_id]
            audit.record(
                action="certificate.issue",
                actor="system",
                object_type="Certificate",
                object_id=cert_id,
                label=req.common_name,
                after={
                    "request_id": request_id,
                    "serial": serial_of[request_id],
                    "ca_id": req.profile.ca_id,
                },
                organization_id=req.organization_id,
                department_id=req.department_id,
            )
            _collection_mail(req, cert_id, tokens[request_id])
            if req.renewal_of_id or req.replaces_id:
                revocation.supersede(
                    old_id=req.renewal_of_id or req.replaces_id,
                    new_id=cert_id,
                    revoke=bool(req.replaces_id),
                )  # type: ignore[arg-type]
    for request_id, reason in result.failed.items():
        db.session.execute(
            update(CertificateRequest)
            .where(
                CertificateRequest.id == request_id,
                CertificateRequest.status == RequestStatus.APPROVED,
            )
            .values(status=RequestStatus.FAILED, failure_reason=reason[:2000])
        )
        req = next(r for r in pending if r.id == request_id)
        audit.record(
            action="request.fail",
            actor="system",
            object_type="CertificateRequest",
            object_id=request_id,
            label=req.common_name,
            message=reason[:500],
            organization_id=req.organization_id,
            department_id=req.department_id,
        )
    return result


class IssuanceRaced(Exception):
    """A concurrent batch won the conditional update: this one must roll back."""


def _collection_mail(req: CertificateRequest, cert_id: int, token: str) -> None:
    base = str(current_app.config["CW_BASE_URL"])
    link = f"{base}/collect/{cert_id}/{token}"
    if req.mode == RequestMode.KEYGEN:
        how = "The private key was generated by Certwright: an administrator downloads it as a password-protected PKCS#12 from the console (Certificates > SSL > details)."
    else:
        how = f"Download it (PEM with chain, certificate only, PKCS#7 or DER) here:\n\n  {link}\n\nThe link works until the certificate expires; keep it private."
    body = (
        f"Your {req.cert_type.label} certificate for {req.common_name} has been issued.\n\n"
        f"Names: {', '.join(req.sans)}\nTerm: {req.term_days} days\nRequest: #{req.id}\n\n{how}\n"
    )
    mail.send_mail(
        to=[req.requester_email, *req.external_requesters],
        subject=f"Certificate issued: {req.common_name}",
        body=body,
        category="issuance",
        organization_id=req.organization_id,
    )
