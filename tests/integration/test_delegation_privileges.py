"""A delegation's request privileges (SCM's domainCertificateRequestPrivileges) decide which
names under the domain a certificate may carry; without them the rule is unchanged."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import CertType
from app.services.errors import DomainError
from app.services.structure import domains
from app.services.structure.domains import covers_name
from tests.factories import make_admin, make_org, make_pki, request_certificate


@pytest.mark.parametrize(
    ("name", "privileges", "allowed"),
    [
        ("example.com", None, True),
        ("www.example.com", None, True),
        ("*.example.com", None, False),  # legacy: wildcards need a wildcard domain
        ("example.com", ["DOMAIN"], True),
        ("www.example.com", ["DOMAIN"], False),
        ("www.example.com", ["SUBDOMAIN"], True),
        ("example.com", ["SUBDOMAIN"], False),
        ("*.example.com", ["DOMAIN", "SUBDOMAIN"], False),
        ("*.example.com", ["WILDCARD_1ST_LEVEL"], True),
        ("*.www.example.com", ["WILDCARD_1ST_LEVEL"], False),
        ("*.www.example.com", ["WILDCARD_2ND_LEVEL"], True),
        ("*.a.b.example.com", ["WILDCARD_2ND_LEVEL"], False),
        ("other.com", ["DOMAIN", "SUBDOMAIN"], False),
    ],
)
def test_covers_name(name, privileges, allowed):
    assert covers_name(name, "example.com", privileges) is allowed


def test_wildcard_domains_keep_their_rule():
    assert covers_name("*.example.com", "*.example.com", None)
    assert not covers_name("example.com", "*.example.com", ["DOMAIN"])


def test_enrollment_follows_the_delegations_privileges(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    domains.create_domain(
        actor=mrao,
        name="acme.example",
        organization_id=org.id,
        types=[CertType.SSL],
        request_privileges=["DOMAIN", "WILDCARD_1ST_LEVEL"],
    )
    db.session.commit()
    _, _, profile = make_pki()
    request_certificate(by=mrao, org=org, profile=profile, cn="acme.example")
    request_certificate(by=mrao, org=org, profile=profile, cn="*.acme.example")
    with pytest.raises(DomainError, match=r"The name www\.acme\.example is not inside"):
        request_certificate(by=mrao, org=org, profile=profile, cn="www.acme.example")
    db.session.rollback()
    with pytest.raises(DomainError, match="Unknown request privilege 'EVERYTHING'"):
        domains.create_domain(
            actor=mrao,
            name="beta.example",
            organization_id=org.id,
            types=[CertType.SSL],
            request_privileges=["EVERYTHING"],
        )
