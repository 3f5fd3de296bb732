"""The Discovery console test bed, shared by the console tests: an MRAO signed in, Acme
with an Ops department, our own CA's certificate and external ones served by real TLS
servers on 127.0.31.x, and the helpers that drive the task and rule forms."""

from __future__ import annotations

import re
from types import SimpleNamespace

from cryptography import x509
from sqlalchemy import select

from app.extensions import db
from app.models import (
    DiscoveryTask,
    ScanRun,
)
from app.services.discovery import rules
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
from tests.tlsbed.certs import Issued, external_set, issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

NET = "127.0.31"
HOST = {
    "ext": f"{NET}.1",
    "ext2": f"{NET}.2",
    "expired": f"{NET}.3",
    "self": f"{NET}.4",
    "lonely": f"{NET}.5",
    "http": f"{NET}.6",
    "managed": f"{NET}.7",
}


def serve_bed(client, stub_worker):
    """Build the world, start the servers, sign the MRAO in; yields the bed (a fixture's body)."""
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    ops = make_dept(org, "Ops")
    make_org("Other Org")
    make_domain("acme.example", by=mrao, org=org)
    *_, profile = make_pki(requires_approval=False)
    req, key = request_certificate(by=mrao, org=org, profile=profile, cn="managed.acme.example")
    drain(stub_worker)
    db.session.refresh(req)
    ours = Issued(x509.load_der_x509_certificate(req.certificate.der), key)
    ca = Issued(x509.load_der_x509_certificate(req.certificate.request.profile.ca.cert_der), key)
    external = external_set()
    inter, ext, expired = external.inter, external.ext, external.expired
    lonely = issue(
        make_name("lonely.ext.test", "Example Corp"), issuer=inter, sans=["lonely.ext.test"]
    )
    selfsigned = external.selfsigned
    port = free_port(list(HOST.values()))
    with ServerFarm() as farm:
        farm.add_tls(HOST["ext"], port, server_context([ext, inter]))
        farm.add_tls(HOST["ext2"], port, server_context([ext, inter]))
        farm.add_tls(HOST["expired"], port, server_context([expired, inter]))
        farm.add_tls(HOST["self"], port, server_context([selfsigned]))
        farm.add_tls(HOST["lonely"], port, server_context([lonely]))  # no intermediate
        farm.add_plain(HOST["http"], port, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        farm.add_tls(HOST["managed"], port, server_context([ours, ca]))
        login(client, "mrao", PASSWORD)
        yield SimpleNamespace(
            mrao=mrao, org=org, ops=ops, port=port, ours=req.certificate, worker=stub_worker
        )


def post(client, url, data, page=None, **kw):
    token = csrf_token(client, page or url)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True, **kw)


def text(resp):
    return resp.get_data(as_text=True)


def make_rule(bed, name="Example Corp to Acme", value="Example Corp"):
    rule = rules.save_rule(
        actor=bed.mrao,
        data=rules.RuleData(
            name=name,
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": value}],
            organization_id=bed.org.id,
        ),
    )
    db.session.commit()
    return rule


def task_form(bed, **changes):
    data = {
        "name": "Loopback",
        "description": "the test bed",
        "agent": "Auto",
        "owner": "",
        "ranges": f"{NET}.0/29\nmanaged.acme.example\nwrong.acme.example",
        "ports": str(bed.port),
        "host_overrides": f"managed.acme.example = {HOST['managed']}\n"
        f"wrong.acme.example = {HOST['ext']}",
        "connect_timeout": "2",
        "handshake_timeout": "3",
        "concurrency": "64",
        "rule_order-0": "",
        "rule_order-1": "",
        "schedule_kind": "weekly",
        "schedule_time": "03:00",
        "schedule_timezone": "Europe/Berlin",
        "schedule_weekday": "0",
        "schedule_day_of_month": "1",
        "schedule_month": "1",
        "schedule_at": "",
    }
    data.update(changes)
    return data


def create_task(client, bed, **changes):
    rule = make_rule(bed)
    resp = post(
        client,
        "/admin/discovery_tasks/new/",
        task_form(bed, **{"rule_order-0": str(rule.id), **changes}),
    )
    assert "Saved the discovery task" in text(resp), text(resp)
    return db.session.execute(select(DiscoveryTask)).scalar_one()


def scan(client, bed, task):
    page = text(
        post(
            client, "/admin/discovery_tasks/scan/", {"id": task.id}, page="/admin/discovery_tasks/"
        )
    )
    assert f"of &#39;{task.name}&#39; started" in page, page
    drain(bed.worker)
    return db.session.execute(select(ScanRun).order_by(ScanRun.id.desc())).scalars().first()


def list_rows(page):
    """The rows of a Flask-Admin list table: [{column: cell text}]."""
    table = page.split('model-list">', 1)[1].split("</thead>", 1)[1].split("</table>", 1)[0]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = re.findall(r'<td class="col-(\w+)">(.*?)</td>', row, re.S)
        if cells:
            rows.append({k: " ".join(re.sub(r"<[^>]+>", " ", v).split()) for k, v in cells})
    return rows


def rows_of(page):
    """{(ip, host name): row} of the Network Assets list."""
    return {(r["ip"], r["host_name"]): " ".join(r.values()) for r in list_rows(page)}
