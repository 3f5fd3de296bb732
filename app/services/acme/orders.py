"""ACME orders, authorizations and challenges (RFC 8555 §7.4 to §7.6): new orders inside
the account organization's delegations, challenge responses handed to the workers (their
verdicts: app.services.acme.verdicts), finalize through the console's enrollment checks,
certificates and revocation.

Objects are looked up by (account, id): another account's order is "not found". Every
refusal is an AcmeProblem; the caller commits.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import contains_eager, joinedload

from app.acme import challenges, jose, messages
from app.acme.messages import Status
from app.acme.problems import AcmeProblem
from app.extensions import db
from app.models import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    Certificate,
    CertificateProfile,
    CertificateRequest,
    CertType,
    RequestMode,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki import csr as pki_csr
from app.pki.errors import PkiError
from app.pki.revocation import Revoker
from app.services import audit
from app.services.acme import dispatch, renewal
from app.services.certificates import enrollment, inventory, issuance, revocation
from app.services.errors import Conflict, DomainError
from app.services.scope import SYSTEM
from app.services.structure import domains

ORDER_LIFETIME = timedelta(days=7)
# The challenges of an authorization, in this order (the client picks one); a wildcard
# name can only be proven in DNS (§7.1.3, as Let's Encrypt and pebble do).
OFFERED = (challenges.HTTP01, challenges.TLSALPN01, challenges.DNS01)
OFFERED_WILDCARD = (challenges.DNS01,)


def profile_by_slug(slug: str) -> CertificateProfile:
    """The active, ACME-enabled SSL profile with this directory name.

    Raises:
        AcmeProblem: malformed (404) when there is none.
    """
    profile = db.session.execute(
        select(CertificateProfile).where(CertificateProfile.acme_slug == slug)
    ).scalar_one_or_none()
    if profile is None or not profile.active or profile.cert_type != CertType.SSL:
        raise AcmeProblem("malformed", f"no ACME directory named {slug!r}", status=404)
    return profile


def acme_term_days(profile: CertificateProfile) -> int:
    """ACME certificates get the profile's shortest allowed term."""
    return min(profile.terms)


RATE_WINDOW = timedelta(hours=1)


def check_order_rate(account: AcmeAccount, *, limit: int) -> None:
    """At most ``limit`` new orders per account in any hour (0: no limit). The account row
    is locked first (PostgreSQL), so concurrent newOrders of one account count each other.

    Raises:
        AcmeProblem: rateLimited (429) with the seconds until the oldest order of the
            window ages out.
    """
    if limit <= 0:
        return
    db.session.execute(select(AcmeAccount.id).where(AcmeAccount.id == account.id).with_for_update())
    since = utcnow() - RATE_WINDOW
    recent = db.session.execute(
        select(func.count(AcmeOrder.id), func.min(AcmeOrder.created_at)).where(
            AcmeOrder.account_id == account.id, AcmeOrder.created_at > since
        )
    ).one()
    if recent[0] < limit:
        return
    oldest = recent[1]
    wait = max(1, int((oldest - since).total_seconds()) + 1) if oldest is not None else 60
    raise AcmeProblem(
        "rateLimited",
        f"this account made {recent[0]} new orders in the last hour, the limit is {limit}: "
        f"retry in {wait} s",
        retry_after=wait,
    )


def new_order(
    *,
    account: AcmeAccount,
    profile: CertificateProfile,
    request: messages.NewOrder,
    user_agent: str,
    order_limit: int = 0,
) -> AcmeOrder:
    """§7.4: an order with one authorization per identifier, each with the OFFERED
    challenges, within the account's ``order_limit`` an hour (check_order_rate).

    A wildcard ``*.example.com`` gets an authorization for ``example.com`` marked wildcard,
    with dns-01 only.

    Raises:
        AcmeProblem: rejectedIdentifier for a name outside the account organization's
            approved SSL delegations (a wildcard needs a wildcard domain delegated).
    """
    check_order_rate(account, limit=order_limit)
    org, dept = account.organization, account.department
    for ident in request.identifiers:
        try:
            domains.check_names_delegated([ident.value], org, dept, CertType.SSL)
        except DomainError as exc:
            raise AcmeProblem(
                "rejectedIdentifier", exc.message, identifier=ident.as_dict()
            ) from exc
    replaced = None
    if request.replaces is not None:
        replaced = renewal.check_replaces(
            account=account,
            text=request.replaces,
            names={i.value for i in request.identifiers},
        )
    now = utcnow()
    order = AcmeOrder(
        account_id=account.id,
        profile_id=profile.id,
        status=Status.PENDING.value,
        identifiers=[i.as_dict() for i in request.identifiers],
        expires_at=now + ORDER_LIFETIME,
        user_agent=user_agent[:255],
        replaces=request.replaces if replaced is not None else None,
        replaces_certificate_id=replaced.id if replaced is not None else None,
        # Built with the order, so that one flush inserts them all and the answer lists
        # them without reading them back.
        authorizations=[
            AcmeAuthorization(
                identifier=ident.value[2:] if ident.is_wildcard else ident.value,
                wildcard=ident.is_wildcard,
                status=Status.PENDING.value,
                expires_at=now + ORDER_LIFETIME,
                challenges=[
                    AcmeChallenge(
                        type=kind, token=challenges.new_token(), status=Status.PENDING.value
                    )
                    for kind in (OFFERED_WILDCARD if ident.is_wildcard else OFFERED)
                ],
            )
            for ident in request.identifiers
        ],
    )
    db.session.add(order)
    db.session.flush()
    audit.record(
        action="acme.order.create",
        actor=SYSTEM,
        object_type="AcmeOrder",
        object_id=order.id,
        label=", ".join(i.value for i in request.identifiers)[:256],
        after={
            "account_id": account.id,
            "profile_id": profile.id,
            "profile": profile.name,
            "identifiers": order.identifiers,
            "status": order.status,
            "user_agent": order.user_agent,
            "replaces": order.replaces_certificate_id,
        },
        organization_id=account.organization_id,
        department_id=account.department_id,
    )
    return order


def _not_found(what: str, object_id: int) -> AcmeProblem:
    return AcmeProblem(
        "malformed", f"no {what} #{object_id} for this account in this directory", status=404
    )


@dataclass(frozen=True)
class RequestState:
    """What an order's status and Retry-After need of its certificate request."""

    status: RequestStatus
    failure_reason: str | None
    decision_message: str | None
    created_at: datetime
    decided_at: datetime | None


_REQUEST_STATE = (
    CertificateRequest.status,
    CertificateRequest.failure_reason,
    CertificateRequest.decision_message,
    CertificateRequest.created_at,
    CertificateRequest.decided_at,
)


def request_state(request_id: int) -> RequestState | None:
    """The certificate request's state as stored now (a fresh statement, not a cached row:
    issuance changes requests by statements on the table)."""
    row = db.session.execute(
        select(*_REQUEST_STATE).where(CertificateRequest.id == request_id)
    ).first()
    return RequestState(*row) if row is not None else None


@functools.cache
def _lookup(kind: str, in_directory: bool) -> Any:
    """The statements of the lookups below, built once with bind parameters (object_id,
    account_id, and slug when ``in_directory``): building a statement and its cache key
    cost about as much as running it, on every poll. Only objects of the account's
    orders, and under the directory ``slug``, are found."""
    query: Any
    if kind == "order":
        query = (
            select(AcmeOrder, *_REQUEST_STATE)
            .outerjoin(CertificateRequest, CertificateRequest.id == AcmeOrder.request_id)
            .where(AcmeOrder.id == bindparam("object_id"))
            .options(joinedload(AcmeOrder.authorizations))
        )
    elif kind == "authorization":
        query = (
            select(AcmeAuthorization)
            .join(AcmeOrder, AcmeOrder.id == AcmeAuthorization.order_id)
            .where(AcmeAuthorization.id == bindparam("object_id"))
            .options(
                contains_eager(AcmeAuthorization.order),
                joinedload(AcmeAuthorization.challenges),
            )
        )
    elif kind == "challenge":
        query = (
            select(AcmeChallenge)
            .join(AcmeAuthorization, AcmeAuthorization.id == AcmeChallenge.authorization_id)
            .join(AcmeOrder, AcmeOrder.id == AcmeAuthorization.order_id)
            .where(AcmeChallenge.id == bindparam("object_id"))
            .options(
                contains_eager(AcmeChallenge.authorization).contains_eager(AcmeAuthorization.order)
            )
        )
    else:  # the issued certificate of an order, and the order's status
        query = (
            select(Certificate, AcmeOrder.status)
            .join(CertificateRequest, CertificateRequest.certificate_id == Certificate.id)
            .join(AcmeOrder, AcmeOrder.request_id == CertificateRequest.id)
            .where(
                AcmeOrder.id == bindparam("object_id"),
                CertificateRequest.status == RequestStatus.ISSUED,
            )
        )
    query = query.where(AcmeOrder.account_id == bindparam("account_id"))
    if in_directory:
        query = query.join(CertificateProfile, CertificateProfile.id == AcmeOrder.profile_id).where(
            CertificateProfile.acme_slug == bindparam("slug")
        )
    return query


def _find(kind: str, object_id: int, account_id: int, slug: str | None) -> Any:
    params: dict[str, Any] = {"object_id": object_id, "account_id": account_id}
    if slug is not None:
        params["slug"] = slug
    return db.session.execute(_lookup(kind, slug is not None), params)


def load_order(
    *, account_id: int, order_id: int, slug: str | None = None
) -> tuple[AcmeOrder, RequestState | None]:
    """The account's order (under the directory ``slug``), refreshed (§7.1.6), and the state
    of its certificate request: the order, its authorizations and the request's state in
    one statement. Another account's order, or another directory's, is "not found".

    Raises:
        AcmeProblem: malformed (404).
    """
    row = _find("order", order_id, account_id, slug).unique().first()
    if row is None:
        raise _not_found("order", order_id)
    order = row[0]
    state = RequestState(*row[1:]) if order.request_id is not None else None
    return refresh_order(order, state), state


def get_order(*, account_id: int, order_id: int, slug: str | None = None) -> AcmeOrder:
    return load_order(account_id=account_id, order_id=order_id, slug=slug)[0]


def get_authorization(
    *, account_id: int, authz_id: int, slug: str | None = None
) -> AcmeAuthorization:
    """The account's authorization with its order and its challenges (one statement)."""
    authz = _find("authorization", authz_id, account_id, slug).unique().scalar_one_or_none()
    if authz is None:
        raise _not_found("authorization", authz_id)
    _expire_authorization(authz)
    return authz


def get_challenge(*, account_id: int, challenge_id: int, slug: str | None = None) -> AcmeChallenge:
    """The account's challenge with its authorization and order (one statement)."""
    chall = _find("challenge", challenge_id, account_id, slug).scalar_one_or_none()
    if chall is None:
        raise _not_found("challenge", challenge_id)
    return chall


def _expire_authorization(authz: AcmeAuthorization) -> None:
    if authz.status == Status.PENDING and authz.expires_at <= utcnow():
        authz.status = Status.EXPIRED.value


def refresh_order(order: AcmeOrder, request: RequestState | None = None) -> AcmeOrder:
    """§7.1.6: the order's status from its authorizations and its certificate request
    (``request``: its state when the caller read it already)."""
    if order.status in (Status.VALID, Status.INVALID):
        return order
    if order.request_id is not None:
        req = request or request_state(order.request_id)
        assert req is not None
        if req.status == RequestStatus.ISSUED:
            order.status = Status.VALID.value
        elif req.status in (RequestStatus.DECLINED, RequestStatus.FAILED):
            order.status = Status.INVALID.value
            order.error = AcmeProblem(
                "serverInternal" if req.status == RequestStatus.FAILED else "unauthorized",
                f"the certificate request was {req.status.value.lower()}: "
                f"{req.failure_reason or req.decision_message or 'no reason given'}",
            ).document()
        return order
    for authz in order.authorizations:
        _expire_authorization(authz)
    states = {a.status for a in order.authorizations}
    if order.expires_at <= utcnow() and order.status != Status.PROCESSING:
        order.status = Status.INVALID.value
        order.error = AcmeProblem("malformed", "the order expired").document()
    elif states & {Status.INVALID, Status.EXPIRED, Status.DEACTIVATED}:
        order.status = Status.INVALID.value
    elif states == {Status.VALID}:
        order.status = Status.READY.value
    return order


# The longest Retry-After for work on the workers (the actors' time limit is 60 s), and for
# an order waiting for an administrator's approval (a person decides in minutes).
WORKER_RETRY_MAX = 10
APPROVAL_RETRY_MAX = 60


def retry_after(
    obj: AcmeOrder | AcmeAuthorization | AcmeChallenge, request: RequestState | None = None
) -> int | None:
    """Seconds a client should wait before asking about ``obj`` again (RFC 8555 §7.4, §8.2:
    messages.retry_after of how long its work has waited), or None when the server is not
    working on it: a challenge being validated, an authorization with such a challenge,
    an order being issued or waiting for its request's approval (``request``: the order's
    request state when the caller read it already)."""
    now = utcnow()
    if isinstance(obj, AcmeChallenge):
        if obj.status != Status.PROCESSING:
            return None
        since = obj.dispatched_at or now
        return messages.retry_after((now - since).total_seconds(), longest=WORKER_RETRY_MAX)
    if isinstance(obj, AcmeAuthorization):
        if obj.status != Status.PENDING:
            return None
        waits = [retry_after(c) for c in obj.challenges if c.status == Status.PROCESSING]
        return min((w for w in waits if w is not None), default=None)
    if obj.status != Status.PROCESSING or obj.request_id is None:
        return None
    req = request or request_state(obj.request_id)
    if req is not None and req.status == RequestStatus.REQUESTED:  # an administrator decides
        waited = (now - req.created_at).total_seconds()
        return messages.retry_after(waited, longest=APPROVAL_RETRY_MAX)
    since = obj.dispatched_at or (req.decided_at if req is not None else None) or now
    return messages.retry_after((now - since).total_seconds(), longest=WORKER_RETRY_MAX)


def respond(
    *, account_id: int, challenge_id: int, account_url: str, slug: str | None = None
) -> AcmeChallenge:
    """§7.5.1: the client says it is ready; validation is sent to a worker after commit
    (dispatch.send_validation). ``account_url``: the account's URL as this client sees it
    (its kid), kept on the challenge for CAA's accounturi (RFC 8657 §3). Responding again
    does nothing more."""
    chall = get_challenge(account_id=account_id, challenge_id=challenge_id, slug=slug)
    authz = chall.authorization
    _expire_authorization(authz)
    if authz.status != Status.PENDING or chall.status != Status.PENDING:
        return chall
    chall.status = Status.PROCESSING.value
    chall.account_url = account_url
    dispatch.send_validation(chall)
    return chall


def _requester_email(account: AcmeAccount) -> str:
    for contact in account.contact:
        if contact.startswith("mailto:"):
            return contact[len("mailto:") :]
    return ""


def finalize(
    *, account: AcmeAccount, order_id: int, csr_der: bytes, slug: str | None = None
) -> AcmeOrder:
    """§7.4: a ready order's CSR becomes a certificate request through the console's
    enrollment checks (delegated names, key policy, blocked keys, profile terms); the
    profile's approval rule applies (the order stays processing until approved).

    Raises:
        AcmeProblem: orderNotReady; badCSR for an unreadable CSR, names other than the
            order's, or any enrollment refusal (its message says which).
    """
    order = get_order(account_id=account.id, order_id=order_id, slug=slug)
    if order.status != Status.READY:
        raise AcmeProblem("orderNotReady", f"the order is {order.status}, not ready")
    try:
        parsed = pki_csr.parse_csr(csr_der)
    except PkiError as exc:
        raise AcmeProblem("badCSR", f"the CSR is not usable: {exc}") from exc
    wanted = {i["value"] for i in order.identifiers}
    asked = {n.lower() for n in parsed.dns_names}
    if parsed.common_name:
        asked.add(parsed.common_name.lower())
    if parsed.ip_addresses or parsed.emails or parsed.other_names:
        raise AcmeProblem("badCSR", "the CSR may hold DNS names only (those of the order)")
    if asked != wanted:
        extra, missing = sorted(asked - wanted), sorted(wanted - asked)
        raise AcmeProblem(
            "badCSR",
            "the CSR's names must be exactly the order's identifiers"
            + (f"; not in the order: {', '.join(extra)}" if extra else "")
            + (f"; missing: {', '.join(missing)}" if missing else ""),
        )
    profile = order.profile
    data = enrollment.RequestData(
        organization_id=account.organization_id,
        department_id=account.department_id,
        profile_id=profile.id,
        term_days=acme_term_days(profile),
        mode=RequestMode.CSR,
        csr=csr_der,
        common_name=parsed.common_name or "",
        requester_email=_requester_email(account),
        eula_accepted=True,
        comments=f"ACME order #{order.id} of account #{account.id} ({order.user_agent})"[:2000],
        cert_type=CertType.SSL,
    )
    # Ready -> processing by one conditional UPDATE: of two finalize requests racing for
    # one order, one makes a certificate request and the other is refused.
    moved = db.session.execute(
        update(AcmeOrder)
        .where(AcmeOrder.id == order.id, AcmeOrder.status == Status.READY.value)
        .values(status=Status.PROCESSING.value)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise AcmeProblem("orderNotReady", "the order is being finalized already")
    try:
        req = enrollment.submit_request(actor=SYSTEM, data=data, queue_issuance=False)
    except DomainError as exc:
        raise AcmeProblem("badCSR", exc.message) from exc
    order.request_id = req.id
    order.status = Status.PROCESSING.value
    if req.status == RequestStatus.APPROVED:  # approved at once: issue as soon as we commit
        dispatch.send_issuance(order)
    return order


def issue_order(*, order_id: int) -> AcmeOrder | None:
    """Issue the certificate of an order whose request finalize approved (the message
    dispatch.send_issuance sent), with the batch code every issuance runs; the order is
    then valid, or invalid when the request failed (its reason in the order's error).
    None when the order has nothing to issue.

    Safe to run twice: a request no longer Approved is skipped; of two runs at once, the
    one that loses the request's conditional update raises IssuanceRaced and must roll
    back. The caller commits.

    Raises:
        IssuanceRaced: another run issued the request meanwhile.
    """
    order = db.session.get(AcmeOrder, order_id)
    if order is None or order.request_id is None or order.status != Status.PROCESSING:
        return None
    issuance.issue_requests([order.request_id])
    # Issued (or Failed) by statements on the table: refresh_order reads the request's
    # state with a statement of its own.
    return refresh_order(order)


def issuance_failed(*, order_id: int, reason: str) -> None:
    """The last attempt at an order's issuance raised: its request becomes Failed with the
    reason (audited), and the order invalid. The caller commits."""
    order = db.session.get(AcmeOrder, order_id)
    if order is None or order.request_id is None:
        return
    issuance.fail_unissued(
        request_ids=[order.request_id], reason=f"issuing ACME order #{order.id} failed: {reason}"
    )
    refresh_order(order)


def certificate_of(
    *, account_id: int, order_id: int, slug: str | None = None
) -> tuple[Certificate, list[x509.Certificate]]:
    """The issued certificate of the account's order (under the directory ``slug``) and its
    chain (issuer first): one statement when it is there; otherwise the order says why not.

    Raises:
        AcmeProblem: malformed (404): no such order, or no certificate (yet).
    """
    row = _find("certificate", order_id, account_id, slug).first()
    if row is None or row.status != Status.VALID:
        # Not issued, or issued while nobody polled the order (an administrator's approval
        # queues the issuance): the order says which, and follows its request (§7.1.6).
        order = get_order(account_id=account_id, order_id=order_id, slug=slug)
        if order.status != Status.VALID or row is None:
            raise AcmeProblem(
                "malformed", f"the order is {order.status}: no certificate", status=404
            )
    return row[0], inventory.chain_for(row[0])


def revoke(
    *, account: AcmeAccount | None, jwk: jose.Jwk | None, request: messages.Revocation
) -> Certificate:
    """§7.6: revoke by the account that ordered the certificate, or by the certificate's
    own key (``jwk``, no account needed).

    Raises:
        AcmeProblem: malformed (not a certificate of ours), unauthorized, alreadyRevoked,
            badRevocationReason.
    """
    fingerprint = hashlib.sha256(request.certificate_der).hexdigest()
    cert = db.session.execute(
        select(Certificate).where(Certificate.fingerprint == fingerprint)
    ).scalar_one_or_none()
    if cert is None or cert.ca_id is None:
        raise AcmeProblem("malformed", "that certificate was not issued by this server", status=404)
    if account is not None:
        ordered = db.session.execute(
            select(AcmeOrder.id)
            .join(CertificateRequest, CertificateRequest.id == AcmeOrder.request_id)
            .where(AcmeOrder.account_id == account.id, CertificateRequest.certificate_id == cert.id)
        ).first()
        if ordered is None:
            raise AcmeProblem("unauthorized", "this account did not order that certificate")
    else:
        assert jwk is not None
        leaf = x509.load_der_x509_certificate(cert.der)
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        theirs = jwk.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if spki != theirs:
            raise AcmeProblem("unauthorized", "the request is not signed by the certificate's key")
    try:
        revocation.revoke(
            actor=SYSTEM,
            certificate_ids=[cert.id],
            reason=str(request.reason),
            message="revoked over ACME"
            + (f" by account #{account.id}" if account else " with the certificate's key"),
            revoker=Revoker.SUBSCRIBER,
        )
    except Conflict as exc:
        raise AcmeProblem("alreadyRevoked", exc.message) from exc
    except DomainError as exc:
        raise AcmeProblem("badRevocationReason", exc.message) from exc
    return cert


@dataclass(frozen=True)
class AcmeOrigin:
    """How an ACME certificate came to be, for the inventory."""

    order_id: int
    account_id: int
    user_agent: str
    directory: str

    @property
    def label(self) -> str:
        agent = f", {self.user_agent}" if self.user_agent else ""
        return f"ACME account #{self.account_id} (order #{self.order_id}{agent})"


def acme_origins(certificate_requests: dict[int, int]) -> dict[int, AcmeOrigin]:
    """The ACME order behind each certificate issued over ACME, by certificate id, from a
    {certificate id: request id} map (one query for a page of the inventory)."""
    request_ids = {r for r in certificate_requests.values() if r is not None}
    if not request_ids:
        return {}
    rows = db.session.execute(
        select(
            AcmeOrder.request_id,
            AcmeOrder.id,
            AcmeOrder.account_id,
            AcmeOrder.user_agent,
            CertificateProfile.acme_slug,
        )
        .join(CertificateProfile, CertificateProfile.id == AcmeOrder.profile_id)
        .where(AcmeOrder.request_id.in_(request_ids))
    ).all()
    by_request = {
        r.request_id: AcmeOrigin(r.id, r.account_id, r.user_agent, r.acme_slug or "") for r in rows
    }
    return {
        cert_id: by_request[req_id]
        for cert_id, req_id in certificate_requests.items()
        if req_id in by_request
    }


def acme_certificates_clause() -> Any:
    """SQL: the certificate was issued for an ACME order (the inventory's Origin filter)."""
    return Certificate.request_id.in_(
        select(AcmeOrder.request_id).where(AcmeOrder.request_id.is_not(None))
    )
