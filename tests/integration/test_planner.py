"""Reports > Validity Planner: the TLS certificates in the admin's scope projected under the
caps, per organization and month, with the manual ones listed, as a page and a CSV."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, Role
from app.services.errors import DomainError
from app.services.imports import imports
from app.services.reports import planner
from tests.conftest import drain, login
from tests.factories import PASSWORD, make_admin, make_org
from tests.unit.pki.importfiles import OpensslFiles


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    made = OpensslFiles(tmp_path_factory.mktemp("planner"))
    made.sign("web2", "/CN=web2.import.test", issuer="inter", san="DNS:web2.import.test")
    made.sign("other", "/CN=other.test", issuer="inter", san="DNS:other.test")
    return made


def setup_world(stub_worker, files):
    mrao = make_admin()
    acme, other = make_org("=Acme"), make_org("Other")
    for org, names in ((acme, ("leaf", "web2")), (other, ("other",))):
        imports.start_import(
            actor=mrao,
            organization_id=org.id,
            department_id=None,
            uploads=[imports.Upload(f"{n}.pem", files.pem(n)) for n in names],
        )
    db.session.commit()
    drain(stub_worker)
    web2 = db.session.execute(
        select(Certificate).where(Certificate.common_name == "web2.import.test")
    ).scalar_one()
    web2.auto_renew = True
    db.session.commit()
    return mrao, acme, other


def test_the_plan_counts_each_organizations_renewals_and_lists_the_manual_ones(
    app, stub_worker, files
):
    mrao, _acme, other = setup_world(stub_worker, files)
    result = planner.validity_plan(actor=mrao, months=12)
    # The CA certificates of the files are not TLS leaves: only the three leaves count.
    assert result.certificates == 3
    assert sorted(c.common_name for c in result.manual) == ["other.test", "www.import.test"]
    assert result.plan.organizations == ["=Acme", "Other"]
    # 90-day certificates: under the 200- and 100-day caps of the next 12 months, renewed
    # every 90 days either way (3 or 4 times each, by the day of the month it is).
    acme_today = sum(
        n for (o, _, s), n in result.plan.renewals.items() if o == "=Acme" and s == "today"
    )
    acme_caps = sum(
        n for (o, _, s), n in result.plan.renewals.items() if o == "=Acme" and s == "caps"
    )
    assert acme_today == acme_caps and 6 <= acme_today <= 8
    acme_manual = sum(n for (o, _), n in result.plan.manual.items() if o == "=Acme")
    assert acme_manual == acme_caps // 2  # one of Acme's two is renewed automatically
    rao = make_admin("rao", Role.RAO, org=other)
    theirs = planner.validity_plan(actor=rao, months=12)
    assert theirs.plan.organizations == ["Other"] and theirs.certificates == 1
    with pytest.raises(DomainError, match="1 to 60 months"):
        planner.validity_plan(actor=rao, months=61)


def test_the_page_shows_the_chart_and_the_csv_escapes_names(app, client, stub_worker, files):
    setup_world(stub_worker, files)
    login(client, "mrao", PASSWORD)
    page = client.get("/admin/planner/?months=12").get_data(as_text=True)
    figure = json.loads(
        re.search(r"id=\"cw-planner-chart\" data-figure='([^']+)'", page)
        .group(1)
        .replace("&#34;", '"')
    )
    assert figure["data"][0]["name"] == "At today's lifetimes"
    assert "www.import.test" in page and "No automated renewal (2)" in page
    assert "Choose a horizon" in client.get("/admin/planner/?months=99").get_data(as_text=True)
    response = client.get("/admin/planner/csv/?months=12")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["organization", "month", "renewals_today", "renewals_caps", "manual_caps"]
    assert {r[0] for r in rows[1:]} == {"'=Acme", "Other"} and len(rows) == 1 + 2 * 12


def test_certificates_enrolled_by_a_script_or_over_acme_are_automated(app, stub_worker):
    """A renewal path without a person: enrolled by an API administrator (a script), or
    issued for an ACME order; one a person requested in the console is manual."""
    from app.models import AdminKind, CertificateRequest
    from tests.factories import issued_in_acme

    mrao, _org, _profile, cert, _key = issued_in_acme(stub_worker)

    def manual() -> list[str]:
        return [c.common_name for c in planner.validity_plan(actor=mrao, months=3).manual]

    assert manual() == ["www.acme.example"]
    script = make_admin("script")
    script.kind = AdminKind.API
    req = db.session.get(CertificateRequest, cert.request_id)
    assert req is not None
    req.requester_id = script.id
    db.session.commit()
    assert manual() == []
