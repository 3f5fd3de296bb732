"""The authorization matrix: each role x each console view and action.

Two organizations, Alpha (with departments Ops and Lab) and Beta (with Secret). An RAO
of Alpha and a DRAO of Alpha/Ops must never learn that Beta exists: not in a list,
count, detail, edit, delete, bulk action, filter choice, select box or export.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Admin, Certificate, Delegation, Department, Domain, Organization
from app.services.scope import SYSTEM
from tests.conftest import csrf_token
from tests.integration.rbac_world import BETA_MARKERS, as_, build_world


@pytest.fixture
def world(app):
    return build_world()


LIST_PAGES = [
    "/admin/",
    "/admin/organization/",
    "/admin/department/",
    "/admin/domain/",
    "/admin/delegation/",
    "/admin/admins/",
    "/admin/jobs/",
    "/admin/outbox/",
    "/admin/about/",
    "/admin/profile/",
    "/admin/ssl_certs/",
    "/admin/ssl_requests/",
    "/admin/ssl_requests/new/",
    "/admin/cas/",
    "/admin/profiles/",
    "/admin/network_assets/",
    "/admin/assignment_rules/",
    "/admin/assignment_rules/new/",
    "/admin/department/new/",
    "/admin/domain/new/",
    "/admin/delegation/new/",
    "/admin/admins/new/",
]

# role -> (page -> expected status)
ACCESS = {
    "mrao": {
        "/admin/audit/": 200,
        "/admin/organization/new/": 200,
        "/admin/discovery_tasks/": 200,
        "/admin/discovery_tasks/new/": 200,
        "/admin/discovery_tasks/import/": 200,
        "/admin/scan_agents/": 200,
        "/admin/scan_agents/new/": 200,
    },
    "alpha-rao": {
        "/admin/audit/": 403,
        "/admin/organization/new/": 302,
        "/admin/discovery_tasks/": 200,
        "/admin/discovery_tasks/new/": 200,
        "/admin/discovery_tasks/import/": 200,
        # Agents are account-wide infrastructure: MRAO only.
        "/admin/scan_agents/": 403,
        "/admin/scan_agents/new/": 403,
    },
    # A DRAO owns no discovery task: the page is not theirs (their certificates found on
    # the network show in Network Assets).
    "ops-drao": {
        "/admin/audit/": 403,
        "/admin/organization/new/": 302,
        "/admin/discovery_tasks/": 403,
        "/admin/discovery_tasks/new/": 403,
        "/admin/discovery_tasks/import/": 403,
        "/admin/scan_agents/": 403,
        "/admin/scan_agents/new/": 403,
    },
}


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
def test_scoped_admins_never_see_beta(client, world, who):
    as_(client, who)
    for url in LIST_PAGES:
        resp = client.get(url)
        assert resp.status_code in (200, 302), url
        page = resp.get_data(as_text=True)
        for marker in BETA_MARKERS:
            assert marker not in page, f"{who} sees {marker!r} on {url}"


def test_mrao_sees_everything(client, world):
    as_(client, "mrao")
    seen = "".join(
        client.get(u).get_data(as_text=True)
        for u in [
            "/admin/organization/",
            "/admin/domain/",
            "/admin/admins/",
            "/admin/department/",
            "/admin/ssl_certs/",
        ]
    )
    for marker in BETA_MARKERS:
        assert marker in seen


@pytest.mark.parametrize("who", ["mrao", "alpha-rao", "ops-drao"])
@pytest.mark.parametrize("url", list(ACCESS["mrao"]))
def test_page_access_by_role(client, world, who, url):
    as_(client, who)
    assert client.get(url).status_code == ACCESS[who][url]


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
@pytest.mark.parametrize(
    ("view", "key"),
    [
        ("organization", "beta"),
        ("department", "secret"),
        ("domain", "beta_domain"),
        ("delegation", "beta_delegation"),
        ("admins", "beta_admin"),
    ],
)
def test_out_of_scope_objects_are_unreachable_by_id(client, world, who, view, key):
    """details, edit and delete by id go through the scoped query (no IDOR)."""
    as_(client, who)
    object_id = world[key]
    for action in ("details", "edit"):
        resp = client.get(f"/admin/{view}/{action}/?id={object_id}", follow_redirects=True)
        page = resp.get_data(as_text=True)
        assert not any(m in page for m in BETA_MARKERS), (view, action)
    token = csrf_token(client, f"/admin/{view}/")
    client.post(f"/admin/{view}/delete/", data={"id": object_id, "csrf_token": token})
    edit = client.post(
        f"/admin/{view}/edit/?id={object_id}", data={"name": "pwned", "csrf_token": token}
    )
    assert edit.status_code in (302, 403)
    # Still there, unchanged.
    assert (
        db.session.execute(
            select(func.count()).select_from(Organization).where(Organization.name == "Beta Corp")
        ).scalar_one()
        == 1
    )
    assert (
        db.session.execute(
            select(func.count()).select_from(Department).where(Department.name == "Secret")
        ).scalar_one()
        == 1
    )
    assert (
        db.session.execute(
            select(func.count()).select_from(Domain).where(Domain.name == "beta.example")
        ).scalar_one()
        == 1
    )
    assert (
        db.session.execute(
            select(func.count()).select_from(Admin).where(Admin.login == "beta-rao")
        ).scalar_one()
        == 1
    )
    assert db.session.execute(select(func.count()).select_from(Delegation)).scalar_one() == 4


def test_bulk_action_ignores_out_of_scope_ids(client, world):
    as_(client, "alpha-rao")
    token = csrf_token(client, "/admin/delegation/")
    page = client.post(
        "/admin/delegation/action/",
        data={"action": "approve", "rowid": [str(world["beta_delegation"])], "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Beta" not in page


def test_drao_does_not_see_sibling_department(client, world):
    as_(client, "ops-drao")
    domains_page = client.get("/admin/domain/").get_data(as_text=True)
    assert "ops.alpha.example" in domains_page and "alpha.example" in domains_page
    assert "lab.alpha.example" not in domains_page
    assert "Lab" not in client.get("/admin/department/").get_data(as_text=True)
    resp = client.get(f"/admin/domain/details/?id={world['lab_domain']}", follow_redirects=True)
    assert "lab.alpha.example" not in resp.get_data(as_text=True)


def test_rao_sees_own_departments_and_admins(client, world):
    as_(client, "alpha-rao")
    depts = client.get("/admin/department/").get_data(as_text=True)
    assert "Ops" in depts and "Lab" in depts
    admins = client.get("/admin/admins/").get_data(as_text=True)
    assert (
        "ops-drao" in admins
        and "alpha-rao" in admins
        and "mrao" not in admins.replace("ops-drao", "")
    )


def test_drao_cannot_edit_the_organization(client, world):
    as_(client, "ops-drao")
    url = f"/admin/organization/edit/?id={world['alpha']}"
    token = csrf_token(client, "/admin/organization/")
    client.post(url, data={"name": "Hijacked", "country": "US", "csrf_token": token})
    assert db.session.get(Organization, world["alpha"]).name == "Alpha Inc"


def test_exports_are_scoped_and_formula_safe(client, world):
    from app.services.structure import orgs

    orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name='=HYPERLINK("http://x")', country="DE"))
    db.session.commit()
    as_(client, "mrao")
    csv = client.get("/admin/audit/export/csv/").get_data(as_text=True)
    assert "'=HYPERLINK" in csv and "\n=HYPERLINK" not in csv and ",=HYPERLINK" not in csv


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
def test_certificates_and_requests_are_scoped(client, world, who):
    as_(client, who)
    listing = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert "www.ops.alpha.example" in listing and "www.beta.example" not in listing
    for url in (
        f"/admin/ssl_certs/details/?id={world['beta_cert']}",
        f"/admin/ssl_certs/download/?id={world['beta_cert']}&format=x509",
        f"/admin/ssl_requests/details/?id={world['beta_request']}",
        f"/admin/ssl_certs/revoke/?ids={world['beta_cert']}",
        f"/admin/ssl_requests/decide/?id={world['beta_request']}",
    ):
        resp = client.get(url, follow_redirects=True)
        assert b"www.beta.example" not in resp.data and b"BEGIN CERTIFICATE" not in resp.data, url
    token = csrf_token(client, "/admin/ssl_certs/")
    client.post(
        "/admin/ssl_certs/revoke/",
        data={"ids": str(world["beta_cert"]), "reason": "keyCompromise", "csrf_token": token},
    )
    client.post(
        "/admin/ssl_certs/action/",
        data={"action": "revoke", "rowid": [str(world["beta_cert"])], "csrf_token": token},
    )
    assert db.session.get(Certificate, world["beta_cert"]).status.value == "Issued"


def test_privilege_per_type_hides_other_types(client, world):
    as_(client, "alpha-rao")  # SSL only
    assert client.get("/admin/client_certs/").status_code == 403
    assert client.get("/admin/ssl_certs/").status_code == 200


@pytest.mark.parametrize(("who", "certificates"), [("mrao", 2), ("alpha-rao", 1), ("ops-drao", 1)])
def test_dashboard_counts_only_what_the_admin_may_see(client, world, who, certificates):
    as_(client, who)
    page = client.get("/admin/").get_data(as_text=True)
    assert f'data-count="Certificates">{certificates}<' in page
    assert 'id="cw-chart-status"' in page and "/admin/ssl_certs/?flt0_" in page
