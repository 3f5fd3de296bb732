"""Every front door, walked as a hostile second role: an RAO of Alpha and a DRAO of
Alpha/Ops (tests/integration/hostile_world.py) reach with ids of Beta's objects (and of
Alpha/Lab's, for the DRAO) into every route of app.url_map that names an object.

The tables below say how each such route is exercised. A route added later that takes an
object id (a path converter, or a console view reading ``id``/``ids``/``rowid``) and is in
no table fails ``test_every_route_that_names_an_object_is_in_a_table``, so a new front door
is audited before it ships.

What counts as a leak: a response that carries a marker of a foreign object (its name, its
e-mail address, its certificate), or any change to a foreign object's row.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AuditEvent, Role
from tests.conftest import csrf_token
from tests.integration.hostile_world import ATTACKERS, build_hostile_world
from tests.integration.rbac_world import as_

# What must never reach an attacker (regular expressions over the response body).
# (Beta's department "Secret" as a name, not the word in "Secret id" or "the secret is".)
BETA = re.compile(r"(?i)beta(?!-?full)|>\s*Secret\s*<|/ Secret\b")
LAB = re.compile(r"people\.lab\.alpha\.example|lab\.alpha\.example|Labperson|>\s*Lab\s*<")
MARKERS = {"alpha-full": (BETA,), "ops-full": (BETA, LAB)}

# Flask-Admin model views: endpoint -> world key of an object the attackers must not reach
# (details, edit, delete, every bulk action, ajax lookups, list, search, export).
VIEW_OBJECTS: dict[str, str] = {
    "organization": "beta",
    "department": "secret",
    "domain": "beta_domain",
    "delegation": "beta_delegation",
    "admins": "beta_admin",
    "persons": "beta_person",
    "invitations": "beta_invitation",
    "acme_keys": "beta_acme_key",
    "acme_accounts": "beta_acme_account",
    "notification_webhooks": "beta_webhook",
    "notification_rules": "beta_notification_rule",
    "sent_notifications": "beta_delivery",
    "assignment_rules": "beta_assignment_rule",
    "discovery_tasks": "beta_task",
    "network_assets": "beta_endpoint",
    "jobs": "beta_job",
    "outbox": "beta_outbox",
    "ssl_certs": "beta_cert",
    "ssl_requests": "beta_request",
    # One certificate view class per type: the others are reached with Beta's SSL
    # certificate/request too (wrong type and wrong organization alike must answer "no").
    "client_certs": "beta_cert",
    "client_requests": "beta_request",
    "code_signing_certs": "beta_cert",
    "code_signing_requests": "beta_request",
    "device_certs": "beta_cert",
    "device_requests": "beta_request",
    "other_certs": "beta_cert",
}
# Model views that hold no organization's data: account-wide or MRAO-only. The attackers'
# writes must still change nothing (checked by the database fingerprint).
UNPLACED_VIEWS = {
    "cas": "CAs are account-wide (every administrator enrolls through them); MRAO edits",
    "profiles": "profiles are account-wide; MRAO edits",
    "scan_agents": "MRAO only (403 to RAO/DRAO)",
    "audit": "MRAO only (403 to RAO/DRAO)",
}
# The lab objects a DRAO of Ops must not reach either (view -> key).
LAB_OBJECTS = {
    "department": "lab",
    "domain": "lab_domain",
    "persons": "lab_person",
    "invitations": "lab_invitation",
}

# Console routes beyond Flask-Admin's own that name an object: endpoint -> requests
# (method, url, form) with {key} placeholders filled from the world.
CUSTOM: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "cas.retire_view": [("POST", "/admin/cas/retire/", {"id": "{root_ca}"})],
    "cas.revoke_view": [("GET", "/admin/cas/revoke/?id={root_ca}", {})],
    "cert_import.details": [("GET", "/admin/cert_import/details/?id={beta_import}", {})],
    "cert_import.download": [("GET", "/admin/cert_import/download/?id={beta_import}", {})],
    "cert_import.index": [
        ("POST", "/admin/cert_import/", {"target": "o:{beta}"}),
        ("POST", "/admin/cert_import/", {"target": "d:{secret}"}),
    ],
    "delegation.decide_view": [
        ("GET", "/admin/delegation/decide/?id={beta_delegation}", {}),
        ("POST", "/admin/delegation/decide/?id={beta_delegation}", {"approve": "1"}),
    ],
    "discovery_tasks.cancel_view": [
        ("POST", "/admin/discovery_tasks/cancel/", {"id": "{beta_task}"})
    ],
    "discovery_tasks.history_view": [("GET", "/admin/discovery_tasks/history/?id={beta_task}", {})],
    "discovery_tasks.progress_view": [
        ("GET", "/admin/discovery_tasks/progress/?ids={beta_task}", {})
    ],
    "discovery_tasks.scan_view": [("POST", "/admin/discovery_tasks/scan/", {"id": "{beta_task}"})],
    "jobs.status_view": [("GET", "/admin/jobs/status/?ids={beta_job}", {})],
    "network_assets.assign_view": [
        ("GET", "/admin/network_assets/assign/?ids={beta_endpoint}", {}),
        (
            "POST",
            "/admin/network_assets/assign/",
            {"ids": "{beta_endpoint}", "target": "o:{alpha}"},
        ),
    ],
    "organization.notices_view": [("GET", "/admin/organization/notices/?id={beta}", {})],
    "organization.portal_view": [("GET", "/admin/organization/portal/?id={beta}", {})],
    "persons.invitation_view": [
        (
            "POST",
            "/admin/persons/invitation/",
            {"id": "{beta_person}", "invitation_id": "{beta_invitation}", "op": "revoke"},
        ),
        (
            "POST",
            "/admin/persons/invitation/",
            {"id": "{beta_person}", "invitation_id": "{beta_invitation}", "op": "resend"},
        ),
    ],
    "persons.invite_view": [("GET", "/admin/persons/invite/?id={beta_person}", {})],
    "report_schedules.edit": [("GET", "/admin/report_schedules/edit/?id={beta_schedule}", {})],
    "report_schedules.delete": [
        ("POST", "/admin/report_schedules/delete/", {"id": "{beta_schedule}"})
    ],
    "report_schedules.run_now": [
        ("POST", "/admin/report_schedules/run/", {"id": "{beta_schedule}"})
    ],
    "reports.view": [("GET", "/admin/reports/view/?id={beta_report}", {})],
    "reports.download": [("GET", "/admin/reports/download/?id={beta_report}", {})],
    "reports.cancel": [("POST", "/admin/reports/cancel/", {"id": "{beta_report}"})],
    "scan_agents.disable_view": [("POST", "/admin/scan_agents/disable/", {"id": "1"})],
    "scan_agents.enable_view": [("POST", "/admin/scan_agents/enable/", {"id": "1"})],
    "scan_agents.limits_view": [("GET", "/admin/scan_agents/limits/?id=1", {})],
}
for kind in ("ssl", "client", "code_signing", "device", "other"):
    CUSTOM[f"{kind}_certs.download_view"] = [
        ("GET", f"/admin/{kind}_certs/download/?id={{beta_cert}}&format=x509", {}),
        ("GET", f"/admin/{kind}_certs/download/?id={{beta_cert}}&format=pem", {}),
    ]
    CUSTOM[f"{kind}_certs.pkcs12_view"] = [
        ("POST", f"/admin/{kind}_certs/pkcs12/", {"id": "{beta_cert}", "password": "x" * 12})
    ]
    CUSTOM[f"{kind}_certs.renew_view"] = [
        ("POST", f"/admin/{kind}_certs/renew/", {"id": "{beta_cert}"})
    ]
    CUSTOM[f"{kind}_certs.replace_view"] = [
        ("GET", f"/admin/{kind}_certs/replace/?id={{beta_cert}}", {})
    ]
    CUSTOM[f"{kind}_certs.revoke_view"] = [
        ("GET", f"/admin/{kind}_certs/revoke/?ids={{beta_cert}}", {}),
        (
            "POST",
            f"/admin/{kind}_certs/revoke/",
            {"ids": "{beta_cert}", "reason": "keyCompromise"},
        ),
    ]
for kind in ("ssl", "client", "code_signing", "device"):
    CUSTOM[f"{kind}_requests.decide_view"] = [
        ("GET", f"/admin/{kind}_requests/decide/?id={{beta_request}}", {}),
        ("POST", f"/admin/{kind}_requests/decide/?id={{beta_request}}", {"approve": "1"}),
    ]
    CUSTOM[f"{kind}_requests.retry_view"] = [
        ("POST", f"/admin/{kind}_requests/retry/", {"id": "{beta_request}"})
    ]
    CUSTOM[f"{kind}_requests.status_view"] = [
        ("GET", f"/admin/{kind}_requests/status/?ids={{beta_request}}", {})
    ]

# Console routes that read no object id (or only the signed-in admin's own things).
NO_OBJECT = {
    "admin.index": "the dashboard: its counts are checked by test_rbac and below",
    "admin.location_view": "stores where the admin last was (their own session)",
    "about.index": "version information",
    "audit.verify_view": "MRAO only: starts a verification job",
    "cert_import.index": "lists the admin's visible imports (also exercised in CUSTOM)",
    "discovery_tasks.import_view": "uploads tasks into the admin's own scope",
    "discovery_tasks.schedule_preview_view": "a schedule's next runs, computed from arguments",
    "persons.import_view": "uploads persons into the admin's own scope",
    "persons.template_view": "a blank CSV template",
    "planner.index": "scoped by the service (validity_plan(actor=...)); swept for markers",
    "planner.csv_view": "scoped by the service; swept for markers",
    "profile.index": "the admin's own profile",
    "profile.dismiss_welcome": "the admin's own flag",
    "profile.timezone_view": "the admin's own time zone",
    "report_schedules.index": "the admin's visible schedules; swept for markers",
    "report_schedules.create": "a new schedule (its filters are checked: see below)",
    "report_schedules.schedule_preview": "a schedule's next runs, computed from arguments",
    "reports.index": "the admin's visible reports; swept for markers",
    "reports.structure": "the account structure XML in the admin's scope; swept for markers",
    "admin.static": "static files",
}

# Routes outside the console that take an object id: how their authorization works and
# where it is tested (the capability-token routes are exercised with a forged token here).
OUTSIDE_CONSOLE = {
    "acme.account": "ACME: JWS by the account key; test_acme.py::test_objects_are_found_only_by_their_account_and_in_their_directory",
    "acme.account_orders": "ACME: as above",
    "acme.authorization": "ACME: as above",
    "acme.certificate": "ACME: as above",
    "acme.challenge": "ACME: as above",
    "acme.order": "ACME: as above",
    "acme.finalize": "ACME: as above",
    "acme.renewal_info": "ACME ARI: public by RFC 9773 (certificate id = AKI.serial)",
    "collect.page": "capability token hashed on the certificate row; forged below",
    "collect.download": "capability token hashed on the certificate row; forged below",
    "register.download": "capability token of the enrollment; test_portal.py::test_progress_and_download_need_the_token",
    "register.progress": "capability token of the enrollment; as above",
    "notices.acknowledge": "HMAC token over the delivery id; forged below",
    "notices.preference": "HMAC token over the delivery id; forged below",
    "report_links.download": "HMAC token over report id and expiry; forged below",
    "pki.ca_certificate": "public (relying parties): CA certificates",
    "pki.ca_certificate_pem": "public (relying parties): CA certificates",
    "pki.crl": "public (relying parties): CRLs",
    "pki.ocsp_post": "public (relying parties): OCSP",
    "pki.ocsp_get": "public (relying parties): OCSP",
    "assets.plotly_js": "static asset",
}

# SCM REST API (and its /private/api twin): endpoint -> calls (method, path under /api,
# JSON body) that name a foreign object.
SCM_CALLS: dict[str, list[tuple[str, str, Any]]] = {
    "account_details": [("GET", "/acme/v1/account/{beta_acme_account}", None)],
    "update_account": [("PUT", "/acme/v1/account/{beta_acme_account}", {"name": "pwned"})],
    "delete_account": [("DELETE", "/acme/v1/account/{beta_acme_account}", None)],
    "add_account_domains": [
        (
            "POST",
            "/acme/v1/account/{beta_acme_account}/domains",
            {"domains": [{"name": "alpha.example"}]},
        )
    ],
    "remove_account_domains": [
        (
            "DELETE",
            "/acme/v1/account/{beta_acme_account}/domains",
            {"domains": [{"name": "beta.example"}]},
        )
    ],
    "admin_details": [("GET", "/admin/v1/{beta_admin}", None)],
    "update_admin": [("PUT", "/admin/v1/{beta_admin}", {"forename": "pwned"})],
    "delete_admin": [("DELETE", "/admin/v1/{beta_admin}", None)],
    "domain_details": [("GET", "/domain/v1/{beta_domain}", None)],
    "delete_domain": [("DELETE", "/domain/v1/{beta_domain}", None)],
    "activate_domain": [("PUT", "/domain/v1/{beta_domain}/activate", None)],
    "suspend_domain": [("PUT", "/domain/v1/{beta_domain}/suspend", None)],
    "add_delegation": [
        (
            "POST",
            "/domain/v1/{beta_domain}/delegation",
            {"orgId": "{alpha}", "certTypes": ["SSL"]},
        )
    ],
    "remove_delegation": [
        ("DELETE", "/domain/v1/{beta_domain}/delegation", {"orgId": "{beta}", "certTypes": ["SSL"]})
    ],
    "approve_delegation": [
        ("POST", "/domain/v1/{beta_domain}/delegation/approve", {"orgId": "{beta}"})
    ],
    "reject_delegation": [
        ("POST", "/domain/v1/{beta_domain}/delegation/reject", {"orgId": "{beta}"})
    ],
    "import_state": [("GET", "/ssl/v1/import/{beta_import}", None)],
    "import_results": [("GET", "/ssl/v1/import/{beta_import}/results", None)],
    "organization_details": [("GET", "/organization/v1/{beta}", None)],
    "person_id_by_email": [("GET", "/person/v1/id/byEmail/pat@people.beta.example", None)],
    "person_details": [("GET", "/person/v1/{beta_person}", None)],
    "update_person": [("PUT", "/person/v1/{beta_person}", {"firstName": "pwned"})],
    "delete_person": [("DELETE", "/person/v1/{beta_person}", None)],
    "run_report": [
        ("POST", "/report/v1/ssl-certificates", {"organizationIds": ["{beta}"]}),
        ("POST", "/report/v1/domains", {"organizationIds": ["{beta}"]}),
        ("POST", "/report/v1/activity", {}),
    ],
    "by_person_email": [("GET", "/smime/v2/byPersonEmail/pat@people.beta.example", None)],
    "smime_details": [("GET", "/smime/v1/{beta_request}", None)],
    "smime_collect": [("GET", "/smime/v1/collect/{beta_cert}", None)],
    "smime_renew_by_order": [("POST", "/smime/v2/renew/order/{beta_cert}", None)],
    "smime_renew_by_serial": [("POST", "/smime/v2/renew/serial/{beta_serial}", None)],
    "smime_replace": [("POST", "/smime/v2/replace/order/{beta_cert}", {"csr": "x"})],
    "smime_revoke_by_order": [
        ("POST", "/smime/v1/revoke/order/{beta_cert}", {"reason": "keyCompromise"})
    ],
    "certificate_details": [("GET", "/ssl/v1/{beta_request}", None)],
    "collect": [("GET", "/ssl/v1/collect/{beta_request}", None)],
    "collect_format": [("GET", "/ssl/v1/collect/{beta_request}/x509", None)],
    "renew": [("POST", "/ssl/v1/renewById/{beta_request}", {})],
    "replace": [("POST", "/ssl/v1/replace/{beta_request}", {"reason": "x", "csr": "x"})],
    "revoke": [("POST", "/ssl/v1/revoke/{beta_request}", {"reason": "keyCompromise"})],
    "revoke_by_serial": [
        ("POST", "/ssl/v1/revoke/serial/{beta_serial}", {"reason": "keyCompromise"})
    ],
    "unknown_operation": [],  # answers 404 to every path
}
# Lists and lookups by a foreign place, swept for markers.
SCM_LISTS = [
    ("GET", "/domain/v1/{shared_domain}", None),  # own domain, with Beta's delegation hidden
    ("GET", "/acme/v1/account/?organizationId={beta}", None),
    ("GET", "/admin/v1/", None),
    ("GET", "/dcv/v1/validation/", None),
    ("GET", "/domain/v1/", None),
    ("GET", "/domain/v1/count/", None),
    ("GET", "/organization/v1/", None),
    ("GET", "/person/v1/", None),
    ("GET", "/person/v1/?email=pat@people.beta.example", None),
    ("GET", "/smime/v1/?orgId={beta}", None),
    ("GET", "/ssl/v1/", None),
    ("GET", "/ssl/v1/?organizationId={beta}", None),
    ("GET", "/ssl/v1/types/?organizationId={beta}", None),
    ("GET", "/ssl/v1/customFields/", None),
    ("GET", "/acme/v1/server/?organizationId={beta}", None),
    ("POST", "/ssl/v1/enroll/", {"orgId": "{beta}", "csr": "x", "certType": 1, "term": 90}),
    ("POST", "/smime/v1/enroll/", {"orgId": "{beta}", "csr": "x", "certType": 1, "term": 90}),
    ("POST", "/ssl/v1/import/?orgId={beta}", None),
    ("POST", "/smime/v1/revoke/", {"email": "pat@people.beta.example", "reason": "x"}),
    ("POST", "/dcv/v1/validation/status/", {"domain": "beta.example"}),
    ("POST", "/dcv/v1/validation/start/domain/cname/", {"domain": "beta.example"}),
    ("POST", "/dcv/v1/validation/submit/domain/cname/", {"domain": "beta.example"}),
    (
        "POST",
        "/admin/v1/",
        {
            "login": "sneaky",
            "email": "sneaky@example.com",
            "forename": "S",
            "surname": "N",
            "password": "a-long-password-1",
            "credentials": [{"role": "RAO_SSL", "orgId": "{beta}"}],
        },
    ),
    (
        "POST",
        "/domain/v1/",
        {"name": "x.beta.example", "delegations": [{"orgId": "{beta}", "certTypes": ["SSL"]}]},
    ),
    (
        "POST",
        "/person/v1/",
        {
            "organizationId": "{beta}",
            "email": "new@people.beta.example",
            "firstName": "N",
            "lastName": "P",
            "validationType": "STANDARD",
        },
    ),
]

ID_CONVERTER = re.compile(r"<(?:int|apiid|path)(?:\([^)]*\))?:[a-z_]+>|<[a-z_]*id>")


def console_views(app: Flask) -> dict[str, Any]:
    return {view.endpoint: view for admin in app.extensions["admin"] for view in admin._views}


# --- the tables cover the url_map ------------------------------------------------------


def test_every_route_that_names_an_object_is_in_a_table(app):
    views = console_views(app)
    missing = []
    standard = {
        "index_view",
        "create_view",
        "details_view",
        "edit_view",
        "delete_view",
        "action_view",
        "ajax_lookup",
        "ajax_update",
        "export",
    }
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if endpoint in ("static", "auth.login", "auth.logout", "auth.root"):
            continue
        prefix, _, name = endpoint.partition(".")
        if prefix in ("scm", "scm_private"):
            if "<" in rule.rule and name not in SCM_CALLS:
                missing.append(f"{rule.rule} ({endpoint}): not in SCM_CALLS")
            continue
        view = views.get(prefix)
        if view is not None and hasattr(view, "model") and name in standard:
            if prefix not in VIEW_OBJECTS and prefix not in UNPLACED_VIEWS:
                missing.append(f"{rule.rule} ({endpoint}): model view not in VIEW_OBJECTS")
            continue
        if rule.rule.startswith("/admin/"):
            if endpoint not in CUSTOM and endpoint not in NO_OBJECT:
                missing.append(f"{rule.rule} ({endpoint}): not in CUSTOM or NO_OBJECT")
            continue
        if ID_CONVERTER.search(rule.rule) and endpoint not in OUTSIDE_CONSOLE:
            missing.append(f"{rule.rule} ({endpoint}): not in OUTSIDE_CONSOLE")
    assert not missing, "routes nobody audited:\n" + "\n".join(sorted(missing))


# --- the console sweep -----------------------------------------------------------------


@pytest.fixture
def world(app):
    return build_hostile_world()


# Tables whose rows an attacker's requests may legitimately write: their own sessions,
# audit events (denied attempts), throttles, jobs they start for themselves.
VOLATILE = {
    "admin_sessions",
    "audit_events",
    "audit_head",
    "signin_throttles",
    "api_rate_windows",
    "api_idempotency_keys",
    "acme_nonces",
    "alembic_version",
}


def fingerprint() -> dict[str, str]:
    """A digest of every table an attacker must not change."""
    db.session.commit()
    digests = {}
    for table in db.metadata.sorted_tables:
        if table.name in VOLATILE:
            continue
        columns = [c for c in table.columns if c.name not in ("last_seen_at", "last_sign_in_at")]
        rows = db.session.execute(select(*columns).order_by(*table.primary_key.columns)).all()
        digests[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def leaks(who: str, what: str, body: bytes, sent: tuple[str, ...] = ()) -> list[str]:
    """Markers in a response, after removing what the attacker sent themselves (an answer
    that echoes the name asked for, as it does for a missing one, tells nothing)."""
    found = []
    page = body.decode("utf-8", "replace")
    for echoed in sent:
        page = page.replace(echoed, "")
    for marker in MARKERS[who]:
        match = marker.search(page)
        if match:
            start = max(0, match.start() - 60)
            found.append(f"{who} {what}: {page[start : match.end() + 60]!r}")
    return found


def fill(template: str, ids: dict[str, Any]) -> str:
    return template.format(**{k: "" if v is None else v for k, v in ids.items()})


def requests_for(
    app: Flask, ids: dict[str, Any], who: str
) -> list[tuple[str, str, dict[str, Any]]]:
    views = console_views(app)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for endpoint, key in sorted(VIEW_OBJECTS.items()) + sorted(
        (v, "root_ca") for v in UNPLACED_VIEWS
    ):
        keys = [key]
        if who == "ops-full" and endpoint in LAB_OBJECTS:
            keys.append(LAB_OBJECTS[endpoint])
        view = views[endpoint]
        for k in keys:
            oid = ids[k]
            base = f"/admin/{endpoint}"
            out += [
                ("GET", f"{base}/details/?id={oid}", {}),
                ("GET", f"{base}/edit/?id={oid}", {}),
                ("POST", f"{base}/edit/?id={oid}", {"name": "pwned"}),
                ("POST", f"{base}/delete/", {"id": oid}),
            ]
            for name, _ in getattr(view, "_actions", []) or []:
                out.append(("POST", f"{base}/action/", {"action": name, "rowid": [str(oid)]}))
        base = f"/admin/{endpoint}"
        out += [
            ("GET", f"{base}/", {}),
            # Parts of the foreign names (the whole would be echoed in the page's links).
            ("GET", f"{base}/?search=eta", {}),
            ("GET", f"{base}/?search=ab", {}),
            ("GET", f"{base}/export/csv/", {}),
            ("GET", f"{base}/export/csv/?search=eta", {}),
            ("GET", f"{base}/new/", {}),  # its select boxes
        ]
        for name in getattr(view, "_form_ajax_refs", None) or {}:
            out.append(("GET", f"{base}/ajax/lookup/?name={name}&query=", {}))
            out.append(("GET", f"{base}/ajax/lookup/?name={name}&query=eta", {}))
        for position, _ in enumerate(getattr(view, "_filters", None) or []):
            # Every filter given every foreign id: an id filter must not open another scope.
            for k in {"beta", "secret", "beta_cert", "beta_request", "beta_task", key}:
                out.append(("GET", f"{base}/?flt0_{position}={ids[k]}", {}))
    # The details page of every row of every model, own ones included (a page of one's own
    # object must not show a foreign part of it, e.g. a domain's delegation to Beta).
    for endpoint in sorted(VIEW_OBJECTS):
        model = views[endpoint].model
        pk = getattr(model, views[endpoint]._primary_key)
        for row_id in db.session.execute(select(pk).order_by(pk)).scalars():
            out.append(("GET", f"/admin/{endpoint}/details/?id={row_id}", {}))
    for _endpoint, calls in sorted(CUSTOM.items()):
        for method, url, form in calls:
            out.append((method, fill(url, ids), {k: fill(v, ids) for k, v in form.items()}))
    for url in (
        "/admin/",
        "/admin/planner/",
        "/admin/planner/csv/",
        "/admin/reports/",
        "/admin/reports/account-structure/",
        "/admin/report_schedules/",
        "/admin/cert_import/",
    ):
        out.append(("GET", url, {}))
    return out


@pytest.mark.parametrize("who", ATTACKERS)
def test_a_hostile_role_reaches_no_foreign_object_through_the_console(app, client, world, who):
    ids = {**world.ids, "root_ca": 1}
    as_(client, who)
    token = csrf_token(client, "/admin/profile/")
    before = fingerprint()
    found: list[str] = []
    for method, url, form in requests_for(app, ids, who):
        if method == "POST":
            response = client.post(url, data={**form, "csrf_token": token})
        else:
            response = client.get(url)
        found += leaks(who, f"{method} {url} {form or ''} -> {response.status_code}", response.data)
        if response.status_code == 302:
            # The page a refusal redirects to (its flash message included).
            follow = client.get(response.headers["Location"])
            found += leaks(who, f"{method} {url} -> {response.headers['Location']}", follow.data)
    after = fingerprint()
    changed = sorted(name for name in before if before[name] != after[name])
    assert not found, f"{len(found)} leaks:\n" + "\n".join(found[:40])
    assert not changed, f"{who} changed foreign rows in {changed}"
    # Every foreign object reached for through a view open to the role is an access.denied
    # event (docs/authorization.md); a view closed to the role answers 403 to everything.
    views = console_views(app)
    role = Role.RAO if who == "alpha-full" else Role.DRAO
    reached = {
        (views[endpoint].model.__name__, str(ids[key]))
        for endpoint, key in VIEW_OBJECTS.items()
        if ids[key] is not None and role in views[endpoint].roles
    }
    db.session.expire_all()
    audited = {
        (row.object_type, row.object_id)
        for row in db.session.execute(
            select(AuditEvent.object_type, AuditEvent.object_id).where(
                AuditEvent.action == "access.denied", AuditEvent.actor == who
            )
        )
    }
    assert not reached - audited, f"reached without an access.denied event: {reached - audited}"


# --- the SCM REST API ------------------------------------------------------------------


def api_attacker(login: str, role: Any, org_id: int, dept_id: int | None) -> dict[str, str]:
    from app.models import AdminKind, CertType, Role
    from app.services.accounts import admins
    from app.services.scope import SYSTEM

    admins.create_admin(
        actor=SYSTEM,
        login=login,
        email=f"{login}@example.com",
        role=role,
        password="the-api-password-1",
        grants=[] if role == Role.MRAO else [admins.Grant(org_id, dept_id, frozenset(CertType))],
        kind=AdminKind.API,
    )
    db.session.commit()
    return {"login": login, "password": "the-api-password-1", "customerUri": "certwright"}


def fill_json(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        filled = fill(value, ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, list):
        return [fill_json(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill_json(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("who", ATTACKERS)
def test_a_hostile_api_administrator_reaches_no_foreign_object(app, client, world, who):
    from app.api.scm.base import department_api_id
    from app.models import Certificate

    ids = dict(world.ids)
    ids["beta_serial"] = db.session.get(Certificate, ids["beta_cert"]).serial_hex
    if who == "alpha-full":
        headers = api_attacker("api-alpha", Role.RAO, ids["alpha"], None)
    else:
        headers = api_attacker("api-ops", Role.DRAO, ids["alpha"], ids["ops"])
    ids["secret_ref"] = department_api_id(ids["secret"])
    before = fingerprint()
    found: list[str] = []
    calls = [c for calls in SCM_CALLS.values() for c in calls] + SCM_LISTS
    # /private/api is the same blueprint, authenticated by a TLS client certificate instead.
    for prefix in ("/api",):
        for method, path, body in calls:
            url = prefix + fill(path, ids)
            response = client.open(
                url, method=method, headers=headers, json=fill_json(body, ids) if body else None
            )
            assert response.status_code != 401, (url, response.data)
            sent = ("pat@people.beta.example", "'beta.example'")
            what = f"{method} {url} {body or ''} -> {response.status_code}"
            found += leaks(who, what, response.data, sent)
    after = fingerprint()
    changed = sorted(name for name in before if before[name] != after[name])
    assert not found, f"{len(found)} leaks:\n" + "\n".join(found[:40])
    assert not changed, f"{who} changed foreign rows in {changed}"


def test_the_markers_are_seen_by_an_mrao(app, client, world):
    """The control: the same requests by an MRAO do carry the markers (so the sweeps above
    look for what a leak would show)."""
    ids = world.ids
    as_(client, "mrao")
    for url in (
        f"/admin/ssl_certs/details/?id={ids['beta_cert']}",
        f"/admin/persons/details/?id={ids['beta_person']}",
        f"/admin/department/details/?id={ids['lab']}",
    ):
        page = client.get(url).data
        assert leaks("ops-full", url, page), url
    headers = api_attacker("api-boss", Role.MRAO, 0, None)
    page = client.get(f"/api/ssl/v1/{ids['beta_request']}", headers=headers).data
    assert leaks("alpha-full", "api", page)


def test_capability_links_open_nothing_with_a_forged_or_borrowed_token(app, client, world):
    """The routes outside the console that take an id and a token (OUTSIDE_CONSOLE): a
    forged token, or the token of another object, opens nothing."""
    import time

    from app.services.reports import schedules

    ids = world.ids
    later = int(time.time()) + 3600
    own_report_token = schedules.link_token(ids["beta_report"] + 1000, later)
    for url in (
        f"/collect/{ids['beta_cert']}/forged",
        f"/collect/{ids['beta_cert']}/forged/x509",
        f"/collect/{ids['beta_cert']}/forged/pem",
        f"/notifications/ack/{ids['beta_cert']}/forged",
        f"/notifications/preference/{ids['beta_cert']}/forged",
        f"/reports/link/{ids['beta_report']}/{later}/forged",
        f"/reports/link/{ids['beta_report']}/{later}/{own_report_token}",
        f"/enroll/progress/{ids['beta_invitation']}/forged",
    ):
        response = client.get(url)
        assert response.status_code in (403, 404), url
        assert not leaks("alpha-full", url, response.data), url
    response = client.post(f"/enroll/download/{ids['beta_invitation']}/forged")
    assert response.status_code in (400, 403, 404)  # 400: no CSRF token from the page
    assert not leaks("alpha-full", "enroll download", response.data)


def test_an_own_object_with_a_foreign_part_shows_only_the_own_part(app, client, world):
    """shared.example is delegated to Alpha and to Beta: Alpha's RAO opens it (so the
    details sweep above does see it) without learning about Beta's delegation."""
    url = f"/admin/domain/details/?id={world.ids['shared_domain']}"
    assert leaks("alpha-full", url, as_(app.test_client(), "mrao").get(url).data)
    page = as_(client, "alpha-full").get(url)
    assert page.status_code == 200 and b"shared.example" in page.data
    assert not leaks("alpha-full", url, page.data)


@pytest.mark.parametrize("who", ATTACKERS)
def test_every_report_type_holds_only_the_attackers_rows(app, world, stub_worker, who):
    """The reports front door (run through the real chunk jobs): every report type, in
    every format, of an RAO/DRAO holds no foreign row."""
    from app.models import Report
    from app.services.reports import catalog, generation
    from tests.conftest import drain

    actor = db.session.execute(select(Admin).where(Admin.login == who)).scalar_one()
    found: list[str] = []
    for key in sorted(catalog.TYPES):
        for fmt in ("csv", "xml"):
            report = generation.start_report(actor=actor, report_type=key, fmt=fmt)
            db.session.commit()
            drain(stub_worker)
            report = db.session.get(Report, report.id)
            assert report.status == "done", (key, fmt, report.message)
            body = b"".join(generation.download(actor=actor, report_id=report.id).chunks)
            db.session.commit()
            found += leaks(who, f"report {key} {fmt}", body)
    assert not found, "\n".join(found)
