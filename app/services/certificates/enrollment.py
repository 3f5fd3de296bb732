"""Certificate requests: validate, store, approve or decline.

Each failure raises a DomainError with a specific message and nothing is stored. The
subject is always the organization's (O, L, ST, C; OU = department) with the requested CN:
values missing from a CSR or different from the organization's are replaced. Client
(S/MIME) certificates are the exception: their subject follows the S/MIME BR mailbox- or
individual-validated profile (app/pki/smime.py), which forbids O and OU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.extensions import db
from app.models import (
    CertificateProfile,
    CertificateRequest,
    CertType,
    Department,
    Organization,
    RequestMode,
    RequestStatus,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.pki import csr as pki_csr
from app.pki import keys, names, smime, subject_text
from app.pki.errors import PkiError
from app.pki.profiles import check_term
from app.services import audit
from app.services.accounts.admins import normalize_email
from app.services.ca import blocked_keys
from app.services.ca.profiles import CODE_SIGNING_KEY_TYPES, KIND_OF
from app.services.certificates import approvals, issuance
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.notifications import events
from app.services.scope import SYSTEM, Actor, scope_of
from app.services.structure import domains, orgs

MAX_CSR_BYTES = 32 * 1024
REQUEST_FIELDS = (
    "cert_type",
    "profile_id",
    "organization_id",
    "department_id",
    "mode",
    "key_type",
    "common_name",
    "sans",
    "subject",
    "term_days",
    "requester_email",
    "external_requesters",
    "auto_renew",
    "renew_days_before",
)


@dataclass(frozen=True)
class RequestData:
    organization_id: int
    profile_id: int
    term_days: int
    mode: RequestMode
    department_id: int | None = None
    csr: bytes | None = None
    key_type: str | None = None
    common_name: str = ""
    sans: Sequence[str] = ()
    requester_email: str = ""
    external_requesters: Sequence[str] = ()
    auto_renew: bool = False
    renew_days_before: int = 30
    eula_accepted: bool = False
    comments: str = ""
    cert_type: CertType = CertType.SSL
    renewal_of_id: int | None = None
    replaces_id: int | None = None
    # Client certificates of a person (app/services/persons): who, and the S/MIME subject
    # (smime.subject_values); without it a client subject is mailbox-validated.
    person_id: int | None = None
    smime_subject: Mapping[str, str] | None = None


@dataclass
class Checked:
    """A request that passed every check, ready to store."""

    org: Organization
    dept: Department | None
    profile: CertificateProfile
    key_type: str
    public_key_der: bytes | None
    csr_der: bytes | None
    common_name: str
    sans: list[str]
    subject: dict[str, str]
    external: list[str] = field(default_factory=list)


def _place(actor: Actor, data: RequestData) -> tuple[Organization, Department | None]:
    org = db.session.get(Organization, data.organization_id)
    scope = scope_of(actor)
    if org is None:
        raise NotFound("No such organization.", field="organization")
    if not (scope.is_master or org.id in scope.visible_org_ids):
        raise audit.denied(
            actor=actor,
            what="organization",
            object_type="Organization",
            object_id=org.id,
            field="organization",
        )
    dept = None
    if data.department_id is not None:
        dept = db.session.get(Department, data.department_id)
        if dept is None:
            raise NotFound("No such department.", field="department")
        # A department the admin may not see is named nowhere (not even in "does not belong").
        if not scope.covers(dept.organization_id, dept.id):
            raise audit.denied(
                actor=actor,
                what="department",
                object_type="Department",
                object_id=dept.id,
                field="department",
            )
        if dept.organization_id != org.id:
            raise DomainError(
                "That department does not belong to the chosen organization.", field="department"
            )
    if not scope.may(data.cert_type, org.id, dept.id if dept else None):
        where = f"{org.name} / {dept.name}" if dept else org.name
        raise Forbidden(
            f"You may not request {data.cert_type.label} certificates for {where}.",
            field="organization",
        )
    return org, dept


def _profile(data: RequestData) -> CertificateProfile:
    profile = db.session.get(CertificateProfile, data.profile_id)
    if profile is None or not profile.active:
        raise NotFound("No such active certificate profile.", field="profile")
    if profile.cert_type != data.cert_type:
        raise DomainError(
            f"The profile '{profile.name}' is for {profile.cert_type.label} certificates, not {data.cert_type.label}.",
            field="profile",
        )
    if data.term_days not in profile.terms:
        raise DomainError(
            f"A term of {data.term_days} days is not allowed by the profile '{profile.name}' (allowed: {profile.terms_label}).",
            field="term",
        )
    try:
        check_term(KIND_OF[profile.cert_type], data.term_days, utcnow())
        if profile.cert_type == CertType.CLIENT:
            smime.check_term(data.term_days)
    except PkiError as exc:
        raise DomainError(str(exc), field="term") from exc
    return profile


def _key(
    data: RequestData, profile: CertificateProfile
) -> tuple[str, bytes | None, bytes | None, pki_csr.ParsedCsr | None]:
    if data.mode == RequestMode.KEYGEN:
        if data.cert_type == CertType.CODE_SIGNING:
            raise DomainError(
                "Code signing keys never leave the publisher: send a CSR (Certwright does not generate code signing keys).",
                field="mode",
            )
        if not data.key_type or data.key_type not in profile.key_types:
            raise DomainError(
                f"Choose a key type the profile allows ({', '.join(profile.key_types)}).",
                field="key_type",
            )
        return data.key_type, None, None, None
    if not data.csr:
        raise DomainError("Paste or upload a CSR (PEM or DER).", field="csr")
    if len(data.csr) > MAX_CSR_BYTES:
        raise DomainError(f"The CSR is {len(data.csr)} bytes; the limit is 32 KB.", field="csr")
    try:
        parsed = pki_csr.parse_csr(data.csr)
    except PkiError as exc:
        raise DomainError(f"The CSR is not usable: {exc}", field="csr") from exc
    try:
        key_type = keys.check_key_policy(
            parsed.public_key,
            profile.key_types,
            blocked_spki_sha256=blocked_keys.BLOCKED,
            debian_weak=blocked_keys.DEBIAN_WEAK,
        )
    except PkiError as exc:
        raise DomainError(
            f"{exc} (profile '{profile.name}' allows {', '.join(profile.key_types)})", field="csr"
        ) from exc
    if data.cert_type == CertType.CODE_SIGNING and key_type not in CODE_SIGNING_KEY_TYPES:
        raise DomainError(
            f"A code signing key must be RSA-3072 or larger, or EC-P256/EC-P384 (CS BR 6.1.5.2), not {key_type}.",
            field="csr",
        )
    public_der = parsed.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return key_type, public_der, parsed.csr.public_bytes(Encoding.DER), parsed


def _refuse_unissued_names(parsed: pki_csr.ParsedCsr, cert_type: CertType) -> None:
    """A name the CSR asks for that the certificate would not carry is refused, never
    silently dropped: emails in an SSL CSR, and any URI, directory name, other name or
    registered ID (Certwright certifies DNS names, IP addresses and emails; device
    certificates URIs too)."""
    if parsed.emails and cert_type == CertType.SSL:
        raise DomainError(
            f"The CSR asks for the email address {parsed.emails[0]}: SSL certificates carry "
            "DNS names and IP addresses only. Make a CSR without it (or request a Client "
            "certificate).",
            field="csr",
        )
    others = parsed.other_names
    if cert_type == CertType.DEVICE:  # device certificates carry URIs (ParsedCsr.uris)
        others = tuple(o for o in others if o.removeprefix("URI ") not in parsed.uris)
    if others:
        carried = (
            "DNS names, IP addresses and URIs"
            if cert_type == CertType.DEVICE
            else "DNS names, IP addresses and email addresses"
        )
        raise DomainError(
            f"The CSR asks for the subject alternative name {others[0]}, which "
            f"{cert_type.label} certificates from Certwright do not carry (only {carried}). "
            "Make a CSR without it.",
            field="csr",
        )


def _names(data: RequestData, parsed: pki_csr.ParsedCsr | None) -> tuple[str, list[str]]:
    """The CN (form, else the CSR's) and the SANs (CSR's plus the form's), normalised."""
    common_name = data.common_name.strip() or (parsed.common_name if parsed else "") or ""
    raw = list(data.sans)
    if parsed is not None:
        _refuse_unissued_names(parsed, data.cert_type)
        raw = [
            *parsed.dns_names,
            *(str(ip) for ip in parsed.ip_addresses),
            *parsed.emails,
            *raw,
        ]
    if not common_name and raw:
        common_name = raw[0]
    if not common_name:
        raise DomainError("Give a common name (or use 'get from CSR').", field="common_name")
    if len(common_name) > 64:
        raise DomainError(
            "The common name may be at most 64 characters (RFC 5280 ub-common-name).",
            field="common_name",
        )
    try:
        alt = names.parse_alt_names([common_name, *raw])
    except PkiError as exc:
        raise DomainError(f"Invalid name: {exc}", field="sans") from exc
    if alt.emails and data.cert_type == CertType.SSL:
        raise DomainError(
            "SSL certificates carry DNS names and IP addresses, not email addresses.", field="sans"
        )
    if alt.uris:
        raise DomainError(
            f"URIs go into Device certificates only, not {data.cert_type.label} certificates.",
            field="sans",
        )
    values = [*alt.dns_names, *(str(ip) for ip in alt.ip_addresses), *alt.emails]
    cn_host = names.common_name_host(common_name, single_label=True)
    if cn_host is not None:
        common_name = str(cn_host)
    return common_name, values


def _device_names(data: RequestData, parsed: pki_csr.ParsedCsr | None) -> tuple[str, list[str]]:
    """A device certificate's CN (the device name or serial, free text) and SANs: DNS
    names, IP addresses and URIs; a CN that is a host name or address is one of them."""
    raw = list(data.sans)
    if parsed is not None:
        _refuse_unissued_names(parsed, data.cert_type)
        raw = [
            *parsed.dns_names,
            *(str(ip) for ip in parsed.ip_addresses),
            *parsed.uris,
            *parsed.emails,
            *raw,
        ]
    common_name = " ".join(
        (data.common_name or (parsed.common_name if parsed else "") or "").split()
    )
    if not common_name and raw:
        common_name = raw[0]
    if not common_name:
        raise DomainError(
            "Give the device's name or serial number as the common name.", field="common_name"
        )
    if len(common_name) > 64:
        raise DomainError(
            "The common name may be at most 64 characters (RFC 5280 ub-common-name).",
            field="common_name",
        )
    refused = subject_text.refused_character(common_name)
    if refused is not None:
        raise DomainError(
            f"The common name may not contain {refused[1]} (at position {refused[0] + 1}).",
            field="common_name",
        )
    host = names.common_name_host(common_name)
    try:
        alt = names.parse_alt_names([*([str(host)] if host is not None else []), *raw])
    except PkiError as exc:
        raise DomainError(f"Invalid name: {exc}", field="sans") from exc
    if alt.emails:
        raise DomainError(
            "Device certificates carry DNS names, IP addresses and URIs, not email addresses.",
            field="sans",
        )
    values = [*alt.dns_names, *(str(ip) for ip in alt.ip_addresses), *alt.uris]
    return (str(host) if host is not None else common_name), values


def _code_signing_names(
    data: RequestData, parsed: pki_csr.ParsedCsr | None, org: Organization
) -> tuple[str, list[str]]:
    """The publisher is the organization (CS BR 7.1.4.2: the CN is the subject's name),
    whatever the CSR says; code signing certificates name nothing else."""
    if [s for s in data.sans if s.strip()] or (
        parsed is not None
        and (parsed.dns_names or parsed.ip_addresses or parsed.emails or parsed.other_names)
    ):
        raise DomainError(
            "Code signing certificates name the publisher (the organization) in the subject and carry no alternative names.",
            field="sans",
        )
    return org.name, []


def _client_names(
    data: RequestData, parsed: pki_csr.ParsedCsr | None
) -> tuple[str, list[str], dict[str, str]]:
    """A client certificate's CN, SANs (email addresses only) and S/MIME subject. An
    email-shaped common name (the form's, else the CSR's) is the first address; any other
    common name is not used (the S/MIME subject is built from the address or the person)."""
    raw = list(data.sans)
    if parsed is not None:
        _refuse_unissued_names(parsed, data.cert_type)
        raw = [*parsed.dns_names, *(str(ip) for ip in parsed.ip_addresses), *parsed.emails, *raw]
    common_name = data.common_name.strip() or (parsed.common_name if parsed else "") or ""
    if "@" in common_name:
        raw.insert(0, common_name)
    try:
        alt = names.parse_alt_names(raw)
    except PkiError as exc:
        raise DomainError(f"Invalid name: {exc}", field="sans") from exc
    if alt.dns_names or alt.ip_addresses:
        raise DomainError(
            "Client (S/MIME) certificates carry email addresses only, not DNS names or IP addresses.",
            field="sans",
        )
    if not alt.emails:
        raise DomainError("A client certificate needs an email address.", field="sans")
    try:
        subject = dict(
            data.smime_subject
            or smime.subject_values(smime.ValidationLevel.MAILBOX, email=alt.emails[0])
        )
        smime.build_subject(subject)
    except PkiError as exc:
        raise DomainError(f"Invalid subject: {exc}", field="common_name") from exc
    return subject["CN"], list(alt.emails), subject


def max_renewal_window(term_days: int) -> int:
    """The most days before expiry an auto-renewal may start for a term: half of it.

    A certificate serves at least half its term before it is renewed. A window as long as
    the term (or longer) would put every renewal inside its own window at birth, and the
    hourly sweep would renew it again at once, and again; half the term also leaves room
    for the usual settings (30 days of 90, 90 days of a year). A one-day term has none.
    """
    return term_days // 2


def check_renewal_window(term_days: int, renew_days_before: int) -> None:
    """Raises DomainError when auto-renewal N days before expiry does not fit the term."""
    most = max_renewal_window(term_days)
    if most < 1:
        raise DomainError(
            f"A {term_days}-day term is too short to renew automatically: turn auto-renew off or choose a term of at least 2 days.",
            field="renew_days_before",
        )
    if renew_days_before > most:
        raise DomainError(
            f"Renewing {renew_days_before} days before expiry does not fit a {term_days}-day term: "
            f"a certificate serves at least half its term before it is renewed, so renew at most {most} days before expiry.",
            field="renew_days_before",
        )


def check_request(*, actor: Actor, data: RequestData) -> Checked:
    """Every check of the request wizard, in the order a person fixes them."""
    if not data.eula_accepted:
        raise DomainError(
            "Accept the subscriber agreement (EULA) to submit the request.", field="eula"
        )
    org, dept = _place(actor, data)
    profile = _profile(data)
    key_type, public_der, csr_der, parsed = _key(data, profile)
    client_subject: dict[str, str] | None = None
    if data.cert_type == CertType.CLIENT:
        common_name, sans, client_subject = _client_names(data, parsed)
    elif data.cert_type == CertType.DEVICE:
        common_name, sans = _device_names(data, parsed)
        if "@" in common_name:  # an email-shaped device name is held to the email rule
            domains.check_names_delegated([common_name], org, dept, data.cert_type)
    elif data.cert_type == CertType.CODE_SIGNING:
        common_name, sans = _code_signing_names(data, parsed, org)
    else:
        common_name, sans = _names(data, parsed)
    domains.check_names_delegated(sans, org, dept, data.cert_type)
    external = []
    for i, address in enumerate(a for a in data.external_requesters if a.strip()):
        external.append(normalize_email(address, field="external_requesters"))
        if i >= 19:
            raise DomainError("At most 20 external requesters.", field="external_requesters")
    if not 1 <= data.renew_days_before <= 365:
        raise DomainError("Renew between 1 and 365 days before expiry.", field="renew_days_before")
    if data.auto_renew:
        check_renewal_window(data.term_days, data.renew_days_before)
    if data.cert_type == CertType.SSL and not (org.city or org.state):
        raise DomainError(
            f"The organization '{org.name}' needs a city or a state/province before it can appear in SSL certificates (CA/Browser Forum BR 7.1.4.2.2).",
            field="organization",
        )
    # BR 7.1.2.7.2 forbids the OU in TLS subscriber certificates (since 2022-09-01), so the
    # department goes into the OU of code signing and device certificates only; the S/MIME
    # BR's mailbox and individual profiles forbid O and OU (client_subject).
    ou = dept.name if dept and data.cert_type != CertType.SSL else ""
    subject = client_subject or {
        "C": org.country,
        "ST": org.state,
        "L": org.city,
        "O": org.name,
        "OU": ou,
        "CN": common_name,
    }
    return Checked(
        org,
        dept,
        profile,
        key_type,
        public_der,
        csr_der,
        common_name,
        sans,
        {k: v for k, v in subject.items() if v},
        external,
    )


def submit_request(
    *,
    actor: Actor,
    data: RequestData,
    approved_by: str = "",
    issue_now: bool = False,
    queue_issuance: bool = True,
) -> CertificateRequest:
    """Validate and store a request (status Requested, or Approved at once when the
    profile needs no approval, in which case issuance is queued after commit).

    ``approved_by`` approves it at once whatever the profile says, naming the decision
    (a person's invitation, sent by an administrator holding the Client privilege, is the
    approval of the registration it leads to); the caller then queues the issuance.

    ``issue_now``: an automatically approved request is issued in the caller's transaction
    instead of by a job (issuance.issue_requests, the same batch code a worker runs), so it
    is Issued (or Failed, with the reason) when the caller commits. For a front door that
    answers one request and whose client waits for the certificate (the REST API's enroll):
    no job, no message, no worker round trip, and the first collect finds it.

    ``queue_issuance=False``: an automatically approved request is left Approved without an
    issuance job; the caller sends its own message after commit (an ACME finalize, whose
    order carries the issuance: app.services.acme.dispatch).
    """
    req = _store(actor, data, check_request(actor=actor, data=data))
    if approved_by:
        approvals.mark_approved([req.id], actor=SYSTEM, message=approved_by)
    else:
        _approve_automatically([req], issue_now=issue_now, queue=queue_issuance)
    return req


class BatchRejected(DomainError):
    """Requests of a batch that failed their checks: nothing was stored; ``lines`` has one
    message per refused request, named by its label (a CSR's file name)."""

    def __init__(self, lines: list[str], total: int) -> None:
        super().__init__(
            f"Nothing was submitted: {len(lines)} of {total} requests were refused.", field="csr"
        )
        self.lines = lines


def submit_requests(
    *, actor: Actor, requests: Sequence[tuple[str, RequestData]]
) -> list[CertificateRequest]:
    """Submit many requests at once, all or nothing (one CSR per request, for scripts that
    enroll a fleet). Every request is checked before any is stored, and the ones whose
    profile needs no approval are queued for issuance together.

    Raises:
        BatchRejected: with every refused request and its reason; nothing is stored.
    """
    checked, lines = [], []
    for label, data in requests:
        try:
            checked.append((data, check_request(actor=actor, data=data)))
        except DomainError as exc:
            lines.append(f"{label}: {exc.message}")
    if lines:
        raise BatchRejected(lines, len(requests))
    stored = [_store(actor, data, item) for data, item in checked]
    _approve_automatically(stored)
    return stored


def _requester_email(actor: Actor, data: RequestData) -> str:
    """The request's email: the form's, else the admin's; the system (an ACME order of an
    account without a contact) may have none."""
    email = data.requester_email or getattr(actor, "email", "")
    return normalize_email(email, field="requester_email") if email else ""


def _store(actor: Actor, data: RequestData, checked: Checked) -> CertificateRequest:
    req = CertificateRequest(
        cert_type=data.cert_type,
        profile_id=checked.profile.id,
        # Held by the request: the session keeps loaded objects only while someone does,
        # and approval and issuance read the profile again in this transaction.
        profile=checked.profile,
        organization_id=checked.org.id,
        department_id=checked.dept.id if checked.dept else None,
        status=RequestStatus.REQUESTED,
        mode=data.mode,
        csr_der=checked.csr_der,
        public_key_der=checked.public_key_der,
        key_type=checked.key_type,
        common_name=checked.common_name,
        sans=checked.sans,
        subject=checked.subject,
        term_days=data.term_days,
        requester_id=actor.id,
        requester_email=_requester_email(actor, data),
        external_requesters=checked.external,
        comments=data.comments.strip(),
        auto_renew=data.auto_renew,
        renew_days_before=data.renew_days_before,
        eula_accepted_at=utcnow(),
        renewal_of_id=data.renewal_of_id,
        replaces_id=data.replaces_id,
        person_id=data.person_id,
    )
    db.session.add(req)
    db.session.flush()
    audit.record(
        action="request.create",
        actor=actor,
        object_type="CertificateRequest",
        object_id=req.id,
        label=req.common_name,
        after=audit.snapshot(req, REQUEST_FIELDS),
        organization_id=req.organization_id,
        department_id=req.department_id,
    )
    events.emit(
        events.request_event(
            NotificationType.REQUEST_CREATED,
            req,
            Profile=checked.profile.name,
            Term=f"{req.term_days} days",
        ),
        actor=actor,
    )
    return req


def _approve_automatically(
    reqs: Sequence[CertificateRequest], *, issue_now: bool = False, queue: bool = True
) -> None:
    """Requests whose profile needs no approval are approved and queued (or, with
    ``issue_now``, issued in this transaction; with ``queue`` False, left for the caller
    to issue), in one go. Code signing requests always wait for an administrator's
    approval (renewals too)."""
    by_profile: dict[str, list[int]] = {}
    for req in reqs:
        if not req.profile.requires_approval and req.cert_type != CertType.CODE_SIGNING:
            by_profile.setdefault(req.profile.name, []).append(req.id)
    for name, ids in by_profile.items():
        approvals.mark_approved(
            ids, actor=SYSTEM, message=f"approved automatically by profile '{name}'"
        )
    queued = [i for ids in by_profile.values() for i in ids]
    if queued and issue_now:
        issuance.issue_requests(queued)
        # Issued (or Failed) by statements on the table: the loaded objects do not know yet.
        for req in reqs:
            db.session.expire(req, ["status", "certificate_id", "issue_attempts", "failure_reason"])
    elif queued and queue:
        approvals.queue_issuance(queued)


orgs.register_reference(
    "certificate requests", CertificateRequest, "organization_id", "department_id"
)
