"""Certificate import over the REST API (a Certwright extension, docs/api.md): a script
uploads a ZIP, follows the import to its end, and downloads the same per-file results the
console gives; scope, bad input and the audit trail as everywhere in the API."""

from __future__ import annotations

import io
import time
import zipfile

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Certificate
from tests.factories import self_signed
from tests.integration.scm_live import Live, console_session

JSON = "application/json;charset=UTF-8"


def _self_signed(cn: str) -> bytes:
    return self_signed(cn).public_bytes(Encoding.PEM)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _error(response, status: int, code: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == JSON
    data = response.json()
    assert set(data) == {"code", "description"} and data["code"] == code, data
    return str(data["description"])


def _finished(live: Live, location: str, login: str = "api-mrao") -> dict:
    path = location.split("/api", 1)[1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = live.call("GET", path, login).json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"the import did not finish: {state}")


def test_a_script_imports_a_zip_and_reads_each_files_fate(live):
    archive = _zip({"www.pem": _self_signed("www.api-import.test"), "notes.txt": b"hello"})
    answer = live.call(
        "POST",
        f"/ssl/v1/import?orgId={live.ids['acme']}",
        files={"file": ("certs.zip", archive, "application/zip")},
    )
    assert answer.status_code == 202, answer.text
    import_id = answer.json()["importId"]
    location = answer.headers["Location"]
    assert location == f"{live.base}/api/ssl/v1/import/{import_id}"
    state = _finished(live, location)
    assert state["status"] == "done" and state["progress"] == 100, state
    assert state["files"] == ["certs.zip"]
    assert (
        state["counts"]["imported"] == 1
        and state["counts"].get("invalid", 0) + state["counts"].get("skipped", 0) == 1
    ), state
    cert = db.session.execute(
        select(Certificate).where(Certificate.common_name == "www.api-import.test")
    ).scalar_one()
    assert cert.organization_id == live.ids["acme"] and cert.status.value == "External"
    # The per-file results: the console's download, byte for byte.
    results = live.call("GET", f"/ssl/v1/import/{import_id}/results")
    assert results.status_code == 200 and results.headers["Content-Type"].startswith("text/csv")
    console = console_session(live).get(
        f"{live.base}/admin/cert_import/download/?id={import_id}", timeout=30
    )
    assert console.status_code == 200 and results.content == console.content
    assert b"www.pem" in results.content and b"notes.txt" in results.content
    # Audited with the API administrator as the actor.
    db.session.expire_all()
    event = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "certificate.import", AuditEvent.object_id == str(import_id)
        )
    ).scalar_one()
    assert event.actor == "api-mrao"


def test_imports_are_scoped_and_bad_uploads_are_refused(live):
    pem = _self_signed("scoped.api-import.test")
    # Another organization's RAO can neither import into Acme nor see Acme's import.
    refused = live.call(
        "POST",
        f"/ssl/v1/import?orgId={live.ids['acme']}",
        "api-beta",
        files={"file": ("one.pem", pem)},
    )
    assert refused.status_code in (403, 404), refused.text
    mine = live.call(
        "POST",
        f"/ssl/v1/import?orgId={live.ids['acme']}",
        "api-acme",
        files={"file": ("one.pem", pem)},
    )
    assert mine.status_code == 202, mine.text
    import_id = mine.json()["importId"]
    _finished(live, mine.headers["Location"], "api-acme")
    for path in (f"/ssl/v1/import/{import_id}", f"/ssl/v1/import/{import_id}/results"):
        assert "not found" in _error(live.call("GET", path, "api-beta"), 404, -1)
    # A department's API id imports into that department.
    dept_api_id = 1_000_000 + live.ids["it"]
    into_dept = live.call(
        "POST",
        f"/ssl/v1/import?orgId={dept_api_id}",
        files={"file": ("dept.pem", _self_signed("dept.api-import.test"))},
    )
    assert into_dept.status_code == 202, into_dept.text
    _finished(live, into_dept.headers["Location"])
    db.session.expire_all()
    placed = db.session.execute(
        select(Certificate).where(Certificate.common_name == "dept.api-import.test")
    ).scalar_one()
    assert (placed.organization_id, placed.department_id) == (live.ids["acme"], live.ids["it"])
    # Bad calls: each its own message, nothing stored.
    assert "orgId is required" in _error(
        live.call("POST", "/ssl/v1/import", files={"file": ("a.pem", pem)}), 400, -1023
    )
    assert "multipart/form-data" in _error(
        live.call("POST", f"/ssl/v1/import?orgId={live.ids['acme']}", json={"file": "x"}),
        400,
        -1601,
    )
    assert "No part named 'file'" in _error(
        live.call(
            "POST", f"/ssl/v1/import?orgId={live.ids['acme']}", files={"other": ("a.pem", pem)}
        ),
        400,
        -1601,
    )
    assert "is empty" in _error(
        live.call(
            "POST", f"/ssl/v1/import?orgId={live.ids['acme']}", files={"file": ("a.pem", b"")}
        ),
        400,
        -1601,
    )
    assert "not found" in _error(
        live.call("POST", "/ssl/v1/import?orgId=999999", files={"file": ("a.pem", pem)}),
        404,
        -1023,
    )
    assert "not found" in _error(live.call("GET", "/ssl/v1/import/999999"), 404, -1)
