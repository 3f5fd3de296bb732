"""Issuance: turn a batch of Approved requests into stored, downloadable certificates.

One transaction per batch: serials are reserved (unique per CA) before anything is signed,
certificates are bulk-inserted, requests move Approved -> Issued by a conditional update
(a retried or duplicated batch that finds them Issued stores nothing), audit events and
collection mails are written, then everything commits at once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from flask import current_app
from sqlalchemy import Row, String, bindparam, func, select, type_coerce, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import (
    Certificate,
    CertificateProfile,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    Job,
    LintMode,
    RequestMode,
    RequestStatus,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.pki import algorithms, issue, keys, keystore, names, smime, weak_keys
from app.pki.errors import PkiError
from app.pki.issuer import Issuer
from app.pki.profiles import CertKind, LeafProfile
from app.services import audit, bulk
from app.services.ca import blocked_keys, signing
from app.services.ca.profiles import KIND_OF
from app.services.certificates import notices, revocation
from app.services.notifications import events
from app.services.platform import mail
from app.services.scope import SYSTEM

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


# What issuance reads of a request.
_REQUEST_COLUMNS = (
    "id",
    "status",
    "profile_id",
    "cert_type",
    "mode",
    "key_type",
    "public_key_der",
    "common_name",
    "sans",
    "subject",
    "term_days",
    "organization_id",
    "department_id",
    "requester_email",
    "external_requesters",
    "auto_renew",
    "renew_days_before",
    "renewal_of_id",
    "replaces_id",
    "person_id",
)
Request = Row[Any]  # a row of _REQUEST_COLUMNS


def _lint_plan(profile: CertificateProfile, count: int) -> list[bool]:
    """Which of the group's ``count`` certificates to lint: all, or in sample mode the
    profile's first since a change and then one in N."""
    if profile.lint_mode == LintMode.EVERY:
        return [True] * count
    first, every = profile.issued_since_change, max(1, profile.lint_sample_n)
    return [first + i == 0 or (first + i) % every == 0 for i in range(count)]


_SUBJECT_KEYS = ("CN", "O", "OU", "L", "ST", "C")


@functools.lru_cache(maxsize=4096)
def _subject_of(values: tuple[str | None, ...]) -> x509.Name:
    """x509.Name objects are immutable: one per distinct subject (an organization's
    requests share all but the CN, bulk renewals all of it)."""
    cn, o, ou, locality, state, country = values
    return names.build_subject(
        common_name=cn,
        organization=o,
        organizational_unit=ou,
        locality=locality,
        state=state,
        country=country,
    )


@functools.lru_cache(maxsize=4096)
def _smime_subject_of(values: tuple[str | None, ...]) -> x509.Name:
    return smime.build_subject(
        {k: v or "" for k, v in zip(smime.SUBJECT_KEYS, values, strict=True)}
    )


def _subject(req: Request) -> x509.Name:
    if req.cert_type == CertType.CLIENT:  # the S/MIME BR profile (app/pki/smime.py)
        return _smime_subject_of(tuple(map(req.subject.get, smime.SUBJECT_KEYS)))
    return _subject_of(tuple(map(req.subject.get, _SUBJECT_KEYS)))


@functools.lru_cache(maxsize=4096)
def _alt_names(values: tuple[str, ...]) -> names.AltNames:
    """Normalised SANs per distinct list (AltNames is a frozen dataclass)."""
    return names.parse_alt_names(values)


@functools.lru_cache(maxsize=4096)
def _rdn_dn(rdn: x509.RelativeDistinguishedName) -> str:
    return rdn.rfc4514_string(smime.DN_NAMES)


def _subject_dn(subject: x509.Name, cn: str, cert: x509.Certificate, kind: CertKind) -> str:
    dn = _built_dn(subject, cn, kind)
    return dn if dn is not None else cert.subject.rfc4514_string(smime.DN_NAMES)


@functools.lru_cache(maxsize=4096)
def _built_dn(subject: x509.Name, cn: str, kind: CertKind) -> str | None:
    """cert.subject.rfc4514_string() without parsing the certificate back: from the
    subject we built (RFC 4514 lists its RDNs in reverse). The organization's RDNs repeat
    from request to request, so their escaped forms are cached. build_leaf() puts the CN
    into its normalised host form; a request's CN already is in that form, but should it
    not be, the certificate decides.
    """
    host = names.common_name_host(cn or None, single_label=kind is CertKind.SSL)
    if host is not None and str(host) != cn:
        return None
    return ",".join([_rdn_dn(rdn) for rdn in reversed(subject.rdns)])


def _batch_columns(
    issuer: Issuer, profile: CertificateProfile, created_at: datetime
) -> dict[str, Any]:
    """The inventory columns that are the same for every certificate of a profile's batch."""
    issuer_dn = issuer.name.rfc4514_string()
    family = "RSA" if issuer.key_type.startswith("RSA") else "EC"
    return {
        "origin": CertOrigin.ISSUED,
        "status": CertStatus.ISSUED,
        "ca_id": profile.ca_id,
        "profile_id": profile.id,
        "issuer_dn": issuer_dn,
        "issuer_cn": issuer_dn.split("CN=", 1)[-1].split(",", 1)[0],
        "signature_algorithm": algorithms.signature_name_of(family, issuer.signature_hash.value),
        "created_at": created_at,
    }


def _row(
    req: Request,
    cert: x509.Certificate,
    serial: int,
    subject_dn: str,
    der: bytes,
    common: dict[str, Any],
    sealed: bytes | None,
    token_hash: str,
) -> dict[str, Any]:
    # Everything but the subject DN, serial and validity is known from the request and
    # the issuer: the certificate is not parsed back to describe it.
    algorithm, size = KEY_ALGORITHM.get(req.key_type, ("", None))
    subject = req.subject
    return {
        **common,
        "fingerprint": hashlib.sha256(der).hexdigest(),
        "der": der,
        "cert_type": req.cert_type,
        "organization_id": req.organization_id,
        "department_id": req.department_id,
        "request_id": req.id,
        "serial_hex": f"{serial:x}",
        "subject_dn": subject_dn,
        "common_name": req.common_name,
        "subject_o": subject.get("O", ""),
        "subject_ou": subject.get("OU", ""),
        "sans": req.sans,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "key_algorithm": algorithm,
        "key_size": size,
        "key_type": req.key_type,
        "sealed_key": sealed,
        "collect_token_hash": token_hash,
        "auto_renew": req.auto_renew,
        "renew_days_before": req.renew_days_before,
        "renewal_state": "Auto-renew on" if req.auto_renew else "",
    }


def issue_requests(
    request_ids: Sequence[int], *, hand_over_keys: dict[int, keys.PrivateKey] | None = None
) -> BatchResult:
    """Issue every still-Approved request of the batch. The caller commits.

    ``hand_over_keys``: the private keys generated for key-generation requests go into
    this dict (request id -> key) instead of being sealed into the inventory, unless the
    profile escrows keys (then they are sealed too). For a caller that packages each key
    for its owner in the same transaction (the enrollment portal's PKCS#12): a key it
    would unseal again at once, and drop unless escrowed, is never sealed at all.

    Raises:
        IssuanceRaced: another worker issued some of these requests meanwhile; the
            caller must roll back (nothing of this batch may be stored).
    """
    result = BatchResult()
    # Plain rows, not ORM objects: a batch reads hundreds and changes them with one UPDATE.
    reqs = db.session.execute(_LOAD, {"ids": [int(i) for i in request_ids]}).all()
    pending = [r for r in reqs if r.status == RequestStatus.APPROVED]
    result.skipped = [r.id for r in reqs if r.status != RequestStatus.APPROVED]
    by_profile: dict[int, list[Request]] = defaultdict(list)
    for req in pending:
        by_profile[req.profile_id].append(req)
    rows: list[dict[str, Any]] = []
    issued: list[tuple[Request, str]] = []  # request, collection token
    counted: dict[int, int] = {}  # profile id -> requests handled (the lint sampling counter)
    now = issue.utc_now()
    created_at = utcnow()
    for profile_id, group in by_profile.items():
        profile = db.session.get_one(
            CertificateProfile, profile_id, options=[joinedload(CertificateProfile.ca)]
        )
        try:
            issuer = signing.load_issuer(profile.ca)
        except Exception as exc:  # a retired CA or an unsealable key fails the whole group
            for req in group:
                result.failed[req.id] = str(getattr(exc, "message", exc))
            continue
        leaf = LeafProfile(
            KIND_OF[profile.cert_type],
            include_client_auth=profile.include_client_auth,
            include_server_auth=profile.include_server_auth,
        )
        common = _batch_columns(issuer, profile, created_at)
        serials = signing.reserve_serials(profile.ca, len(group))
        entropy = secrets.token_bytes(24 * len(group))
        lint_plan, allowed = _lint_plan(profile, len(group)), profile.key_types
        # Keys blocked since the request was made (BR 6.1.1.3(4)): one query per group.
        # public_key_der is the DER SubjectPublicKeyInfo, so its SHA-256 is the key's
        # blocklist identity (weak_keys.spki_sha256).
        blocked = blocked_keys.blocked_among(
            hashlib.sha256(req.public_key_der).hexdigest()
            for req in group
            if req.public_key_der is not None
        )
        for index, (req, serial) in enumerate(zip(group, serials, strict=True)):
            sealed = None
            try:
                if req.mode == RequestMode.KEYGEN:
                    private_key = keys.generate_private_key(keys.parse_key_type(req.key_type))
                    public_key = private_key.public_key()
                    if hand_over_keys is None or profile.key_escrow:
                        sealed = keystore.seal_private_key(private_key, signing.keks())
                else:
                    public_key = serialization.load_der_public_key(req.public_key_der or b"")
                subject = _subject(req)
                cert = issue.issue_leaf(
                    issuer,
                    public_key=public_key,
                    subject=subject,
                    alt_names=_alt_names(tuple(req.sans)),
                    profile=leaf,
                    serial=serial,
                    term_days=req.term_days,
                    now=now,
                    allowed_key_types=allowed,  # type: ignore[arg-type]
                    lint=lint_plan[index],
                    blocked_spki_sha256=blocked,
                )
            except (PkiError, ValueError) as exc:
                result.failed[req.id] = str(exc)
                continue
            # secrets.token_urlsafe(24), from one draw of the CSPRNG for the whole group
            token = base64.urlsafe_b64encode(entropy[24 * index : 24 * index + 24]).decode()
            der = cert.public_bytes(Encoding.DER)
            token_hash = hashlib.sha256(token.encode()).hexdigest()
            cn = str(req.subject.get("CN") or "").strip()
            subject_dn = _subject_dn(subject, cn, cert, leaf.kind)
            row = _row(req, cert, serial, subject_dn, der, common, sealed, token_hash)
            # The key's identity, to find keys several certificates share (imports' findings).
            row["spki_sha256"] = (
                hashlib.sha256(req.public_key_der).hexdigest()
                if req.public_key_der is not None
                else weak_keys.spki_sha256(public_key)
            )
            rows.append(row)
            issued.append((req, token))
            if hand_over_keys is not None and req.mode == RequestMode.KEYGEN:
                hand_over_keys[req.id] = private_key
        counted[profile.id] = len(group)
    if rows:
        cert_ids = bulk.insert_rows(Certificate.__table__, rows, return_ids=True)
        _mark_issued([req.id for req, _ in issued])
        result.issued = cert_ids
        base = str(current_app.config["CW_BASE_URL"])
        done = [
            notices.Issued(req, cert_id, row["serial_hex"], row["ca_id"], token)
            for (req, token), row, cert_id in zip(issued, rows, cert_ids, strict=True)
        ]
        notices.audit_issued(done)
        notices.issued_events(done)
        mail.send_mails(notices.collection_mails(done, base))
        for req, cert_id in ((item.req, item.cert_id) for item in done):
            if req.renewal_of_id or req.replaces_id:
                revocation.supersede(
                    old_id=req.renewal_of_id or req.replaces_id,
                    new_id=cert_id,
                    revoke=bool(req.replaces_id),
                )  # type: ignore[arg-type]
    for request_id, reason in result.failed.items():
        _fail(next(r for r in pending if r.id == request_id), reason)
    # Last, so that concurrent batches of one profile wait on its row lock only briefly.
    for profile_id, count in counted.items():
        db.session.execute(
            update(CertificateProfile)
            .where(CertificateProfile.id == profile_id)
            .values(issued_since_change=CertificateProfile.issued_since_change + count)
        )
    return result


def _fail(req: Request, reason: str) -> bool:
    """Approved -> Failed with the reason (conditional), audited; whether it moved."""
    moved = db.session.execute(
        update(CertificateRequest)
        .where(
            CertificateRequest.id == req.id,
            CertificateRequest.status == RequestStatus.APPROVED,
        )
        .values(status=RequestStatus.FAILED, failure_reason=reason[:2000])
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved == 1:
        audit.record(
            action="request.fail",
            actor=SYSTEM,
            object_type="CertificateRequest",
            object_id=req.id,
            label=req.common_name,
            before={"status": RequestStatus.APPROVED.value, "failure_reason": ""},
            after={"status": RequestStatus.FAILED.value, "failure_reason": reason[:2000]},
            message=reason[:500],
            organization_id=req.organization_id,
            department_id=req.department_id,
        )
        events.emit(
            events.request_event(NotificationType.ISSUANCE_FAILED, req, Reason=reason[:500]),
            actor=SYSTEM,
        )
    return moved == 1


def fail_unissued(*, request_ids: Sequence[int], reason: str) -> list[int]:
    """Requests of an issuance job that gave up for good (out of attempts, or its worker
    died each time): those still Approved become Failed with the reason, so they show why
    and can be retried (approvals.retry) instead of waiting forever. The caller commits."""
    reqs = db.session.execute(_LOAD, {"ids": [int(i) for i in request_ids]}).all()
    return [req.id for req in reqs if req.status == RequestStatus.APPROVED and _fail(req, reason)]


def issuance_job_failed(job: Job) -> None:
    """The issue_certificates kind's failure hook (app/services/platform/jobs.py)."""
    fail_unissued(
        request_ids=job.payload.get("request_ids", []),
        reason=f"Issuance job #{job.id} {job.message}",
    )


def _mark_issued(request_ids: list[int]) -> None:
    """Approved -> Issued, linked to the certificate just stored for each request, in one
    conditional UPDATE; all or nothing.

    Raises:
        IssuanceRaced: some request was not Approved any more (another worker won).
    """
    moved = db.session.execute(_MARK, {"ids": request_ids})
    if moved.rowcount != len(request_ids):
        # Someone else issued some of these meanwhile: store nothing from this batch.
        raise IssuanceRaced(
            f"{len(request_ids) - moved.rowcount} of {len(request_ids)} requests were issued by another worker"
        )


# The batch statements, built once. The request ids are written into the SQL (integers
# only): psycopg turns each placeholder of a long IN list into a parameter in Python,
# which costs more than the query itself.
_REQUESTS = CertificateRequest.__table__
_IDS = bindparam("ids", expanding=True, literal_execute=True)
# Enum columns come back as their plain values (StrEnum members compare equal to them):
# converting three a row to members costs more than loading the rest of it.
_AS_VALUES = frozenset({"status", "cert_type", "mode"})
_LOAD = (
    select(
        *(
            type_coerce(_REQUESTS.c[name], String).label(name)
            if name in _AS_VALUES
            else _REQUESTS.c[name]
            for name in _REQUEST_COLUMNS
        )
    )
    .where(_REQUESTS.c.id.in_(_IDS))
    .order_by(_REQUESTS.c.id)
)
_MARK = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id.in_(_IDS), _REQUESTS.c.status == RequestStatus.APPROVED.value)
    .values(
        status=RequestStatus.ISSUED.value,
        certificate_id=select(func.max(Certificate.__table__.c.id))
        .where(Certificate.__table__.c.request_id == _REQUESTS.c.id)
        .scalar_subquery(),
        issue_attempts=_REQUESTS.c.issue_attempts + 1,
    )
)


class IssuanceRaced(Exception):
    """A concurrent batch won the conditional update: this one must roll back."""
