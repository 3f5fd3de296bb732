"""Certificate profiles: which CA enrolls, allowed terms and key types, approval rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    CertificateAuthority,
    CertificateProfile,
    CertificateRequest,
    CertType,
    LintMode,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki import keys, smime
from app.pki.errors import PkiError
from app.pki.profiles import (
    CertKind,
    ca_purpose_of,
    check_issuer_purpose,
    max_tls_validity_days,
)
from app.services import audit
from app.services.ca import signing
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed
from app.services.scope import Actor, require_actor

PROFILE_FIELDS = (
    "name",
    "description",
    "cert_type",
    "ca_id",
    "terms",
    "key_types",
    "requires_approval",
    "four_eyes",
    "allow_key_reuse",
    "include_client_auth",
    "include_server_auth",
    "key_escrow",
    "pkcs12_legacy",
    "lint_mode",
    "lint_sample_n",
    "active",
    "acme_slug",
)

# CS BR 6.1.5.2 (code signing subscriber keys).
CODE_SIGNING_KEY_TYPES = ("RSA-3072", "RSA-4096", "EC-P256", "EC-P384")

KIND_OF = {
    CertType.SSL: CertKind.SSL,
    CertType.CLIENT: CertKind.CLIENT,
    CertType.CODE_SIGNING: CertKind.CODE_SIGNING,
    CertType.DEVICE: CertKind.DEVICE,
}


@dataclass(frozen=True)
class ProfileData:
    name: str
    cert_type: CertType
    ca_id: int
    terms: tuple[int, ...]
    key_types: tuple[str, ...]
    description: str = ""
    requires_approval: bool = True
    four_eyes: bool = False
    allow_key_reuse: bool = True
    include_client_auth: bool = False
    include_server_auth: bool = False
    key_escrow: bool = False
    pkcs12_legacy: bool = False
    lint_mode: LintMode = LintMode.EVERY
    lint_sample_n: int = 100
    active: bool = True
    acme_slug: str = ""  # set: an ACME directory at /acme/<acme_slug>/directory


ACME_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def parse_terms(text: str) -> tuple[int, ...]:
    """'90, 180' -> (90, 180). Raises DomainError at the field 'terms'."""
    values = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise DomainError(f"'{part}' is not a whole number of days.", field="terms")
        values.append(int(part))
    return tuple(sorted(set(values)))


def _clean(data: ProfileData, profile_id: int | None) -> dict[str, object]:
    errors: dict[str, list[str]] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = ["The profile name is required."]
    elif db.session.execute(
        select(CertificateProfile.id).where(
            func.lower(CertificateProfile.name) == name.lower(),
            CertificateProfile.id != (profile_id or 0),
        )
    ).first():
        errors["name"] = [f"A profile named '{name}' already exists."]
    ca = db.session.get(CertificateAuthority, data.ca_id)
    if ca is None:
        errors["ca_id"] = ["Choose the issuing CA that enrolls this profile."]
    elif ca.status != CaStatus.ACTIVE:
        errors["ca_id"] = [f"The CA '{ca.name}' is {ca.status.value.lower()}."]
    else:
        try:
            # The CA's extendedKeyUsage limits what it can issue (CA/B Forum BR 7.1.2.10.6).
            check_issuer_purpose(ca_purpose_of(signing.certificate_of(ca)), KIND_OF[data.cert_type])
        except PkiError as exc:
            errors["ca_id"] = [
                f"'{ca.name}' cannot enroll {data.cert_type.label} certificates: {exc}."
            ]
    if not data.terms:
        errors["terms"] = ["Give at least one allowed term in days."]
    elif data.cert_type == CertType.SSL:
        limit = max_tls_validity_days(utcnow())
        too_long = [t for t in data.terms if t > limit]
        if too_long:
            errors["terms"] = [
                f"{', '.join(map(str, too_long))} days exceeds the CA/Browser Forum maximum for TLS certificates issued now ({limit} days)."
            ]
    if not data.key_types:
        errors["key_types"] = ["Allow at least one key type."]
    else:
        for kt in data.key_types:
            try:
                keys.parse_key_type(kt)
            except PkiError:
                errors["key_types"] = [f"'{kt}' is not one of {', '.join(keys.KEY_TYPES)}."]
    if data.lint_mode == LintMode.SAMPLE and not 1 <= data.lint_sample_n <= 100000:
        errors["lint_sample_n"] = ["Lint one in N: N between 1 and 100000."]
    if data.include_client_auth and data.cert_type != CertType.SSL:
        errors["include_client_auth"] = [
            "clientAuth as an extra usage applies to SSL profiles only."
        ]
    for flag, label in (("key_escrow", "Key escrow"), ("pkcs12_legacy", "Legacy PKCS#12")):
        if getattr(data, flag) and data.cert_type != CertType.CLIENT:
            errors[flag] = [f"{label} applies to Client profiles (keys made for persons) only."]
    if data.include_server_auth and data.cert_type != CertType.DEVICE:
        errors["include_server_auth"] = [
            "serverAuth as an extra usage applies to Device profiles only."
        ]
    if data.cert_type == CertType.CODE_SIGNING:
        # CS BR 6.1.5.2: RSA of at least 3072 bits, or ECDSA on P-256 or P-384.
        weak = [k for k in data.key_types if k not in CODE_SIGNING_KEY_TYPES]
        if weak:
            errors["key_types"] = [
                f"Code signing keys are RSA-3072 or larger, or EC-P256/EC-P384 (CS BR 6.1.5.2); not {', '.join(weak)}."
            ]
        if not data.requires_approval:
            errors["requires_approval"] = ["Code signing requests always need approval."]
    if data.cert_type == CertType.CLIENT and any(t > smime.MAX_VALIDITY_DAYS for t in data.terms):
        errors["terms"] = [
            f"Client (S/MIME) certificates are valid at most {smime.MAX_VALIDITY_DAYS} days (S/MIME BR 6.3.2)."
        ]
    slug = data.acme_slug.strip().lower()
    if slug:
        if not ACME_SLUG.match(slug):
            errors["acme_slug"] = [
                "An ACME directory name is 1 to 63 lower-case letters, digits and hyphens "
                "(not first or last), e.g. 'tls-servers'."
            ]
        elif data.cert_type != CertType.SSL:
            errors["acme_slug"] = ["ACME issues SSL certificates only: leave it empty."]
        elif db.session.execute(
            select(CertificateProfile.id).where(
                CertificateProfile.acme_slug == slug,
                CertificateProfile.id != (profile_id or 0),
            )
        ).first():
            errors["acme_slug"] = [f"Another profile has the ACME directory '{slug}'."]
    if errors:
        raise ValidationFailed(errors)
    return {
        "acme_slug": slug or None,
        "name": name,
        "description": data.description.strip(),
        "cert_type": data.cert_type,
        "ca_id": data.ca_id,
        "terms": list(data.terms),
        "key_types": list(data.key_types),
        "requires_approval": data.requires_approval,
        "four_eyes": data.four_eyes,
        "allow_key_reuse": data.allow_key_reuse,
        "include_client_auth": data.include_client_auth,
        "include_server_auth": data.include_server_auth,
        "key_escrow": data.key_escrow,
        "pkcs12_legacy": data.pkcs12_legacy,
        "lint_mode": data.lint_mode,
        "lint_sample_n": data.lint_sample_n,
        "active": data.active,
    }


def create_profile(*, actor: Actor, data: ProfileData) -> CertificateProfile:
    if not require_actor(actor).is_master:
        raise Forbidden("Only an MRAO can manage certificate profiles.")
    profile = CertificateProfile(**_clean(data, None))
    db.session.add(profile)
    db.session.flush()
    audit.record(
        action="profile.create",
        actor=actor,
        object_type="CertificateProfile",
        object_id=profile.id,
        label=profile.name,
        after=audit.snapshot(profile, PROFILE_FIELDS),
    )
    return profile


def update_profile(*, actor: Admin, profile_id: int, data: ProfileData) -> CertificateProfile:
    if not actor.is_master:
        raise Forbidden("Only an MRAO can manage certificate profiles.")
    profile = get_profile(profile_id)
    before = audit.snapshot(profile, PROFILE_FIELDS)
    for key, value in _clean(data, profile.id).items():
        setattr(profile, key, value)
    old, new = audit.changes(before, audit.snapshot(profile, PROFILE_FIELDS))
    if new:
        # Any change restarts sampling: the next certificate is linted.
        profile.changed_at = utcnow()
        profile.issued_since_change = 0
        audit.record(
            action="profile.update",
            actor=actor,
            object_type="CertificateProfile",
            object_id=profile.id,
            label=profile.name,
            before=old,
            after=new,
        )
    return profile


def delete_profile(*, actor: Admin, profile_id: int) -> None:
    if not actor.is_master:
        raise Forbidden("Only an MRAO can manage certificate profiles.")
    profile = get_profile(profile_id)
    used = db.session.execute(
        select(func.count())
        .select_from(CertificateRequest)
        .where(CertificateRequest.profile_id == profile.id)
    ).scalar_one()
    if used:
        raise DomainError(
            f"The profile '{profile.name}' has {used} requests; deactivate it instead of deleting it."
        )
    audit.record(
        action="profile.delete",
        actor=actor,
        object_type="CertificateProfile",
        object_id=profile.id,
        label=profile.name,
        before=audit.snapshot(profile, PROFILE_FIELDS),
    )
    db.session.delete(profile)


def get_profile(profile_id: int) -> CertificateProfile:
    profile = db.session.get(CertificateProfile, profile_id)
    if profile is None:
        raise NotFound("No such certificate profile.", field="profile")
    return profile


def pending_requests(profile: CertificateProfile) -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(CertificateRequest)
            .where(
                CertificateRequest.profile_id == profile.id,
                CertificateRequest.status == RequestStatus.REQUESTED,
            )
        ).scalar_one()
    )
