"""`flask report schedule list|create|delete`: the console's scheduled reports from the
command line, through the same service (validation, scope, audit)."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, ReportSchedule, Role
from tests.factories import make_admin, make_org


def test_create_list_and_delete_a_weekly_expiring_report(app):
    make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    make_admin("rao", Role.RAO, org=acme)
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "report",
            "schedule",
            "create",
            "Expiring soon",
            "ssl_certificates",
            "--every",
            "weekly",
            "--weekday",
            "monday",
            "--time",
            "07:30",
            "--timezone",
            "Europe/Berlin",
            "--next-days",
            "30",
            "--date-field",
            "expires",
            "--to-addresses",
            "ops@example.com, lead@example.com",
            "--org",
            "Acme",
            "--as",
            "rao",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["schedule"].startswith("Weekly on Monday at 07:30")
    assert made["next_run"] and made["owner"] == "rao" and made["period_days"] == 30
    item = db.session.get(ReportSchedule, made["id"])
    assert item.organization_id == acme.id and item.period == "next"
    assert db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "report_schedule.create")
    ).scalar_one()

    # Every problem at once, nothing saved; another organization is refused to the RAO.
    bad = runner.invoke(
        args=[
            "report",
            "schedule",
            "create",
            "",
            "nonsense",
            "--every",
            "weekly",
            "--weekday",
            "someday",
            "--to-addresses",
            "not-an-address",
            "--as",
            "rao",
        ]
    )
    assert bad.exit_code != 0
    for text in ("name:", "report_type:", "schedule:", "recipients:", "not saved"):
        assert text in bad.output, bad.output
    theirs = runner.invoke(
        args=[
            "report",
            "schedule",
            "create",
            "Theirs",
            "ssl_certificates",
            "--every",
            "daily",
            "--to-addresses",
            "x@example.com",
            "--org",
            "Other",
            "--as",
            "rao",
        ]
    )
    assert theirs.exit_code != 0 and "No such organization" in theirs.output
    assert other.id  # named, refused

    listed = runner.invoke(args=["report", "schedule", "list", "--as", "rao"])
    assert listed.exit_code == 0 and "Expiring soon" in listed.output
    make_admin("rao2", Role.RAO, org=other)
    nothing = runner.invoke(args=["report", "schedule", "list", "--as", "rao2"])
    assert "no scheduled reports" in nothing.output
    refused = runner.invoke(args=["report", "schedule", "delete", str(made["id"]), "--as", "rao2"])
    assert refused.exit_code != 0
    gone = runner.invoke(args=["report", "schedule", "delete", str(made["id"]), "--as", "rao"])
    assert gone.exit_code == 0, gone.output
    assert db.session.execute(select(ReportSchedule)).first() is None
