"""Which administrators a DRAO sees: themselves and admins wholly inside their departments,
never an RAO (of their own organization or any other). Found by tests/e2e."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, Role
from app.services.accounts.admins import visible_admins_clause
from app.services.scope import scope_of
from tests.conftest import login
from tests.factories import PASSWORD, make_admin, make_dept, make_org


def visible_to(admin: Admin) -> list[str]:
    query = select(Admin.login).order_by(Admin.login)
    clause = visible_admins_clause(scope_of(admin))
    if clause is not None:
        query = query.where(clause)
    return list(db.session.execute(query).scalars())


def test_drao_sees_no_organization_wide_admins(client):
    globex, initech = make_org("Globex"), make_org("Initech")
    eng = make_dept(globex, "Engineering")
    make_admin("mrao")
    rao = make_admin("rao-globex", Role.RAO, org=globex)
    make_admin("rao-initech", Role.RAO, org=initech)
    drao = make_admin("drao-eng", Role.DRAO, org=globex, dept=eng)
    make_admin("drao-eng-2", Role.DRAO, org=globex, dept=eng)

    assert visible_to(drao) == ["drao-eng", "drao-eng-2"]
    assert visible_to(rao) == ["drao-eng", "drao-eng-2", "rao-globex"]

    login(client, "drao-eng", PASSWORD)
    page = client.get("/admin/admins/").get_data(as_text=True)
    assert "drao-eng-2" in page and "rao-globex" not in page and "Initech" not in page
    assert client.get(f"/admin/admins/details/?id={rao.id}").status_code == 302  # not found
