"""What every console screen shares (issue 10, issue 9 B7): a Content-Security-Policy and no
inline script, human labels, empty lists that lead somewhere, console-layout error pages,
a favicon, named success messages, live status endpoints (scoped), download names."""

from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models import Certificate, Job, RequestStatus, Role
from app.services.platform import jobs
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_dept,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
# Single words that are the right label as Flask-Admin would title-case them.
PLAIN_WORDS = {
    "Action", "Active", "Actor", "After", "Agent", "Attempts", "Before", "Body", "Category", "Kind",
    "City", "Comments", "Concurrency", "Conditions", "Country", "Department", "Departments",
    "Description", "Domain", "Downloads", "Email", "Error", "Findings", "Key", "Login", "Message", "Name",
    "Organization", "Origin", "Port", "Ports", "Progress", "Protocol", "Ranges", "Role", "Schedule",
    "Scopes", "Status", "Subject", "To",
}  # fmt: skip


@pytest.fixture
def world(app, client, stub_worker):
    """An MRAO with an organization, a delegated domain, a CA hierarchy and an issued
    certificate; signed in."""
    mrao = make_admin("mrao")
    org = make_org("Acme Corp", city="Springfield")
    make_domain("acme.example", by=mrao, org=org)
    _root, _issuing, profile = make_pki(requires_approval=False)
    req, _key = request_certificate(by=mrao, org=org, profile=profile, cn="www.acme.example")
    drain(stub_worker)
    login(client, "mrao", PASSWORD)
    return {"mrao": mrao, "org": org, "profile": profile, "request": req}


def console_pages(app):
    """Every list, create form and details page of the console."""
    console = app.extensions["admin"][0]
    urls = ["/admin/", "/admin/profile/", "/admin/about/"]
    for view in console._views:
        endpoint = view.endpoint
        if endpoint in ("admin", "profile", "about"):
            continue
        urls.append(f"{view.url}/")
        if hasattr(view, "create_view"):
            urls.append(f"{view.url}/new/")
    return urls


def test_every_console_page_has_a_csp_and_no_inline_script(app, client, world):
    for url in console_pages(app):
        resp = client.get(url)
        if url.endswith("/new/") and resp.status_code == 302:
            continue  # a list without a create form
        assert resp.status_code == 200, url
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe-eval" not in csp, url
        assert "script-src 'self' 'unsafe-inline'" not in csp
        html = resp.get_data(as_text=True)
        assert not INLINE_SCRIPT.search(html), (url, INLINE_SCRIPT.search(html).group(0))
        assert not INLINE_HANDLER.search(html), (url, INLINE_HANDLER.search(html).group(0))
        assert "There are no items in the table." not in html, url
        assert 'rel="icon"' in html, url
    # Sign-in, the portal's answer and public endpoints carry it too.
    for url in ("/login", "/collect/1/nope", f"/pki/crl/{world['profile'].ca_id}.crl"):
        assert "frame-ancestors 'none'" in client.get(url).headers["Content-Security-Policy"]


def test_the_dashboard_chart_data_is_an_attribute_not_a_script(client, world):
    html = client.get("/admin/").get_data(as_text=True)
    assert "data-figure=" in html and "Plotly.newPlot" not in html
    assert "/static/js/console.js" in html


def test_every_column_has_a_human_label(app):
    console = app.extensions["admin"][0]
    raw = []
    with app.test_request_context():
        for view in console._views:
            if not hasattr(view, "get_column_name"):
                continue
            names = set()
            for attr in ("column_list", "column_details_list", "column_searchable_list"):
                names |= {c if isinstance(c, str) else c.key for c in getattr(view, attr) or ()}
            for name in names:
                label = view.get_column_name(name)
                framework = name.replace("_", " ").title()
                if label == framework and label not in PLAIN_WORDS:
                    raw.append(f"{view.endpoint}.{name}: {label!r}")
            hint = view.search_placeholder()
            if hint is not None:
                assert hint.startswith("Search by ") and "_" not in hint, (view.endpoint, hint)
    assert raw == []


def test_request_details_show_the_subject_as_a_dn_and_human_labels(client, world):
    req = world["request"]
    html = client.get(f"/admin/ssl_requests/details/?id={req.id}").get_data(as_text=True)
    assert "Subject alternative names" in html and "Sans" not in html
    assert "CN=www.acme.example, O=Acme Corp, L=Springfield, C=DE" in html
    assert '{"' not in html  # no JSON anywhere on the page
    assert "Renewal Of Id" not in html and "Renewal of" in html


def test_empty_lists_say_what_they_hold_and_lead_to_the_first_action(app, client):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    ssl = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert "No SSL certificates yet." in ssl
    assert 'href="/admin/ssl_requests/new/"' in ssl and "Request a certificate" in ssl
    assert 'id="cw-request-certificate"' in ssl  # also in the tab bar
    cas = client.get("/admin/cas/").get_data(as_text=True)
    assert "Create your root CA" in cas and 'href="/admin/cas/new/"' in cas
    filtered = client.get("/admin/organization/?search=nothing-like-this").get_data(as_text=True)
    assert "Nothing matches “nothing-like-this”" in filtered
    wizard = client.get("/admin/ssl_requests/new/").get_data(as_text=True)
    assert "Request an SSL certificate" in wizard and "Request a SSL" not in wizard


def test_403_and_404_use_the_console_layout_and_say_what_to_do(app, client):
    org = make_org()
    make_admin("rao", Role.RAO, org=org)
    login(client, "rao", PASSWORD)
    denied = client.get("/admin/audit/")
    html = denied.get_data(as_text=True)
    assert denied.status_code == 403
    assert 'id="cw-error"' in html and "admin-navbar-collapse" in html
    assert "An MRAO can grant the privilege" in html
    missing = client.get("/admin/no-such-page/")
    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)
    assert "admin-navbar-collapse" in missing.get_data(as_text=True)
    machine = client.get("/admin/no-such/", headers={"Accept": "application/json"})
    assert machine.status_code == 404 and machine.json == {"error": "Page not found"}


def test_favicon(client):
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"
    assert resp.data.startswith(b"<svg")


def test_dismiss_welcome_redirects_only_to_a_safe_next(app, client):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/")
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = client.post(
            "/admin/profile/dismiss-welcome/", data={"csrf_token": token, "next": hostile}
        )
        assert resp.status_code == 302
        assert resp.headers["Location"] in ("/admin/", "http://localhost/admin/"), hostile
    resp = client.post(
        "/admin/profile/dismiss-welcome/", data={"csrf_token": token, "next": "/admin/domain/"}
    )
    assert resp.headers["Location"].endswith("/admin/domain/")


def test_request_status_endpoint_follows_issuance_and_is_scoped(app, client, request):
    mrao = make_admin("mrao")
    acme, other = make_org("Acme Corp", city="Springfield"), make_org("Other", city="Town")
    make_dept(other, "Ops")
    make_domain("acme.example", by=mrao, org=acme)
    *_, profile = make_pki(requires_approval=True)
    req, _ = request_certificate(
        by=mrao, org=acme, profile=profile, cn="www.acme.example", approve=True
    )
    make_admin("other-rao", Role.RAO, org=other)
    login(client, "mrao", PASSWORD)
    url = f"/admin/ssl_requests/status/?ids={req.id},abc,99999999999999999999999"
    state = client.get(url).json[str(req.id)]
    assert state["state"] == "Approved" and state["final"] is False
    details = client.get(f"/admin/ssl_requests/details/?id={req.id}").get_data(as_text=True)
    assert 'data-cw-live="/admin/ssl_requests/status/"' in details
    assert 'data-cw-final="0"' in details
    worker = request.getfixturevalue("stub_worker")  # a worker starts (its broker is fresh)
    for job in db.session.query(Job).filter_by(kind="issue_certificates"):
        jobs.enqueue(job)
    drain(worker)
    assert db.session.get(type(req), req.id).status == RequestStatus.ISSUED
    state = client.get(url).json[str(req.id)]
    cert = db.session.query(Certificate).one()
    assert state["state"] == "Issued" and state["final"] is True
    assert state["links"] == [
        {"href": f"/admin/ssl_certs/details/?id={cert.id}", "label": "Open the certificate"}
    ]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login(client, "other-rao", PASSWORD)
    assert client.get(url).json == {}


def test_audit_verify_shows_its_outcome_in_place(app, client, stub_worker):
    make_admin("mrao")
    org = make_org()
    make_admin("rao", Role.RAO, org=org)
    login(client, "mrao", PASSWORD)
    resp = client.post(
        "/admin/audit/verify/", data={"csrf_token": csrf_token(client, "/admin/audit/")}
    )
    job = db.session.query(Job).filter_by(kind="audit_verify").one()
    assert resp.headers["Location"].endswith(f"/admin/audit/?verify={job.id}")
    page = client.get(f"/admin/audit/?verify={job.id}").get_data(as_text=True)
    assert 'id="cw-verify-status"' in page and 'data-cw-live="/admin/jobs/status/"' in page
    drain(stub_worker)
    state = client.get(f"/admin/jobs/status/?ids={job.id}").json[str(job.id)]
    assert state["state"] == "Intact" and state["final"] is True
    assert re.fullmatch(r"The hash chain is intact: \d+ events verified\.", state["text"])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login(client, "rao", PASSWORD)  # an RAO does not see an MRAO's job
    assert client.get(f"/admin/jobs/status/?ids={job.id}").json == {}


def test_jobs_status_ignores_jobs_of_others(app, client):
    org = make_org()
    make_admin("rao", Role.RAO, org=org)
    job = jobs.create_job(kind="housekeeping", actor=make_admin("mrao"))
    db.session.commit()
    login(client, "rao", PASSWORD)
    assert client.get(f"/admin/jobs/status/?ids={job.id}").json == {}


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("x509CO", "www.acme.example.pem"),
        ("x509", "www.acme.example-chain.pem"),
        ("pemia", "www.acme.example-fullchain.pem"),
        ("x509IO", "www.acme.example-intermediates.pem"),
        ("x509IOR", "www.acme.example-intermediates-reversed.pem"),
        ("base64", "www.acme.example.p7b"),
        ("bin", "www.acme.example.p7c"),
        ("cer", "www.acme.example.cer"),
    ],
)
def test_downloads_are_named_by_content(client, world, fmt, name):
    cert = db.session.query(Certificate).one()
    resp = client.get(f"/admin/ssl_certs/download/?id={cert.id}&format={fmt}")
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}"'
