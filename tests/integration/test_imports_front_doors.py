"""Certificates > Import in the console (CSRF, scope, errors, progress, CSV download) and
`flask --app wsgi cert import` on the command line."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Certificate, CertificateImport, Role
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_dept, make_org
from tests.unit.pki.importfiles import OpensslFiles, zip_of

URL = "/admin/cert_import/"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    return OpensslFiles(tmp_path_factory.mktemp("front"))


def upload(client, target: str, *named: tuple[str, bytes], token: str | None = None):
    data = {
        "csrf_token": token if token is not None else csrf_token(client, URL),
        "target": target,
        "files": [(io.BytesIO(content), name) for name, content in named],
    }
    return client.post(URL, data=data, content_type="multipart/form-data")


def test_an_rao_imports_a_zip_follows_it_and_downloads_the_result(app, client, stub_worker, files):
    acme, other = make_org("Acme"), make_org("Other")
    make_admin("rao", Role.RAO, org=acme)
    login(client, "rao", PASSWORD)
    page = client.get(URL).get_data(as_text=True)
    # The limits are shown; only the admin's own places are offered.
    assert "CW_IMPORT_MAX_MEMBERS" in page and "200000" in page
    assert f'value="o:{acme.id}"' in page and f'value="o:{other.id}"' not in page
    archive = zip_of({"chain.pem": files.pem("leaf") + files.pem("inter"), "notes.txt": b"hi"})
    response = upload(client, f"o:{acme.id}", ("certs.zip", archive))
    assert response.status_code == 302
    details = response.headers["Location"]
    running = client.get(details).get_data(as_text=True)
    status = re.search(r'id="cw-import-status" data-status="(\w+)"', running).group(1)
    # The page refreshes itself while the job runs (the stub worker may already be at it).
    assert ('http-equiv="refresh"' in running) == (status in ("pending", "running"))
    drain(stub_worker)
    done = client.get(details).get_data(as_text=True)
    assert 'data-status="done"' in done and 'http-equiv="refresh"' not in done
    assert "2 imported, 0 already known, 1 invalid, 0 skipped" in done
    download = re.search(r'id="cw-import-download" href="([^"]+)"', done).group(1)
    result = client.get(download.replace("&amp;", "&"))
    assert result.mimetype == "text/csv"
    assert 'attachment; filename="import-' in result.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(result.get_data(as_text=True))))
    assert [(r["member"], r["outcome"]) for r in rows] == [
        ("chain.pem", "imported"),
        ("chain.pem", "imported"),
        ("notes.txt", "invalid"),
    ]
    assert db.session.scalar(select(func.count(Certificate.id))) == 2


def test_refusals_show_on_the_form_and_store_nothing(app, client, stub_worker, files):
    acme, other = make_org("Acme"), make_org("Other")
    it = make_dept(acme, "IT")
    make_admin("drao", Role.DRAO, org=acme, dept=it)
    login(client, "drao", PASSWORD)
    page = upload(client, f"d:{it.id}").get_data(as_text=True)
    assert "Choose at least one file to import." in page
    # Another organization, typed into the form: refused, nothing stored.
    page = upload(client, f"o:{other.id}", ("a.pem", files.pem("self")))
    assert page.status_code in (200, 404)
    page = upload(client, f"o:{acme.id}", ("a.pem", files.pem("self"))).get_data(as_text=True)
    assert "You may import only into the organizations and departments you administer." in page
    # No CSRF token: refused.
    assert upload(client, f"d:{it.id}", ("a.pem", files.pem("self")), token="").status_code in (
        200,
        400,
    )
    assert db.session.scalar(select(func.count(CertificateImport.id))) == 0
    assert upload(client, f"d:{it.id}", ("a.pem", files.pem("self"))).status_code == 302


def test_someone_elses_import_is_not_found(app, client, stub_worker, files):
    acme, other = make_org("Acme"), make_org("Other")
    make_admin("rao", Role.RAO, org=acme)
    make_admin("mrao")
    from app.models import Admin
    from app.services.imports import imports

    mrao = db.session.execute(select(Admin).where(Admin.login == "mrao")).scalar_one()
    theirs = imports.start_import(
        actor=mrao,
        organization_id=other.id,
        department_id=None,
        uploads=[imports.Upload("x.pem", files.pem("self"))],
    )
    db.session.commit()
    drain(stub_worker)
    login(client, "rao", PASSWORD)
    assert client.get(f"{URL}details/?id={theirs.id}").status_code == 404
    assert client.get(f"{URL}download/?id={theirs.id}").status_code == 404
    denied = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "access.denied"))
        .scalars()
        .all()
    )
    assert denied and denied[-1].object_id == str(theirs.id)


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output


def test_the_command_line_imports_files_in_the_foreground(app, files, tmp_path):
    make_admin("mrao")
    acme = make_org("Acme")
    it = make_dept(acme, "IT")
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(files.pem("leaf") + files.pem("inter") + files.pem("root"))
    single = tmp_path / "self.der"
    single.write_bytes(files.der("self"))
    out_csv = tmp_path / "result.csv"
    code, out = run(
        app, "cert", "import", str(bundle), str(single), "--org", "Acme", "--dept", "IT",
        "--csv", str(out_csv),
    )  # fmt: skip
    assert code == 0, out
    assert out.splitlines()[-1].endswith("4 imported, 0 already known, 0 invalid, 0 skipped")
    assert "imported  chain.pem CN=www.import.test" in out
    assert out_csv.read_text().startswith("file,member,outcome,reason")
    certs = db.session.execute(select(Certificate)).scalars().all()
    assert {c.department_id for c in certs} == {it.id}
    code, out = run(app, "cert", "import", str(bundle), "--org", "Acme", "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["counts"] == {"imported": 0, "known": 3, "invalid": 0, "skipped": 0}
    code, out = run(app, "cert", "import", str(bundle), "--org", "Nowhere")
    assert code == 2 and "no organization named 'Nowhere'" in out
    make_admin("rao", Role.RAO, org=make_org("Other"))
    code, out = run(app, "cert", "import", str(bundle), "--org", "Acme", "--as", "rao")
    assert code == 2 and "No such organization." in out


def test_findings_are_explained_on_the_details_page_and_filter_the_list(
    app, client, stub_worker, files
):
    acme = make_org("Acme")
    make_admin("mrao")
    files.sign("negative", "/CN=negative.import.test", issuer="inter", serial="-3")
    from app.models import Admin
    from app.services.imports import imports

    mrao = db.session.execute(select(Admin).where(Admin.login == "mrao")).scalar_one()
    imports.start_import(
        actor=mrao,
        organization_id=acme.id,
        department_id=None,
        uploads=[imports.Upload("odd.pem", files.pem("negative") + files.pem("leaf"))],
    )
    db.session.commit()
    drain(stub_worker)
    odd = db.session.execute(
        select(Certificate).where(Certificate.common_name == "negative.import.test")
    ).scalar_one()
    login(client, "mrao", PASSWORD)
    # Untyped (no EKU in this openssl leaf): it is not in a typed list; the leaf is (SSL).
    page = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert "www.import.test" in page
    import hashlib

    from app.models import CertType

    odd.cert_type = CertType.SSL
    db.session.commit()
    # Filters by position: Status (0), Organization (1), Finding (2).
    listed = client.get("/admin/ssl_certs/?flt0_2=serial_not_positive")
    text = listed.get_data(as_text=True)
    assert "negative.import.test" in text and "www.import.test" not in text
    details = client.get(f"/admin/ssl_certs/details/?id={odd.id}").get_data(as_text=True)
    assert 'data-code="serial_not_positive"' in details
    assert "RFC 5280 §4.1.2.2" in details
    assert odd.fingerprint == hashlib.sha256(files.der("negative")).hexdigest()
