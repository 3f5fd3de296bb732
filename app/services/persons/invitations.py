"""Invitations: a one-time registration code mailed to a person, bound to that person,
stored only as its SHA-256, single use, expiring (per organization, 7 days by default);
resend (the previous code stops working) and revoke.

A code is 160 bits from the CSPRNG, written as 32 base32 characters in groups of four.
An invitation is the approval of the certificate it leads to: only an administrator who
holds the Client privilege where the person is may send it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime, timedelta
from urllib.parse import quote

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import (
    CertificateProfile,
    CertType,
    Invitation,
    InvitationKind,
    InvitationStatus,
    Organization,
    Person,
    PortalSettings,
)
from app.models.types import utcnow
from app.pki import smime
from app.pki.errors import PkiError
from app.services import audit
from app.services.errors import Conflict, DomainError, Forbidden, NotFound
from app.services.persons import mailing
from app.services.persons.persons import get_person
from app.services.scope import Actor, require_actor, scope_of

CODE_BYTES = 20  # 160 bits (the issue asks at least 128)
DEFAULT_DAYS = 7
MAX_DAYS = 90
# Typed codes: case, spaces and dashes do not matter; digits that look like letters of
# the base32 alphabet (which has no 0, 1, 8, 9) are read as those letters.
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalize_code(text: str) -> str:
    return "".join(text.split()).replace("-", "").upper().translate(_LOOKALIKES)


def code_hash(text: str) -> str:
    return hashlib.sha256(normalize_code(text).encode()).hexdigest()


def invitation_days(organization_id: int) -> int:
    found = db.session.get(PortalSettings, organization_id)
    return found.invitation_days if found is not None else DEFAULT_DAYS


def set_invitation_days(*, actor: Actor, organization_id: int, days: int) -> PortalSettings:
    """How long an organization's invitation codes stay valid (1 to 90 days)."""
    org = db.session.get(Organization, organization_id)
    scope = scope_of(require_actor(actor))
    if org is None or not (scope.is_master or org.id in scope.visible_org_ids):
        raise NotFound("No such organization.")
    if not scope.manages_org(org.id):
        raise Forbidden(f"You may not change the settings of {org.name}.")
    if not 1 <= days <= MAX_DAYS:
        raise DomainError(
            f"Invitations stay valid between 1 and {MAX_DAYS} days.", field="invitation_days"
        )
    found = db.session.get(PortalSettings, org.id)
    before = found.invitation_days if found else DEFAULT_DAYS
    if found is None:
        found = PortalSettings(organization_id=org.id, invitation_days=days)
        db.session.add(found)
    found.invitation_days = days
    if before != days:
        audit.record(
            action="organization.invitation_days",
            actor=actor,
            object_type="Organization",
            object_id=org.id,
            label=org.name,
            before={"invitation_days": before},
            after={"invitation_days": days},
            organization_id=org.id,
        )
    return found


def portal_url(path: str) -> str:
    return f"{current_app.config['CW_BASE_URL']}{path}"


def register_link(email: str) -> str:
    return portal_url(f"/enroll/register?email={quote(email, safe='@')}")


def show_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def check_choice(profile_id: int, term_days: int, key_type: str) -> CertificateProfile:
    """The profile, term and key type an invitation fixes for the person.

    Raises:
        DomainError / NotFound: at the field concerned.
    """
    profile = db.session.get(CertificateProfile, profile_id)
    if profile is None or not profile.active or profile.cert_type != CertType.CLIENT:
        raise NotFound("Choose an active Client certificate profile.", field="profile")
    if term_days not in profile.terms:
        raise DomainError(
            f"A term of {term_days} days is not allowed by the profile '{profile.name}' (allowed: {profile.terms_label}).",
            field="term",
        )
    try:
        smime.check_term(term_days)
    except PkiError as exc:
        raise DomainError(str(exc), field="term") from exc
    if key_type not in profile.key_types:
        raise DomainError(
            f"Choose a key type the profile allows ({', '.join(profile.key_types)}).",
            field="key_type",
        )
    return profile


def _supersede_pending(person_id: int) -> list[int]:
    ids = list(
        db.session.execute(
            select(Invitation.id).where(
                Invitation.person_id == person_id, Invitation.status == InvitationStatus.PENDING
            )
        ).scalars()
    )
    if ids:
        db.session.execute(
            update(Invitation)
            .where(Invitation.id.in_(ids), Invitation.status == InvitationStatus.PENDING)
            .values(status=InvitationStatus.SUPERSEDED)
        )
    return ids


def issue_code(
    *,
    person: Person,
    profile: CertificateProfile,
    term_days: int,
    key_type: str,
    kind: InvitationKind,
    created_by_id: int | None,
    renews_certificate_id: int | None = None,
) -> tuple[Invitation, str, list[int]]:
    """Store a new invitation, superseding the person's pending ones; return it, its code
    (which from now on exists nowhere but in the mail the caller sends) and the ids of the
    invitations it superseded."""
    superseded = _supersede_pending(person.id)
    code = new_code()
    now = utcnow()
    invitation = Invitation(
        person_id=person.id,
        kind=kind,
        profile_id=profile.id,
        term_days=term_days,
        key_type=key_type,
        code_hash=code_hash(code),
        status=InvitationStatus.PENDING,
        expires_at=now + timedelta(days=invitation_days(person.organization_id)),
        created_at=now,
        created_by_id=created_by_id,
        renews_certificate_id=renews_certificate_id,
    )
    db.session.add(invitation)
    db.session.flush()
    return invitation, code, superseded


def person_context(person: Person) -> dict[str, str]:
    return {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "full_name": person.full_name,
        "email": person.email,
        "organization": person.organization.name,
        "department": person.department.name if person.department else "",
    }


def send_invitation(
    *, actor: Actor, person_id: int, profile_id: int, term_days: int, key_type: str
) -> Invitation:
    """Mail the person a registration link and a new one-time code (an earlier pending
    code of theirs stops working)."""
    person = get_person(actor=actor, person_id=person_id)
    profile = check_choice(profile_id, term_days, key_type)
    invitation, code, superseded = issue_code(
        person=person,
        profile=profile,
        term_days=term_days,
        key_type=key_type,
        kind=InvitationKind.REGISTRATION,
        created_by_id=actor.id,
    )
    mailing.send(
        kind="invitation",
        organization_id=person.organization_id,
        department_id=person.department_id,
        to=person.email,
        context={
            **person_context(person),
            "link": register_link(person.email),
            "code": code,
            "expires": show_time(invitation.expires_at),
        },
    )
    audit.record(
        action="invitation.send",
        actor=actor,
        object_type="Invitation",
        object_id=invitation.id,
        label=person.email,
        after={
            "person_id": person.id,
            "profile": profile.name,
            "term_days": term_days,
            "key_type": key_type,
            "expires_at": invitation.expires_at,
            "superseded": superseded,
        },
        organization_id=person.organization_id,
        department_id=person.department_id,
    )
    return invitation


def get_invitation(*, actor: Actor, invitation_id: int) -> Invitation:
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    get_person(actor=actor, person_id=invitation.person_id)  # NotFound outside the scope
    return invitation


def resend_invitation(*, actor: Actor, invitation_id: int) -> Invitation:
    """A new code for the same person, profile, term and key type; the old one stops
    working at once."""
    old = get_invitation(actor=actor, invitation_id=invitation_id)
    if old.kind != InvitationKind.REGISTRATION:
        raise DomainError("A renewal code is asked for by the person on the portal.")
    if old.status == InvitationStatus.USED:
        raise Conflict("This invitation was used; send a new one to issue another certificate.")
    return send_invitation(
        actor=actor,
        person_id=old.person_id,
        profile_id=old.profile_id,
        term_days=old.term_days,
        key_type=old.key_type,
    )


def revoke_invitation(*, actor: Actor, invitation_id: int) -> Invitation:
    invitation = get_invitation(actor=actor, invitation_id=invitation_id)
    result = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.status == InvitationStatus.PENDING)
        .values(status=InvitationStatus.REVOKED)
    )
    if result.rowcount != 1:
        raise Conflict(
            f"The invitation is {invitation.status.value}; only a pending one is revoked."
        )
    audit.record(
        action="invitation.revoke",
        actor=actor,
        object_type="Invitation",
        object_id=invitation.id,
        label=invitation.person.email,
        before={"status": "Pending"},
        after={"status": "Revoked"},
        organization_id=invitation.person.organization_id,
        department_id=invitation.person.department_id,
    )
    db.session.expire(invitation)
    return invitation


def is_live(invitation: Invitation) -> bool:
    return invitation.status == InvitationStatus.PENDING and invitation.expires_at > utcnow()
