"""Scheduled reports: an admin schedules a weekly expiring-certificates report; the
scheduler fires it once, the worker builds it with the owner's scope and a real SMTP server
(aiosmtpd) receives it attached; a report over the size limit comes as a signed link that
downloads that one file and stops working when it expires; scope, validation, audit."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Job, Report, ReportSchedule, Role, Schedule
from app.models.types import utcnow
from app.services.errors import NotFound, ValidationFailed
from app.services.platform import scheduling
from app.services.reports import schedules
from app.services.reports.catalog import Filters
from tests import notify
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_org
from tests.integration.test_reports import EVIL, add_certificates

WEEKLY = {"kind": "weekly", "weekday": "monday", "time": "07:00", "timezone": "Europe/Berlin"}


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@example.com"
        )
        yield inbox


def expiring(**changes) -> schedules.ScheduleData:
    values = {
        "name": "Expiring this month",
        "report_type": "ssl_certificates",
        "fmt": "csv",
        "filters": Filters(date_field="expires"),
        "schedule": WEEKLY,
        "recipients": "boss@example.com, ops@example.com",
        "period": "next",
        "period_days": 30,
    }
    values.update(changes)
    return schedules.ScheduleData(**values)


def fire(item: ReportSchedule, worker) -> list[int]:
    sched = db.session.get(Schedule, item.schedule_id)
    due = sched.next_run_at
    fired = scheduling.fire_due_schedules(due)
    # A second scheduler pass at the same instant finds nothing due: fired once.
    assert scheduling.fire_due_schedules(due) == []
    drain(worker)
    return fired


def attachment(message):
    [part] = [p for p in message.iter_attachments()]
    return part.get_filename(), part.get_content_type(), part.get_payload(decode=True)


def test_a_weekly_expiring_report_is_mailed_attached_with_the_owners_scope(app, stub_worker, smtp):
    make_admin()
    mine, theirs = make_org(EVIL), make_org("Theirs")
    add_certificates(mine, 3, days=5)  # expire within 30 days
    add_certificates(mine, 2, prefix="later", days=200)  # not in the next 30 days
    add_certificates(theirs, 4, prefix="secret", days=5)
    rao = make_admin("rao", Role.RAO, org=mine)
    item = schedules.create_schedule(actor=rao, data=expiring())
    db.session.commit()
    sched = db.session.get(Schedule, item.schedule_id)
    runs = schedules.preview_schedule(WEEKLY)
    assert len(runs) == 5 and sched.next_run_at == runs[0]
    local = [r.astimezone(ZoneInfo("Europe/Berlin")) for r in runs]
    assert all((r.weekday(), r.hour, r.minute) == (0, 7, 0) for r in local)

    fired = fire(item, stub_worker)
    assert len(fired) == 1
    item = db.session.get(ReportSchedule, item.id)
    assert item.last_error == "" and item.last_report_id is not None
    report = db.session.get(Report, item.last_report_id)
    assert report.status == "done" and report.created_by_id == rao.id
    assert db.session.get(Schedule, item.schedule_id).next_run_at == runs[1]

    received = smtp.to("boss@example.com")
    assert len(received) == 1 and smtp.to("ops@example.com")
    message = received[0]
    assert "Scheduled report: Expiring this month" in str(message["Subject"])
    body = notify.parts(message)["text/plain"]
    assert "The report is attached" in body and "Rows: 3" in body
    name, ctype, data = attachment(message)
    assert name.endswith(".csv") and ctype == "text/csv"
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(rows) == 4  # a header and the three expiring in the RAO's organization
    assert {r[2] for r in rows[1:]} == {"'" + EVIL}  # formula-safe, and nothing of Theirs
    assert not any("secret" in cell for r in rows for cell in r)

    # The job run again (at-least-once delivery) starts no second report.
    [job_id] = fired
    job = db.session.get(Job, job_id)
    job.status, job.attempts = "pending", 0
    db.session.commit()
    from app.services.platform import jobs

    jobs.execute(job_id, schedules.run_schedule_job)
    drain(stub_worker)
    assert (
        db.session.execute(
            select(func.count(Report.id)).where(Report.report_schedule_id == item.id)
        ).scalar()
        == 1
    )
    assert len(smtp.to("boss@example.com")) == 1


def test_a_report_over_the_limit_comes_as_a_link_that_downloads_and_expires(
    app, stub_worker, smtp, client
):
    mrao = make_admin()
    org = make_org("Acme")
    add_certificates(org, 5, days=3)
    app.config["CW_REPORT_MAIL_MAX_BYTES"] = 100
    app.config["CW_REPORT_LINK_HOURS"] = 2
    item = schedules.create_schedule(actor=mrao, data=expiring(fmt="xml"))
    db.session.commit()
    fire(item, stub_worker)
    [message] = smtp.to("boss@example.com")
    assert not list(message.iter_attachments())
    body = notify.parts(message)["text/plain"]
    assert "more than is mailed as an attachment" in body
    url = next(line for line in body.splitlines() if "/reports/link/" in line).strip()
    path = urlsplit(url).path

    response = client.get(path)  # no sign-in: the token is the authority
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/xml")
    assert b"<count>5</count>" in response.data
    report = db.session.get(Report, db.session.get(ReportSchedule, item.id).last_report_id)
    assert b"".join(schedules.generation.content(report).chunks) == response.data
    linked = (
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "report.download", AuditEvent.actor == "link"
            )
        )
        .scalars()
        .all()
    )
    assert len(linked) == 1 and str(report.id) == str(linked[0].object_id)

    # Only that file: the token does not open another report, and a changed expiry
    # breaks the signature.
    _, _, _, report_id, expires, token = path.split("/")
    assert client.get(f"/reports/link/{int(report_id) + 1}/{expires}/{token}").status_code == 404
    assert client.get(f"/reports/link/{report_id}/{int(expires) + 3600}/{token}").status_code == 404
    # It expires CW_REPORT_LINK_HOURS after it was mailed.
    assert int(expires) - int(utcnow().timestamp()) <= 2 * 3600
    with pytest.raises(NotFound, match="expired"):
        schedules.report_for_link(
            report_id=int(report_id),
            expires=int(expires),
            token=token,
            now=utcnow() + timedelta(hours=2, seconds=1),
        )
    past = int((utcnow() - timedelta(seconds=1)).timestamp())
    gone = client.get(
        f"/reports/link/{report_id}/{past}/{schedules.link_token(int(report_id), past)}"
    )
    assert gone.status_code == 404 and b"expired" in gone.data
    # Deleting the schedule stops its links.
    schedules.delete_schedule(actor=mrao, schedule_id=item.id)
    db.session.commit()
    assert client.get(path).status_code == 404


def test_schedules_are_validated_and_scoped_to_their_owner(app, stub_worker):
    mrao = make_admin()
    mine, theirs = make_org("Mine"), make_org("Theirs")
    rao = make_admin("rao", Role.RAO, org=mine)
    other = make_admin("other", Role.RAO, org=theirs)
    with pytest.raises(ValidationFailed) as refused:
        schedules.create_schedule(
            actor=rao,
            data=expiring(
                recipients="boss@example.com, not an address\r\nBcc: x@evil.example",
                filters=Filters(organization_id=theirs.id),
                schedule={"kind": "weekly", "time": "25:00", "timezone": "Mars/Olympus"},
                period_days=0,
            ),
        )
    errors = refused.value.errors
    assert errors["organization_id"] == ["No such organization."]
    assert any("Mars/Olympus" in e for e in errors["schedule"])
    assert errors["recipients"] and errors["period_days"]
    db.session.rollback()
    item = schedules.create_schedule(
        actor=rao, data=expiring(filters=Filters(organization_id=mine.id))
    )
    db.session.commit()
    assert [s.id for s in schedules.visible_schedules(actor=rao)] == [item.id]
    assert schedules.visible_schedules(actor=other) == []
    assert [s.id for s in schedules.visible_schedules(actor=mrao)] == [item.id]
    with pytest.raises(NotFound):
        schedules.get_schedule(actor=other, schedule_id=item.id)
    with pytest.raises(NotFound):
        schedules.delete_schedule(actor=other, schedule_id=item.id)
    db.session.rollback()
    updated = schedules.update_schedule(
        actor=rao, schedule_id=item.id, data=expiring(name="Renamed")
    )
    db.session.commit()
    assert updated.name == "Renamed" and updated.owner_id == rao.id
    actions = [
        e.action
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.object_type == "ReportSchedule")
        ).scalars()
    ]
    # The other RAO's two attempts are recorded as denied.
    assert actions == [
        "report_schedule.create",
        "access.denied",
        "access.denied",
        "report_schedule.update",
    ]
    # The owner deactivated: the next run is refused, recorded on the schedule.
    rao.active = False
    db.session.commit()
    fire(item, stub_worker)
    item = db.session.get(ReportSchedule, item.id)
    assert "deactivated" in item.last_error and item.last_report_id is None


def test_the_console_creates_previews_runs_and_deletes_a_schedule(app, stub_worker, client, smtp):
    make_admin()
    mine, theirs = make_org("Mine"), make_org("Theirs")
    add_certificates(mine, 2, days=3)
    make_admin("rao", Role.RAO, org=mine)
    make_admin("other", Role.RAO, org=theirs)
    login(client, "rao", PASSWORD)
    page = client.get("/admin/report_schedules/new/")
    assert page.status_code == 200 and b"Next 5 runs" in page.data
    preview = client.get(
        "/admin/report_schedules/schedule-preview/",
        query_string={
            "schedule_kind": "monthly",
            "schedule_day_of_month": "31",
            "schedule_time": "08:00",
            "schedule_timezone": "UTC",
        },
    ).get_json()
    assert preview["describe"] == "Monthly on day 31 at 08:00 (UTC)" and len(preview["runs"]) == 5
    token = csrf_token(client, "/admin/report_schedules/new/")
    form = {
        "csrf_token": token,
        "name": "Expiring soon",
        "report_type": "ssl_certificates",
        "fmt": "csv",
        "date_field": "expires",
        "period": "next",
        "period_days": "30",
        "target": f"o:{theirs.id}",  # not theirs to name
        "recipients": "boss@example.com",
        "schedule_kind": "weekly",
        "schedule_weekday": "0",
        "schedule_time": "07:00",
        "schedule_timezone": "Europe/Berlin",
    }
    refused = client.post("/admin/report_schedules/new/", data=form)
    assert refused.status_code == 200 and b"No such organization." in refused.data
    form["target"] = f"o:{mine.id}"
    saved = client.post("/admin/report_schedules/new/", data=form, follow_redirects=True)
    assert b"Saved the scheduled report" in saved.data
    assert b"Weekly on Monday at 07:00 (Europe/Berlin)" in saved.data
    item = db.session.execute(select(ReportSchedule)).scalar_one()
    assert item.filters == {"date_field": "expires", "organization_id": mine.id}
    edit = client.get(f"/admin/report_schedules/edit/?id={item.id}")
    assert b'value="Expiring soon"' in edit.data
    ran = client.post(
        "/admin/report_schedules/run/",
        data={"csrf_token": token, "id": item.id},
        follow_redirects=True,
    )
    assert b"started" in ran.data
    drain(stub_worker)
    [message] = smtp.to("boss@example.com")
    assert attachment(message)[0].endswith(".csv")
    # Another RAO neither sees nor reaches it.
    outsider = app.test_client()
    login(outsider, "other", PASSWORD)
    assert b"Expiring soon" not in outsider.get("/admin/report_schedules/").data
    assert outsider.get(f"/admin/report_schedules/edit/?id={item.id}").status_code == 404
    gone = client.post(
        "/admin/report_schedules/delete/",
        data={"csrf_token": token, "id": item.id},
        follow_redirects=True,
    )
    assert b"Deleted the scheduled report" in gone.data
    assert db.session.execute(select(func.count(ReportSchedule.id))).scalar() == 0
