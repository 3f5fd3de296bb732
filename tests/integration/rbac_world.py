"""The authorization test world, shared by the RBAC tests: two organizations, Alpha (with
departments Ops and Lab) and Beta (with Secret), an MRAO, an RAO of Alpha, a DRAO of
Alpha/Ops and an RAO of Beta, and one issued certificate in Alpha/Ops and one in Beta."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, Certificate, CertType, Delegation, Domain, RequestMode, Role
from app.services.certificates import enrollment, issuance
from tests.conftest import login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_csr,
    make_dept,
    make_domain,
    make_org,
    make_pki,
)

BETA_MARKERS = ("Beta Corp", "beta.example", "beta-rao", "Secret", "www.beta.example")


def build_world():
    """Build the world; return the ids the tests refer to."""
    mrao = make_admin("mrao")
    alpha, beta = make_org("Alpha Inc"), make_org("Beta Corp")
    ops, lab = make_dept(alpha, "Ops"), make_dept(alpha, "Lab")
    secret = make_dept(beta, "Secret")
    make_domain("alpha.example", by=mrao, org=alpha)
    make_domain("ops.alpha.example", by=mrao, org=alpha, dept=ops)
    make_domain("lab.alpha.example", by=mrao, org=alpha, dept=lab)
    make_domain("beta.example", by=mrao, org=beta)
    make_admin("alpha-rao", Role.RAO, org=alpha, privileges=[CertType.SSL])
    make_admin("ops-drao", Role.DRAO, org=alpha, dept=ops, privileges=[CertType.SSL])
    make_admin("beta-rao", Role.RAO, org=beta, privileges=[CertType.SSL])
    alpha.city = beta.city = "Town"
    db.session.commit()
    *_, profile = make_pki(requires_approval=False)
    certs = {}
    for org, dept, cn in ((alpha, ops, "www.ops.alpha.example"), (beta, None, "www.beta.example")):
        data = enrollment.RequestData(
            organization_id=org.id,
            department_id=dept.id if dept else None,
            profile_id=profile.id,
            term_days=90,
            mode=RequestMode.CSR,
            csr=make_csr(cn)[0],
            eula_accepted=True,
        )
        certs[cn] = enrollment.submit_request(actor=mrao, data=data).id
    db.session.commit()
    issuance.issue_requests(list(certs.values()))
    db.session.commit()
    return {
        "alpha": alpha.id,
        "beta": beta.id,
        "ops": ops.id,
        "lab": lab.id,
        "secret": secret.id,
        "beta_domain": db.session.execute(
            select(Domain.id).where(Domain.name == "beta.example")
        ).scalar_one(),
        "beta_delegation": db.session.execute(
            select(Delegation.id).join(Domain).where(Domain.name == "beta.example")
        ).scalar_one(),
        "beta_admin": db.session.execute(
            select(Admin.id).where(Admin.login == "beta-rao")
        ).scalar_one(),
        "lab_domain": db.session.execute(
            select(Domain.id).where(Domain.name == "lab.alpha.example")
        ).scalar_one(),
        "beta_request": certs["www.beta.example"],
        "beta_cert": db.session.execute(
            select(Certificate.id).where(Certificate.common_name == "www.beta.example")
        ).scalar_one(),
        "ops_cert": db.session.execute(
            select(Certificate.id).where(Certificate.common_name == "www.ops.alpha.example")
        ).scalar_one(),
    }


def as_(client, who):
    login(client, who, PASSWORD)
    return client
