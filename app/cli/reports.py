"""Command line for reports: report run TYPE --format csv|xml|html [filters] --out FILE,
report types, report download ID, report schedule list|create|delete, report counts (the
dashboard's summary tables: check, fold, rebuild)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.context import operator, place
from app.cli.core import commit_or_fail, emit_json, fail, json_option
from app.extensions import db
from app.models import Admin, CertificateProfile, Report
from app.services import audit
from app.services.errors import DomainError, ValidationFailed
from app.services.reports import account_structure, catalog, counts, generation, schedules
from app.services.reports.catalog import Filters

report_cli = AppGroup("report", help="Generate reports (docs/reports.md).")
STRUCTURE = "account_structure"


def _day(value: str | None, option: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} takes a date as YYYY-MM-DD, not {value!r}")
    return None


def _profile(name: str | None) -> int | None:
    if not name:
        return None
    found = db.session.execute(
        select(CertificateProfile.id).where(CertificateProfile.name == name)
    ).scalar_one_or_none()
    if found is None:
        fail(f"no certificate profile named '{name}'")
    return found


def filter_options(*, fixed: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The report filters `report run` and `report schedule create` share; the command gets
    them as one ``filters`` (``fixed``: a schedule's dates are fixed ones, beside its
    --next-days/--last-days)."""
    first = "fixed first day" if fixed else "first day"
    last = "fixed last day, included" if fixed else "last day, included (YYYY-MM-DD, UTC)"
    options = [
        click.option("--from", "date_from", default=None, help=f"{first} (YYYY-MM-DD, UTC)"),
        click.option("--to", "date_to", default=None, help=last),
        click.option("--date-field", default="", help="which date the days apply to (see `types`)"),
        click.option("--org", "org_name", default=None, help="only this organization"),
        click.option("--dept", "dept_name", default=None, help="only this department of --org"),
        click.option("--status", default="", help="only rows in this status (see `types`)"),
        click.option(
            "--profile", "profile_name", default=None, help="only this certificate profile"
        ),
        click.option(
            "--issuer", default="", help="only certificates whose issuer CN contains this"
        ),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in _FILTER_PARAMETERS}
            return command(*args, filters=_filters(**given), **kwargs)

        for option in reversed(options):
            run = option(run)
        return run

    return decorate


_FILTER_PARAMETERS = (
    "date_from", "date_to", "date_field", "org_name", "dept_name", "status", "profile_name",
    "issuer",
)  # fmt: skip


def _filters(
    *,
    date_from: str | None,
    date_to: str | None,
    date_field: str,
    org_name: str | None,
    dept_name: str | None,
    status: str,
    profile_name: str | None,
    issuer: str,
) -> Filters:
    if dept_name and not org_name:
        fail("--dept needs --org")
    org_id, dept_id = place(org_name, dept_name) if org_name else (None, None)
    return Filters(
        date_from=_day(date_from, "--from"),
        date_to=_day(date_to, "--to"),
        date_field=date_field,
        organization_id=org_id,
        department_id=dept_id,
        status=status,
        profile_id=_profile(profile_name),
        issuer=issuer,
    )


@report_cli.command("types")
def report_types() -> None:
    """List the report types, their date fields and statuses."""
    for rtype in catalog.TYPES.values():
        click.echo(f"{rtype.key:28} {rtype.title}")
        click.echo(f"{'':28} dates: {', '.join(rtype.date_fields)}")
        if rtype.statuses:
            click.echo(f"{'':28} statuses: {', '.join(rtype.statuses)}")
    click.echo(f"{STRUCTURE:28} Account Structure (XML only)")


@report_cli.command("run")
@click.argument("report_type")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xml", "html"]), default="csv", show_default=True
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="the file to write ('-' for standard output)",
)
@click.option(
    "--background",
    is_flag=True,
    help="leave the chunks to the workers and print the report's id "
    "(then `report download ID --out FILE`)",
)
@filter_options(fixed=False)
@click.option("--bom", is_flag=True, help="CSV: start with a UTF-8 byte order mark (Excel)")
@click.option(
    "--as", "as_login", default=None, help="act as this administrator (default: the first MRAO)"
)
@json_option
def report_run(
    report_type: str,
    fmt: str,
    out: Path | None,
    background: bool,
    filters: Filters,
    bom: bool,
    as_login: str | None,
    as_json: bool,
) -> None:
    """Generate a report in the foreground and write it to --out.

    Runs as the administrator given by --as (their scope: an RAO's report holds only their
    organizations), builds the same chunks a worker would (the report also shows in the
    console's list), and writes head, chunks and tail in order without holding the report
    in memory. Exit status 0 when the file is written.
    """
    if out is None and not background:
        fail("name the file to write with --out (or pass --background)")
    if as_json and str(out) == "-":
        fail("--json prints a summary on standard output: write the report to a file")
    admin = operator(as_login)
    if report_type == STRUCTURE:
        if out is None:
            fail("the Account Structure report is read at once: --out FILE")
        assert out is not None
        if fmt != "xml":
            fail("the Account Structure report is XML only: --format xml")
        with audit.source(label="cli"):
            chunks = account_structure.account_structure_xml(actor=admin)
            db.session.commit()
        size = _write(out, chunks)
        _done(as_json, {"report_type": STRUCTURE, "format": "xml", "bytes": size, "out": str(out)})
        return
    with audit.source(label="cli"):
        started = commit_or_fail(
            lambda: generation.start_report(
                actor=admin, report_type=report_type, fmt=fmt, filters=filters, bom=bom
            )
        )
        assert isinstance(started, Report)
        if background:
            click.echo(
                emit_json_text({"id": started.id, "chunks": started.chunks_total})
                if as_json
                else f"report #{started.id} started: {started.chunks_total} chunks for the "
                "workers; `flask --app wsgi report download "
                f"{started.id} --out FILE` once it is done"
            )
            return
        assert out is not None
        report = generation.build_here(report_id=started.id)
        if report.status != "done":
            fail(f"report #{report.id} ended {report.status}: {report.message}")
        download = generation.download(actor=admin, report_id=report.id)
        db.session.commit()
    size = _write(out, download.chunks)
    report = db.session.get(Report, started.id)
    assert report is not None
    _done(
        as_json,
        {
            "id": report.id,
            "report_type": report.report_type,
            "format": report.format,
            "rows": report.row_count,
            "chunks": report.chunks_total,
            "bytes": size,
            "out": str(out),
        },
    )


def emit_json_text(value: dict[str, object]) -> str:
    return json.dumps(value, indent=2)


@report_cli.command("download")
@click.argument("report_id", type=int)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="the file to write ('-' for standard output)",
)
@click.option("--as", "as_login", default=None, help="act as this administrator")
def report_download(report_id: int, out: Path, as_login: str | None) -> None:
    """Write a finished report (one started with --background or in the console)."""
    admin = operator(as_login)
    try:
        with audit.source(label="cli"):
            download = generation.download(actor=admin, report_id=report_id)
            db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        fail(exc.message)
    size = _write(out, download.chunks)
    if str(out) != "-":
        click.echo(f"report #{report_id}: {size} bytes -> {out}")


def _write(out: Path, chunks: Iterable[bytes]) -> int:
    size = 0
    stream = click.open_file(str(out), "wb")
    with stream:
        for block in chunks:
            stream.write(block)
            size += len(block)
    return size


def _done(as_json: bool, summary: dict[str, object]) -> None:
    if as_json:
        emit_json(summary)
    elif summary["out"] != "-":
        rows = f"{summary['rows']} rows, " if "rows" in summary else ""
        click.echo(f"{summary['report_type']}: {rows}{summary['bytes']} bytes -> {summary['out']}")


@report_cli.command("counts")
@click.option("--fold", "do_fold", is_flag=True, help="fold the rows (the 10-minute job)")
@click.option("--rebuild", is_flag=True, help="recompute them from the certificates")
def report_counts(do_fold: bool, rebuild: bool) -> None:
    """Check the dashboard's summary tables against the certificates; --fold or
    --rebuild first (each safe to run twice; they change row counts, never sums)."""
    if do_fold and rebuild:
        fail("choose one of --fold and --rebuild")
    if do_fold:
        click.echo(f"folded: {commit_or_fail(counts.fold)}")
    elif rebuild:
        click.echo(f"rebuilt: {commit_or_fail(counts.rebuild)}")
    found = counts.differences()
    db.session.rollback()
    if found:
        for line in found[:50]:
            click.echo(line, err=True)
        fail(f"{len(found)} groups differ from the certificates: run --rebuild")
    click.echo("the dashboard's summary tables agree with the certificates")


@report_cli.group("schedule")
def schedule_cli() -> None:
    """Scheduled reports: list, create, delete (docs/reports.md, Scheduled reports)."""


def _schedule_row(item: Any) -> dict[str, object]:
    from app import recurrence

    described = recurrence.parse_schedule(item.schedule or {"kind": "manual"}).describe()
    upcoming = schedules.next_run_at(item)
    return {
        "id": item.id,
        "name": item.name,
        "report_type": item.report_type,
        "format": item.format,
        "schedule": described,
        "next_run": upcoming.isoformat() if upcoming else None,
        "recipients": item.recipients,
        "owner": owner.login if (owner := db.session.get(Admin, item.owner_id or 0)) else None,
        "filters": item.filters,
        "period": item.period,
        "period_days": item.period_days,
        "last_error": item.last_error or "",
    }


@schedule_cli.command("list")
@click.option("--as", "as_login", default=None, help="act as this administrator")
@json_option
def schedule_list(as_login: str | None, as_json: bool) -> None:
    """The schedules you may see (your own; an MRAO: everyone's)."""
    admin = operator(as_login)
    rows = [_schedule_row(item) for item in schedules.visible_schedules(actor=admin)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no scheduled reports")
    for row in rows:
        click.echo(
            f"#{row['id']:<5} {row['name']}: {row['report_type']} as {row['format']}, "
            f"{row['schedule']}, next {row['next_run'] or '-'}, to {row['recipients']} "
            f"(owner {row['owner']})"
        )
        if row["last_error"]:
            click.echo(f"       last run refused: {row['last_error']}")


@schedule_cli.command("create")
@click.argument("name")
@click.argument("report_type")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xml", "html"]), default="csv", show_default=True
)
@click.option(
    "--every",
    "kind",
    required=True,
    type=click.Choice(
        ["once", "daily", "weekly", "monthly", "quarterly", "semiannually", "annually"]
    ),
    help="how often",
)
@click.option("--time", "at_time", default="08:00", show_default=True, help="local HH:MM")
@click.option("--at", "once_at", default=None, help="--every once: local YYYY-MM-DDTHH:MM")
@click.option("--weekday", default=None, help="--every weekly: monday ... sunday (or 0-6)")
@click.option("--day", "day_of_month", type=int, default=None, help="day of the month")
@click.option("--month", type=int, default=None, help="month (annually, quarterly, ...)")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone")
@click.option(
    "--to-addresses",
    "recipients",
    required=True,
    help="recipients, separated by commas",
)
@click.option("--next-days", type=int, default=None, help="dates: the N days after each run")
@click.option("--last-days", type=int, default=None, help="dates: the N days before each run")
@filter_options(fixed=True)
@click.option("--bom", is_flag=True, help="CSV: start with a UTF-8 byte order mark (Excel)")
@click.option("--as", "as_login", default=None, help="the owner (default: the first MRAO)")
@json_option
def schedule_create(
    name: str,
    report_type: str,
    fmt: str,
    kind: str,
    at_time: str,
    once_at: str | None,
    weekday: str | None,
    day_of_month: int | None,
    month: int | None,
    timezone: str,
    recipients: str,
    next_days: int | None,
    last_days: int | None,
    filters: Filters,
    bom: bool,
    as_login: str | None,
    as_json: bool,
) -> None:
    """Schedule a report, e.g. the certificates expiring in the next 30 days, weekly:

    report schedule create "Expiring" ssl_certificates --every weekly --weekday monday
    --time 07:30 --timezone Europe/Berlin --next-days 30 --to-addresses ops@example.com

    The schedule belongs to --as (its reports run with that administrator's scope).
    Audited as report_schedule.create.
    """
    admin = operator(as_login)
    if next_days is not None and last_days is not None:
        fail("choose one of --next-days and --last-days")
    spec: dict[str, object] = {"kind": kind, "timezone": timezone, "time": at_time}
    if once_at:
        spec["at"] = once_at
    if weekday is not None:
        spec["weekday"] = weekday
    if day_of_month is not None:
        spec["day_of_month"] = day_of_month
    if month is not None:
        spec["month"] = month
    data = schedules.ScheduleData(
        name=name,
        report_type=report_type,
        fmt=fmt,
        filters=filters,
        schedule=spec,
        recipients=recipients,
        bom=bom,
        period="next" if next_days is not None else ("last" if last_days is not None else ""),
        period_days=next_days if next_days is not None else last_days,
    )
    try:
        with audit.source(label="cli"):
            item = schedules.create_schedule(actor=admin, data=data)
            db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        for field, messages in exc.errors.items():
            for message in messages:
                click.secho(f"error: {field}: {message}", fg="red", err=True)
        fail("the schedule was not saved")
        return
    except DomainError as exc:
        db.session.rollback()
        fail(exc.message)
        return
    row = _schedule_row(item)
    if as_json:
        emit_json(row)
    else:
        click.echo(
            f"report schedule #{item.id} '{item.name}': {row['schedule']}, "
            f"next run {row['next_run'] or '-'}"
        )


@schedule_cli.command("delete")
@click.argument("schedule_id", type=int)
@click.option("--as", "as_login", default=None, help="act as this administrator")
def schedule_delete(schedule_id: int, as_login: str | None) -> None:
    """Delete a schedule (links it already mailed stop working). Audited."""
    admin = operator(as_login)
    with audit.source(label="cli"):
        commit_or_fail(lambda: schedules.delete_schedule(actor=admin, schedule_id=schedule_id))
    click.echo(f"report schedule #{schedule_id} deleted")


COMMANDS = (report_cli,)
