"""Test data built through the services, the way the application builds it."""

from __future__ import annotations

from collections.abc import Iterable

from app.extensions import db
from app.models import Admin, CertType, Delegation, Department, Domain, Organization, Role
from app.services.accounts import admins
from app.services.scope import SYSTEM
from app.services.structure import domains, orgs

PASSWORD = "a-long-test-password-1"


def make_org(name: str = "Acme", country: str = "DE", **fields: str) -> Organization:
    org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name=name, country=country, **fields))
    db.session.commit()
    return org


def make_dept(org: Organization, name: str = "IT") -> Department:
    dept = orgs.create_dept(actor=SYSTEM, organization_id=org.id, name=name)
    db.session.commit()
    return dept


def make_admin(
    login: str = "mrao",
    role: Role = Role.MRAO,
    *,
    org: Organization | None = None,
    dept: Department | None = None,
    privileges: Iterable[CertType] = tuple(CertType),
    password: str = PASSWORD,
) -> Admin:
    grants = []
    if role != Role.MRAO:
        assert org is not None
        grants.append(admins.Grant(org.id, dept.id if dept else None, frozenset(privileges)))
    admin = admins.create_admin(
        actor=SYSTEM,
        login=login,
        email=f"{login}@example.com",
        role=role,
        password=password,
        grants=grants,
    )
    db.session.commit()
    return admin


def make_domain(
    name: str,
    *,
    by: Admin,
    org: Organization | None = None,
    dept: Department | None = None,
    types: Iterable[CertType] = (CertType.SSL,),
) -> Domain:
    domain = domains.create_domain(
        actor=by,
        name=name,
        organization_id=org.id if org else None,
        department_id=dept.id if dept else None,
        types=types,
    )
    db.session.commit()
    return domain


def delegation_of(domain: Domain) -> Delegation:
    return domain.delegations[0]


def make_pki(
    *,
    key_type: str = "EC-P256",
    terms=(90, 199),
    requires_approval: bool = True,
    four_eyes: bool = False,
    **profile_fields,
):
    """A root CA, an issuing CA under it and a profile enrolling through it (SSL unless
    ``cert_type`` says otherwise; the issuing CA's purpose follows the profile's type)."""
    from app.models import CertType, LintMode
    from app.pki.profiles import CA_PURPOSE_KINDS
    from app.services.ca import authorities, profiles
    from app.services.ca.profiles import KIND_OF

    cert_type = profile_fields.get("cert_type", CertType.SSL)
    purpose = next(p for p, kind in CA_PURPOSE_KINDS.items() if kind is KIND_OF[cert_type])

    root = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name="Test Root", key_type=key_type, customer_name="Test", country="DE"
        ),
    )
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name="Test Issuing",
            key_type=key_type,
            customer_name="Test",
            country="DE",
            parent_id=root.id,
            purpose=purpose.value,
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name=profile_fields.pop("name", "TLS servers"),
            cert_type=profile_fields.pop("cert_type", CertType.SSL),
            ca_id=issuing.id,
            terms=tuple(terms),
            key_types=tuple(
                profile_fields.pop("key_types", ("RSA-2048", "RSA-3072", "EC-P256", "EC-P384"))
            ),
            requires_approval=requires_approval,
            four_eyes=four_eyes,
            lint_mode=profile_fields.pop("lint_mode", LintMode.EVERY),
            **profile_fields,
        ),
    )
    db.session.commit()
    return root, issuing, profile


def make_csr(cn: str, *sans: str, key_type: str = "EC-P256", key=None, alt_names: bool = True):
    """A real CSR (PEM bytes) and its private key; the CN is repeated as a SAN unless
    ``alt_names`` is false (a code signing CSR names no alternative names)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from app.pki import csr, keys, names

    key = key or keys.generate_private_key(key_type)
    request = csr.build_csr(
        key,
        subject=names.build_subject(common_name=cn),
        alt_names=names.parse_alt_names([cn, *sans]) if alt_names else names.AltNames(),
    )
    return request.public_bytes(Encoding.PEM), key


def request_certificate(
    *,
    by: Admin,
    org: Organization,
    profile,
    cn: str,
    key_type: str = "EC-P256",
    approve: bool = False,
    **fields,
):
    """Submit a CSR request through the service (and approve it); returns (request, key).

    Issuance runs when the caller drains the stub worker."""
    from app.models import CertType, RequestMode
    from app.services.certificates import approvals, enrollment

    code_signing = fields.get("cert_type") == CertType.CODE_SIGNING
    csr, key = make_csr(cn, key_type=key_type, alt_names=not code_signing)
    data = enrollment.RequestData(
        organization_id=org.id,
        profile_id=profile.id,
        term_days=90,
        mode=RequestMode.CSR,
        csr=csr,
        eula_accepted=True,
        **fields,
    )
    req = enrollment.submit_request(actor=by, data=data)
    if approve:
        approvals.approve(actor=by, request_ids=[req.id])
    db.session.commit()
    return req, key


def issued_in_acme(worker):
    """An MRAO, the organization Acme with acme.example delegated for every type, a CA and
    profile, and one SSL certificate issued for www.acme.example through the services;
    returns (mrao, org, profile, certificate, key)."""
    from app.models import CertType
    from app.services.structure import domains
    from tests.conftest import drain

    mrao = make_admin()
    org = make_org("Acme", city="Berlin", state="Berlin")
    domains.create_domain(
        actor=mrao, name="acme.example", organization_id=org.id, types=list(CertType)
    )
    db.session.commit()
    _, _, profile = make_pki()
    req, key = request_certificate(
        by=mrao, org=org, profile=profile, cn="www.acme.example", approve=True
    )
    drain(worker)
    db.session.refresh(req)
    assert req.certificate is not None
    return mrao, org, profile, req.certificate, key


def self_signed(cn: str, *, key=None, days: int = 90):
    """A self-signed certificate (EC P-256 unless ``key``), valid from yesterday for
    ``days``: what an import or a scan meets in the wild."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
