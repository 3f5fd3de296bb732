"""Certificate orders as the SCM REST API sees them (docs/api.md).

An order is what SCM calls an SSL certificate record: created by an enrollment, it keeps its
id (the request's id, SCM's ``sslId``) while a replacement re-enters issuance with a new
key, and it answers with SCM's status words. Every act on an order goes through the
console's own services (enrollment, approvals, renewal, revocation, inventory), so scope,
validation, approval rules, four eyes and audit are the same on both front doors.

- The root of an order is a request that replaces nothing; its current request is the
  latest replacement that was not declined (each replacement names the certificate it
  replaces), and the order's certificate is the current request's.
- Enroll is idempotent per API administrator: an ``Idempotency-Key`` is answered with the
  first call's result for 24 hours, and without one the same body is for
  CW_API_REPLAY_SECONDS (a client retrying after a lost answer gets its order, not a second).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload, selectinload

from app.extensions import db
from app.models import (
    Admin,
    AdminKind,
    ApiIdempotencyKey,
    Certificate,
    CertificateProfile,
    CertificateRequest,
    CertStatus,
    CertType,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki import formats
from app.services import audit
from app.services.certificates import enrollment, inventory, renewal, revocation
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.scope import Actor, require_actor, scope_of

KEY_SECONDS = 24 * 3600
# SCM's revocation reason codes (RFC 5280 CRLReason values) and our reason names.
REASON_CODES = {
    0: "unspecified",
    1: "keyCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
}


class NotCollectable(DomainError):
    """The order has no certificate to hand out yet (or any more)."""


class RevokedOrder(DomainError):
    """The order's certificate is revoked."""


class NotIssued(DomainError):
    """The act needs an issued certificate."""


class IdempotencyMismatch(DomainError):
    """An Idempotency-Key reused with a different request."""


@dataclass
class Order:
    root: CertificateRequest
    current: CertificateRequest
    renewals: list[CertificateRequest] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.root.id

    @property
    def certificate(self) -> Certificate | None:
        return self.current.certificate

    @property
    def requester(self) -> Admin | None:
        if self.root.requester_id is None:
            return None
        return db.session.get(Admin, self.root.requester_id)

    @property
    def requested_via(self) -> str:
        requester = self.requester
        return (
            "Web API" if requester is not None and requester.kind == AdminKind.API else "Web Form"
        )

    def status(self, now: datetime | None = None) -> str:
        """SCM's status word (exact spelling: Requested, Applied, Issued, Revoked, ...)."""
        req = self.current
        if req.status == RequestStatus.REQUESTED:
            return "Requested"
        if req.status == RequestStatus.APPROVED:
            return "Applied"  # submitted to the CA, being issued
        if req.status == RequestStatus.DECLINED:
            return "Declined"
        if req.status == RequestStatus.FAILED:
            return "Rejected"
        cert = req.certificate
        if cert is None:
            return "Applied"
        if cert.status == CertStatus.REVOKED:
            return "Revoked"
        if cert.status == CertStatus.REPLACED:
            return "Replaced"
        if cert.status == CertStatus.EXPIRED or cert.not_after <= (now or utcnow()):
            return "Expired"
        return "Issued"


def enrollable_profiles(*, cert_type: CertType) -> list[CertificateProfile]:
    """Active profiles of a certificate type (ascending id): what an enrollment may name."""
    return list(
        db.session.execute(
            select(CertificateProfile)
            .where(CertificateProfile.cert_type == cert_type, CertificateProfile.active.is_(True))
            .order_by(CertificateProfile.id)
        ).scalars()
    )


def _resolve(roots: Sequence[CertificateRequest]) -> list[Order]:
    """Orders for root requests: follow replacements in batches (one query per step)."""
    orders = [Order(root=r, current=r) for r in roots]
    pending = {o.current.certificate_id: o for o in orders if o.current.certificate_id}
    for _ in range(64):
        if not pending:
            break
        successors = db.session.execute(
            select(CertificateRequest)
            .where(
                CertificateRequest.replaces_id.in_(list(pending)),
                CertificateRequest.status != RequestStatus.DECLINED,
            )
            .order_by(CertificateRequest.id)
        ).scalars()
        moved: dict[int, Order] = {}
        for req in successors:  # ascending: the latest replacement wins
            order = pending.get(req.replaces_id)  # type: ignore[arg-type]
            if order is not None:
                order.current = req
                moved[req.replaces_id] = order  # type: ignore[index]
        pending = {o.current.certificate_id: o for o in moved.values() if o.current.certificate_id}
    return orders


def _visible(actor: Actor, req: CertificateRequest, action: str) -> None:
    scope = scope_of(actor)
    if not scope.covers(req.organization_id, req.department_id) or (
        not action and not scope.may(req.cert_type, req.organization_id, req.department_id)
    ):
        raise audit.denied(
            actor=actor, what=f"order {req.id}", object_type="CertificateRequest", object_id=req.id
        )
    if not scope.may(req.cert_type, req.organization_id, req.department_id):
        raise Forbidden(
            f"You may not {action} order {req.id}: you lack the {req.cert_type.label} privilege for its organization/department."
        )


_WITH_CERTIFICATE = [joinedload(CertificateRequest.certificate).joinedload(Certificate.ca)]


def get_order(
    *, actor: Actor, order_id: int, cert_type: CertType = CertType.SSL, action: str = ""
) -> Order:
    """The order, if this actor may see it (or act on it, when ``action`` names the act).

    Raises:
        NotFound: no such order of this type, or one outside the actor's scope.
        Forbidden: the actor sees it but lacks the type's privilege and asked to act.
    """
    require_actor(actor)
    # With its certificate and the certificate's CA (collect, details, revoke need both).
    req = db.session.get(CertificateRequest, order_id, options=_WITH_CERTIFICATE)
    if req is None or req.replaces_id is not None or req.cert_type != cert_type:
        raise NotFound(f"No such order {order_id}.")
    _visible(actor, req, action)
    return _resolve([req])[0]


def order_of_certificate(*, actor: Actor, certificate: Certificate, action: str = "") -> Order:
    """The order a certificate of ours belongs to (walking replacements back to the root)."""
    req = certificate.request
    for _ in range(64):
        if req is None or req.replaces_id is None:
            break
        previous = db.session.get(Certificate, req.replaces_id)
        req = previous.request if previous is not None else None
    if req is None:
        raise NotFound("This certificate was not ordered through Certwright.")
    return get_order(actor=actor, order_id=req.id, cert_type=req.cert_type, action=action)


@dataclass(frozen=True)
class OrderFilter:
    """SCM list filters; None = not filtered. Strings match exactly, ignoring case."""

    organization_id: int | None = None
    department_id: int | None = None
    profile_id: int | None = None
    requester: str | None = None
    common_name: str | None = None
    san: str | None = None
    status: str | None = None
    serial: str | None = None
    external_requester: str | None = None
    issuer: str | None = None
    key_algorithm: str | None = None
    key_param: str | None = None
    requested_via: str | None = None
    person_id: int | None = None

    @property
    def needs_certificates(self) -> bool:
        return any(
            v is not None
            for v in (
                self.common_name,
                self.san,
                self.status,
                self.serial,
                self.external_requester,
                self.issuer,
                self.key_algorithm,
                self.key_param,
                self.requested_via,
            )
        )


def normalize_serial(value: str) -> str:
    """'00:A1:b2' / '0a1b2' -> 'a1b2' (the inventory's form: lower-case hex, no leading 0)."""
    text = value.replace(":", "").replace(" ", "").strip().lower()
    return text.lstrip("0") or "0"


def _roots_query(actor: Actor, cert_type: CertType, flt: OrderFilter) -> Any:
    scope = scope_of(actor)
    query = select(CertificateRequest).where(
        CertificateRequest.cert_type == cert_type, CertificateRequest.replaces_id.is_(None)
    )
    clause = scope.type_filter(
        CertificateRequest.organization_id, CertificateRequest.department_id, cert_type
    )
    if clause is not None:
        query = query.where(clause)
    if flt.organization_id is not None:
        query = query.where(CertificateRequest.organization_id == flt.organization_id)
    if flt.department_id is not None:
        query = query.where(CertificateRequest.department_id == flt.department_id)
    if flt.profile_id is not None:
        query = query.where(CertificateRequest.profile_id == flt.profile_id)
    if flt.person_id is not None:
        query = query.where(CertificateRequest.person_id == flt.person_id)
    if flt.requester is not None:
        who = flt.requester.strip().lower()
        logins = select(Admin.id).where(func.lower(Admin.login) == who)
        query = query.where(
            CertificateRequest.requester_id.in_(logins)
            | (func.lower(CertificateRequest.requester_email) == who)
        )
    return query


def _matches(order: Order, flt: OrderFilter, now: datetime) -> bool:
    def same(a: str | None, b: str) -> bool:
        return a is None or a.strip().lower() == b.lower()

    cert = order.certificate
    req = order.current
    if not same(flt.common_name, req.common_name):
        return False
    if flt.san is not None and flt.san.strip().lower() not in [s.lower() for s in req.sans]:
        return False
    if not same(flt.status, order.status(now)):
        return False
    if flt.external_requester is not None and flt.external_requester.strip().lower() not in [
        e.lower() for e in req.external_requesters
    ]:
        return False
    if not same(flt.requested_via, order.requested_via):
        return False
    if flt.serial is not None or flt.issuer is not None or flt.key_algorithm or flt.key_param:
        if cert is None:
            return False
        if flt.serial is not None and normalize_serial(flt.serial) != cert.serial_hex:
            return False
        if flt.issuer is not None and flt.issuer.strip().lower() not in (
            cert.issuer_dn.lower(),
            cert.issuer_cn.lower(),
        ):
            return False
        if not same(flt.key_algorithm, cert.key_algorithm):
            return False
        if flt.key_param is not None and flt.key_param.strip() != str(cert.key_size or ""):
            return False
    return True


def list_orders(
    *,
    actor: Actor,
    cert_type: CertType = CertType.SSL,
    flt: OrderFilter = OrderFilter(),
    position: int = 0,
    size: int | None = None,
) -> tuple[list[Order], int]:
    """A page of the orders the actor may see (ascending id) and how many match in all."""
    query = _roots_query(actor, cert_type, flt).order_by(CertificateRequest.id)
    load = query.options(selectinload(CertificateRequest.certificate))
    if not flt.needs_certificates:
        total = db.session.execute(
            select(func.count()).select_from(query.order_by(None).subquery())
        ).scalar_one()
        page = load.offset(position)
        if size is not None:
            page = page.limit(size)
        return _resolve(list(db.session.execute(page).scalars())), int(total)
    now = utcnow()
    matching = [
        o for o in _resolve(list(db.session.execute(load).scalars())) if _matches(o, flt, now)
    ]
    end = None if size is None else position + size
    return matching[position:end], len(matching)


# --- acts --------------------------------------------------------------------------------


def _claim_key(actor: Admin, key: str, body_hash: str, keep: timedelta) -> ApiIdempotencyKey | int:
    """Our row for this key (to fill in), or the order id a previous call made."""
    now = utcnow()
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One statement takes the row, new or existing, and its lock until commit: a concurrent
    # call with the same key waits here for the first to commit, then reads its answer.
    # (The no-op update is what locks and returns an existing row; DO NOTHING returns none.)
    statement = insert(ApiIdempotencyKey).values(
        admin_id=actor.id, key=key, body_hash=body_hash, status_code=0, created_at=now
    )
    row = db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["admin_id", "key"],
            set_={"admin_id": statement.excluded.admin_id},
        )
        .returning(ApiIdempotencyKey)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if row.response is None or row.created_at < now - keep:
        row.body_hash, row.created_at, row.response, row.status_code = body_hash, now, None, 0
        return row
    if row.body_hash != body_hash:
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used for a different request; use a new key.",
            field="Idempotency-Key",
        )
    return int(row.response["orderId"])


def enroll(
    *,
    actor: Admin,
    data: enrollment.RequestData,
    body_hash: str,
    idempotency_key: str | None = None,
) -> tuple[int, bool]:
    """Submit a request through the console's enrollment (same checks, approval rules and
    audit); (order id, True when this answers an earlier identical call).

    Raises:
        DomainError (and subclasses) as enrollment.submit_request does.
        IdempotencyMismatch: the key was used with another body.
    """
    replay = int(current_app.config["CW_API_REPLAY_SECONDS"])
    claimed: ApiIdempotencyKey | int | None = None
    if idempotency_key:
        claimed = _claim_key(
            actor, f"key:{idempotency_key[:150]}", body_hash, timedelta(seconds=KEY_SECONDS)
        )
    elif replay > 0:
        claimed = _claim_key(actor, f"body:{body_hash}", body_hash, timedelta(seconds=replay))
    if isinstance(claimed, int):
        return claimed, True
    # Issued in this transaction when the profile approves automatically: the enroll's
    # commit stores the request, its certificate and their audit events together, and the
    # client's first collect finds the certificate (docs/api.md, docs/architecture.md).
    req = enrollment.submit_request(actor=actor, data=data, issue_now=True)
    if claimed is not None:
        claimed.response = {"orderId": req.id}
        claimed.status_code = 200
    return req.id, False


def forget_old_keys() -> int:
    """Delete idempotency keys past the longest time they are honoured (housekeeping)."""
    cutoff = utcnow() - timedelta(seconds=KEY_SECONDS)
    return int(
        db.session.execute(
            delete(ApiIdempotencyKey).where(ApiIdempotencyKey.created_at < cutoff)
        ).rowcount
    )


def renew_token(order_id: int) -> str:
    """SCM's renewId (at most 20 characters): stable per order, not guessable."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(key, f"certwright-renew-id:{order_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:20]


# SCM formats -> how they are made of the console's downloads (app/pki/formats.py), so
# that every body is byte-for-byte what the console hands out (docs/api.md).
COLLECT_FORMATS: dict[str, tuple[str, ...]] = {
    "x509": ("x509IOR", "x509CO"),  # root first, intermediates, leaf last
    "x509r": ("x509",),  # leaf, intermediates, root
    "x509co": ("x509CO",),
    "x509io": ("x509IOR",),  # root, then intermediates
    "x509ior": ("x509IO",),  # intermediates, then root
    "base64": ("base64",),
    "bin": ("bin",),
    "pem": ("x509IOR", "x509CO"),
    "pemco": ("pemco",),
    "pemia": ("x509",),  # leaf, then its issuers up to the root
}


class UnknownFormat(DomainError):
    pass


def collect(
    *, actor: Actor, order_id: int, fmt: str, cert_type: CertType = CertType.SSL
) -> tuple[formats.Download, Certificate]:
    """The order's certificate in an SCM download format, and the certificate.

    Raises:
        NotFound: no such order (in scope).
        UnknownFormat: not one of SCM's formats.
        RevokedOrder: the certificate is revoked.
        NotCollectable: not issued (yet), or expired or replaced.
    """
    order = get_order(actor=actor, order_id=order_id, cert_type=cert_type)
    parts = COLLECT_FORMATS.get(fmt.strip().lower())
    if parts is None:
        raise UnknownFormat(f"Unknown SSL certificate file format requested: {fmt}", field="format")
    status = order.status()
    cert = order.certificate
    if status == "Revoked":
        raise RevokedOrder("Certificate has been revoked and cannot be downloaded.")
    if status != "Issued" or cert is None:
        raise NotCollectable("Certificate is not collectable.")
    downloads = [inventory.render(cert, part) for part in parts]
    body = b"".join(d.content for d in downloads)
    return formats.Download(body, downloads[-1].mime_type, downloads[-1].extension), cert


def renew(
    *, actor: Admin, order_id: int, csr: bytes | None = None, cert_type: CertType = CertType.SSL
) -> CertificateRequest:
    """Renew the order's certificate (a new order, linked); with a CSR, for its new key.

    Raises:
        NotIssued: the order's certificate is not issued.
        DomainError: what renewal.renew refuses (profile, names, key reuse).
    """
    order = get_order(actor=actor, order_id=order_id, cert_type=cert_type, action="renew")
    cert = order.certificate
    if cert is None or order.status() not in ("Issued", "Expired"):
        raise NotIssued(f"SSL state is not 'ISSUED': {order.status()}")
    return renewal.renew(actor=actor, certificate_id=cert.id, csr=csr)


def replace(
    *,
    actor: Admin,
    order_id: int,
    csr: bytes,
    common_name: str | None = None,
    sans: Sequence[str] | None = None,
    reason: str = "",
    cert_type: CertType = CertType.SSL,
) -> CertificateRequest:
    """Replace the order's certificate with one for a new CSR; the order keeps its id and
    goes back through issuance (the old certificate is revoked as superseded once the new
    one is issued).

    Raises:
        NotIssued: nothing issued to replace.
        DomainError: what renewal.replace refuses.
    """
    order = get_order(actor=actor, order_id=order_id, cert_type=cert_type, action="replace")
    cert = order.certificate
    if cert is None or order.status() not in ("Issued", "Expired"):
        raise NotIssued(f"SSL state is not 'ISSUED': {order.status()}")
    return renewal.replace(
        actor=actor,
        certificate_id=cert.id,
        csr=csr,
        common_name=common_name,
        sans=sans,
        message=reason,
    )


class AlreadyRevoked(DomainError):
    pass


def revoke(*, actor: Admin, order: Order, reason_code: int, reason: str) -> Certificate:
    """Revoke the order's certificate with an RFC 5280 reason code; ``reason`` is the
    administrator's words, kept in the audit log.

    Raises:
        AlreadyRevoked / NotIssued: nothing to revoke.
        DomainError: a reason code SCM does not define, or one revocation refuses.
    """
    if reason_code not in REASON_CODES:
        raise DomainError("Field 'reasonCode' has invalid value.", field="reasonCode")
    status = order.status()
    if status == "Revoked":
        raise AlreadyRevoked("Your certificate already revoked")
    cert = order.certificate
    if cert is None:
        raise NotIssued("Only issued certificates could be revoked.")
    done = revocation.revoke(
        actor=actor,
        certificate_ids=[cert.id],
        reason=REASON_CODES[reason_code],
        message=reason,
    )
    return done[0]


def revoke_by_id(
    *,
    actor: Admin,
    order_id: int,
    reason_code: int,
    reason: str,
    cert_type: CertType = CertType.SSL,
) -> Certificate:
    order = get_order(actor=actor, order_id=order_id, cert_type=cert_type, action="revoke")
    return revoke(actor=actor, order=order, reason_code=reason_code, reason=reason)


def order_of_serial(
    *, actor: Actor, serial: str, cert_type: CertType = CertType.SSL, action: str = ""
) -> Order:
    """The order of the visible certificate of ours with this serial number (colon hex or
    hex); for an older certificate of the order (superseded), an order whose current
    request is that certificate's.

    Raises:
        NotFound: none visible; DomainError: several (name the order instead).
    """
    candidates = db.session.execute(
        select(Certificate).where(
            Certificate.serial_hex == normalize_serial(serial),
            Certificate.request_id.is_not(None),
            Certificate.cert_type == cert_type,
        )
    ).scalars()
    scope = scope_of(actor)
    visible = [c for c in candidates if scope.may(cert_type, c.organization_id, c.department_id)]
    if not visible:
        raise NotFound(f"No certificate with serial number {serial}.")
    if len(visible) > 1:
        raise DomainError(
            f"Several certificates have serial number {serial} (from different CAs); revoke by order id.",
            field="serialNumber",
        )
    order = order_of_certificate(actor=actor, certificate=visible[0], action=action)
    if order.certificate is None or order.certificate.id != visible[0].id:
        # An older certificate of the order (already superseded): that one.
        order = Order(root=order.root, current=visible[0].request)  # type: ignore[arg-type]
    return order


def revoke_by_serial(
    *, actor: Admin, serial: str, reason_code: int, reason: str, cert_type: CertType = CertType.SSL
) -> Certificate:
    """Revoke the visible certificate of ours with this serial number (colon hex or hex)."""
    order = order_of_serial(actor=actor, serial=serial, cert_type=cert_type, action="revoke")
    return revoke(actor=actor, order=order, reason_code=reason_code, reason=reason)


def renewals_of(orders: Iterable[Order]) -> None:
    """Fill each order's renewals (requests renewing its certificate), in one query."""
    by_cert = {o.certificate.id: o for o in orders if o.certificate is not None}
    if not by_cert:
        return
    for req in db.session.execute(
        select(CertificateRequest)
        .where(CertificateRequest.renewal_of_id.in_(list(by_cert)))
        .order_by(CertificateRequest.id)
    ).scalars():
        by_cert[req.renewal_of_id].renewals.append(req)  # type: ignore[index]
