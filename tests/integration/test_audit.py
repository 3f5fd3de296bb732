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
    assert result.exit_code == 0
    assert "OK: 4 audit rows, chain intact; the authenticated head expects 4 rows" in result.output


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
    assert verdict.expected == 4 and "the authenticated head expects 4 rows" in verdict.summary()


def cut_tail_and_rewrite_head(keep: int) -> None:
    """What an attacker with database access but without the audit key can do."""
    last = db.session.execute(text(f"SELECT hash FROM audit_events WHERE seq = {keep}")).scalar()
    db.session.execute(text(f"DELETE FROM audit_events WHERE seq > {keep}"))
    db.session.execute(text(f"UPDATE audit_head SET seq = {keep}, hash = '{last}' WHERE id = 1"))
    db.session.commit()


def test_cut_tail_with_rewritten_head_is_detected(app, history):
    cut_tail_and_rewrite_head(keep=2)
    verdict = audit.verify()
    assert not verdict.ok and verdict.rows == 2 and verdict.first_bad_seq == 3
    assert "does not match its MAC" in verdict.reason and verdict.expected is None
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "BROKEN at row 3" in result.output
    assert "number of rows written is unknown" in result.output


def test_appending_to_a_forged_head_records_it_for_good(history):
    cut_tail_and_rewrite_head(keep=2)
    make_org("Later")  # a legitimate change extends the chain from the forged head
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 3
    assert "row 2" in verdict.reason and "did not match its MAC" in verdict.reason
    actions = db.session.execute(
        text("SELECT action FROM audit_events WHERE seq > 2 ORDER BY seq")
    ).scalars()
    assert list(actions) == ["audit.head_forged", "organization.create"]
    assert verdict.expected == 4  # the head is authentic again: 2 + the evidence + the change


def test_head_rewritten_to_hide_nothing_still_needs_the_key(history):
    # Even the true values are refused without their MAC (a head written by hand).
    db.session.execute(text("UPDATE audit_head SET mac = '' WHERE id = 1"))
    db.session.commit()
    assert "does not match its MAC" in audit.verify().reason


def test_rows_appended_without_the_head_are_detected(history):
    row = db.session.execute(text("SELECT * FROM audit_events WHERE seq = 4")).mappings().one()
    forged = {**row, "seq": 5, "prev_hash": row["hash"], "action": "admin.create"}
    columns = ", ".join(forged)
    db.session.execute(
        text(f"INSERT INTO audit_events ({columns}) VALUES ({', '.join(':' + c for c in forged)})"),
        forged,
    )
    db.session.commit()
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 5
    assert "beyond the last row the head knows (4)" in verdict.reason


def test_migration_authenticates_an_existing_head(app, history):
    from flask_migrate import downgrade, upgrade

    from tests.conftest import ROOT

    migrations = str(ROOT / "migrations")
    db.session.remove()
    downgrade(directory=migrations, revision="0005_names_per_owner")
    upgrade(directory=migrations)
    verdict = audit.verify()
    assert verdict.ok and verdict.rows == 4 and verdict.expected == 4
    make_org("After the upgrade")
    assert audit.verify().ok and audit.verify().rows == 5


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


def test_the_chain_on_postgresql_a_few_rows_with_the_head_and_many_by_copy(postgres_app):
    """PostgreSQL appends a request's few events in the statement that moves the head, and
    a batch's many by COPY: both chain, verify and read back what was recorded."""
    from app.services import bulk

    def record(n: int, tag: str) -> None:
        for i in range(n):
            audit.record(
                action="test.event",
                actor=SYSTEM,
                object_type="Thing",
                object_id=i,
                label=f"{tag} {i}",
                before={"n": i, "tag": tag},
                after={"n": i + 1, "list": [1, "two"]},
                organization_id=None,
            )
        db.session.commit()

    start = audit.verify().rows
    record(1, "one")
    record(3, "few")
    record(bulk.FEW_ROWS + 2, "many")
    verdict = audit.verify()
    assert verdict.ok, verdict.summary()
    assert verdict.rows == start + 1 + 3 + bulk.FEW_ROWS + 2 == verdict.expected
    rows = (
        db.session.execute(
            db.select(AuditEvent)
            .where(AuditEvent.object_label.like("few %"))
            .order_by(AuditEvent.seq)
        )
        .scalars()
        .all()
    )
    assert [(r.object_label, r.before, r.after) for r in rows] == [
        (f"few {i}", {"n": i, "tag": "few"}, {"n": i + 1, "list": [1, "two"]}) for i in range(3)
    ]
    assert rows[0].at.tzinfo is not None and rows[1].prev_hash == rows[0].hash
