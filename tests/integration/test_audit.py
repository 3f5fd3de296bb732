"""The audit log is chained: edits, deletions and reordering are detected and named."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import AuditEvent
from app.services import audit
from app.services.scope import SYSTEM
from tests.factories import make_admin, make_dept, make_org


@pytest.fixture
def history(app):
    make_admin("mrao")
    org = make_org("Acme")
    make_dept(org, "IT")
    make_dept(org, "Sales")
    assert audit.verify().ok
    return audit.verify().rows


def test_chain_is_intact_and_counts_rows(history):
    assert history == 4


def test_cli_reports_ok(app, history):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "OK: 4 audit rows, chain intact." in result.output


def test_orm_refuses_to_change_audit_rows(history):
    event = db.session.get(AuditEvent, 2)
    event.message = "rewritten"
    with pytest.raises(PermissionError):
        db.session.flush()
    db.session.rollback()


def test_edited_row_is_named(app, history):
    db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
    db.session.commit()
    verdict = audit.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    assert "row 3 was edited" in verdict.reason
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "BROKEN at row 3" in result.output


def test_deleted_row_is_named(history):
    db.session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    db.session.commit()
    verdict = audit.verify()
    assert verdict.first_bad_seq == 2 and "row 2 is missing (deleted)" in verdict.reason


def test_deleted_tail_is_detected(history):
    db.session.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    db.session.commit()
    verdict = audit.verify()
    assert (
        not verdict.ok
        and verdict.first_bad_seq == 4
        and "rows deleted from the end" in verdict.reason
    )


def test_reordered_rows_are_detected(history):
    db.session.execute(text("UPDATE audit_events SET seq = 100 WHERE seq = 2"))
    db.session.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
    db.session.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 100"))
    db.session.commit()
    verdict = audit.verify()
    assert verdict.first_bad_seq == 2 and "does not follow row 1" in verdict.reason


def test_rolled_back_work_leaves_no_audit_rows(history):
    make_org("Temp")  # commits
    before = audit.verify().rows
    from app.services.structure import orgs

    orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Never", country="DE"))
    db.session.rollback()
    make_org("After")
    assert audit.verify().ok and audit.verify().rows == before + 1


def test_console_shows_the_log_to_mrao_only(client, history):
    from app.models import Role
    from tests.conftest import login
    from tests.factories import PASSWORD

    org = make_org("Other")
    make_admin("rao", Role.RAO, org=org)
    login(client, "rao", PASSWORD)
    assert client.get("/admin/audit/").status_code == 403
    client2 = client.application.test_client()
    login(client2, "mrao", PASSWORD)
    page = client2.get("/admin/audit/").get_data(as_text=True)
    assert "organization.create" in page and "department.create" in page
    export = client2.get("/admin/audit/export/csv/")
    assert export.status_code == 200 and b"organization.create" in export.data
