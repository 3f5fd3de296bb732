"""Generated reports: start (one job per id range), build a chunk, finish, cancel, download
(head, chunks in order, tail), purge expired ones.

A report runs with the scope of the admin who asked for it, read again by every chunk (an
admin whose scope shrank meanwhile gets the smaller report); the system's reports (CLI,
schedules) see everything. Chunk jobs are safe to run twice: a chunk replaces its earlier
copy and is counted once (the report row is locked while it is counted).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import plotly
from flask import current_app
from sqlalchemy import delete, func, select, text, update

from app.extensions import db
from app.models import Admin, Job, NotificationType, Report, ReportChunk
from app.models.types import utcnow
from app.reports import export, summary
from app.reports.export import Format
from app.services import audit
from app.services.errors import Conflict, DomainError
from app.services.notifications import events
from app.services.platform import jobs
from app.services.reports import catalog
from app.services.reports.catalog import Filters
from app.services.scope import SYSTEM, Actor, Scope, scope_of

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
JOB_KIND = "report_chunk"
PURGE_KIND = "report_purge"
ACTIVE = ("pending", "running")
# Called with a report in the transaction that marks it done (scheduled reports mail it:
# app.services.reports.schedules registers itself here).
ON_READY: list[Callable[[Report], None]] = []


@dataclass(frozen=True)
class Download:
    filename: str
    mimetype: str
    chunks: Iterator[bytes]


def keep_days() -> int:
    """Days a generated report is kept (CW_REPORT_KEEP_DAYS)."""
    return int(current_app.config["CW_REPORT_KEEP_DAYS"])


def chunk_size() -> int:
    """Ids per chunk job (CW_REPORT_CHUNK_ROWS)."""
    return int(current_app.config["CW_REPORT_CHUNK_ROWS"])


def _format(value: str) -> Format:
    try:
        return Format(value.lower())
    except ValueError:
        raise DomainError(
            f"No report format {value!r}; choose csv, xml or html.", field="format"
        ) from None


def start_report(
    *,
    actor: Actor,
    report_type: str,
    fmt: str,
    filters: Filters | None = None,
    bom: bool = False,
    chunk_rows: int | None = None,
    report_schedule_id: int | None = None,
    schedule_job_id: int | None = None,
) -> Report:
    """Validate, store the report and create one chunk job per id range (messages after
    commit). With nothing to read the report is done at once (a head and a tail).
    ``report_schedule_id``/``schedule_job_id``: started by that scheduled report's job.

    Raises:
        DomainError: an unknown type or format, or a filter the report or viewer refuses.
    """
    rtype = catalog.report_type(report_type)
    chosen = _format(fmt)
    filters = filters or Filters()
    catalog.check_filters(rtype, actor, filters)
    now = utcnow()
    filters = dataclasses.replace(filters, as_of=filters.as_of or now)
    report = Report(
        report_type=rtype.key,
        format=chosen.value,
        bom=bool(bom and chosen == Format.CSV),
        filters=filters.to_dict(),
        status="pending",
        created_by_id=actor.id,
        as_system=actor is SYSTEM,
        chunks_done=[],
        ranges=[],
        created_at=now,
        expires_at=now + timedelta(days=keep_days()),
        report_schedule_id=report_schedule_id,
        schedule_job_id=schedule_job_id,
    )
    db.session.add(report)
    db.session.flush()
    size = chunk_rows or chunk_size()
    span = select(func.min(rtype.id_column), func.max(rtype.id_column))
    if filters.organization_id is not None and rtype.org_column is not None:
        # Rows outside the organization are filtered out of every chunk anyway: a report
        # of one organization is split over its own ids (an index range), not over the
        # whole table's (a small organization of a large inventory got thousands of
        # chunks that each found nothing).
        span = span.where(rtype.org_column == filters.organization_id)
    low, high = db.session.execute(span).one()
    ranges: list[tuple[int, int]] = []
    if low is not None:
        start = int(low)
        while start <= int(high):
            ranges.append((start, min(int(high), start + size - 1)))
            start += size
    report.chunks_total = len(ranges)
    report.ranges = [[lo, hi] for lo, hi in ranges]
    if ranges:
        jobs.create_jobs(
            kind=JOB_KIND,
            payloads=[
                {"report_id": report.id, "seq": i, "low": lo, "high": hi}
                for i, (lo, hi) in enumerate(ranges)
            ],
        )
    after: dict[str, Any] = {
        "report_type": report.report_type,
        "format": report.format,
        "filters": report.filters,
        "chunks_total": report.chunks_total,
    }
    if report_schedule_id is not None:
        after["report_schedule_id"] = report_schedule_id
    audit.record(
        action="report.run",
        actor=actor,
        object_type="Report",
        object_id=report.id,
        label=f"{rtype.title} ({chosen.value})",
        after=after,
    )
    if not ranges:
        report.status = "done"
        report.finished_at = now
        _ready(report)
    return report


def _scope_for(report: Report) -> Scope:
    if report.as_system:
        return scope_of(SYSTEM)
    admin = db.session.get(Admin, report.created_by_id) if report.created_by_id else None
    if admin is None or not admin.active:
        raise DomainError("The administrator who asked for this report no longer may.")
    return scope_of(admin)


def render_chunk(report: Report, low: int, high: int) -> tuple[bytes, int, summary.Tally]:
    """The rows of one id range rendered in the report's format; their count and the
    counts of the report type's chart columns."""
    rtype = catalog.report_type(report.report_type)
    filters = Filters.from_dict(report.filters)
    scope = _scope_for(report)
    if (
        Format(report.format) == Format.CSV
        and rtype.csv_text is not None
        and db.session.get_bind().dialect.name == "postgresql"
    ):
        return _render_csv_text(report, rtype, rtype.csv_text, scope, filters, low, high)
    query = rtype.rows(scope, filters, low, high)
    # Core execution (no ORM row loading) through a server-side cursor, 2,000 rows a fetch:
    # options on the statement (Connection.execution_options would change the connection
    # itself, and the writes after it would be declared as cursors too).
    result = db.session.connection().execute(
        query.execution_options(stream_results=True, max_row_buffer=2000)
    )
    writer = export.writer_for(Format(report.format), bom=report.bom)
    # Charts are drawn for HTML reports only: counting their columns costs about half as
    # much again as rendering the rows, which CSV and XML (the large, scripted reports) skip.
    charted = Format(report.format) == Format.HTML
    tallier = summary.Tallier(rtype.charts if charted else (), [c.key for c in rtype.columns])
    count = 0

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for row in result:
            count += 1
            shaped = rtype.shape(row) if rtype.shape else tuple(row)
            if charted:
                tallier.feed(shaped)
            yield shaped

    data = b"".join(writer.rows(rtype.columns, rows()))
    return data, count, tallier.tally


def _render_csv_text(
    report: Report,
    rtype: catalog.ReportType,
    csv_text: catalog.CsvText,
    scope: Scope,
    filters: Filters,
    low: int,
    high: int,
) -> tuple[bytes, int, summary.Tally]:
    """render_chunk for CSV on PostgreSQL: the database sends every cell as its CSV text
    (times formatted as the writer formats them, NULL as empty), blocks of BLOCK_ROWS rows
    go to csv.writer.writerows after one search for cells to escape; the same bytes as
    the general path (tests/services/test_reports_postgres.py compares them)."""
    query = rtype.rows(scope, filters, low, high, as_csv_text=True)
    result = db.session.connection().execute(
        query.execution_options(stream_results=True, yield_per=export.BLOCK_ROWS)
    )
    writer = export.CsvWriter(bom=report.bom)
    count = 0

    def blocks() -> Iterator[Any]:
        nonlocal count
        for block in result.partitions():
            count += len(block)
            yield csv_text.shape_block(block)

    data = b"".join(writer.text_rows(blocks(), numeric=csv_text.numeric))
    tallier = summary.Tallier((), [c.key for c in rtype.columns])
    return data, count, tallier.tally


def run_chunk_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    """Build one chunk; the last one marks the report done."""
    payload = job.payload or {}
    return build_chunk(
        report_id=int(payload["report_id"]), seq=int(payload["seq"]), before_write=ctx.hold
    )


def build_chunk(
    *, report_id: int, seq: int, before_write: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Render chunk ``seq`` and store it (replacing an earlier copy, counted once); the
    caller commits. ``before_write`` runs between the (long) read and the writes: a job
    checks there that it still holds its lease."""
    report = db.session.get(Report, report_id)
    if report is None or report.status not in ACTIVE:
        return {"message": f"report #{report_id} is no longer being built"}
    low, high = report.ranges[seq]
    data, count, tally = render_chunk(report, int(low), int(high))
    if before_write is not None:
        before_write()
    chunk = ReportChunk(
        report_id=report_id,
        seq=seq,
        low=int(low),
        high=int(high),
        rows=count,
        data=data,
        summary=tally,
    )
    savepoint = None
    if db.session.get_bind().dialect.name == "postgresql":
        # The chunk's bytes are written before the report row is locked below: that lock
        # is held until the commit, and writing megabytes under it made every worker's
        # chunks take turns (1 -> 2 processes: 1.06x on 1,000,000 certificates). Two
        # copies of this one chunk's job take turns here instead; a report that ends
        # meanwhile gets nothing of it (the savepoint is rolled back).
        db.session.execute(
            text("SELECT pg_advisory_xact_lock(:report, :seq)"), {"report": report_id, "seq": seq}
        )
        savepoint = db.session.begin_nested()
        _replace_chunk(chunk)
    # Write to the report row now: that takes its lock (a row lock on PostgreSQL, the
    # database's write lock on SQLite) before the count below is read, so two chunks
    # finishing at once are counted one after the other.
    claimed = db.session.execute(
        update(Report)
        .where(Report.id == report_id, Report.status.in_(ACTIVE))
        .values(status="running")
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        if savepoint is not None:
            savepoint.rollback()
        return {"message": f"report #{report_id} is no longer being built"}
    if savepoint is not None:
        savepoint.commit()
    else:
        _replace_chunk(chunk)
    report = db.session.execute(
        select(Report).where(Report.id == report_id).execution_options(populate_existing=True)
    ).scalar_one()
    done = list(report.chunks_done or [])
    if seq not in done:
        report.chunks_done = sorted([*done, seq])
        report.row_count += count
        report.size_bytes += len(data)
    if len(report.chunks_done) >= report.chunks_total:
        report.status = "done"
        report.finished_at = utcnow()
        _ready(report)
    return {
        "message": f"report #{report_id}: chunk {seq + 1} of {report.chunks_total}, {count} rows",
        "result_type": "Report",
        "result_id": report_id,
    }


def _replace_chunk(chunk: ReportChunk) -> None:
    """Store a chunk in place of an earlier copy of it (written at once)."""
    db.session.execute(
        delete(ReportChunk).where(
            ReportChunk.report_id == chunk.report_id, ReportChunk.seq == chunk.seq
        )
    )
    db.session.add(chunk)
    db.session.flush()


def _ready(report: Report) -> None:
    """The "report ready" notice (issue 12): to the admin who asked for it (the requester)
    and whoever a rule of that type names, placed where the report was narrowed to. In the
    transaction that marks the report done, so it is sent once."""
    filters = Filters.from_dict(report.filters or {})
    title = catalog.report_type(report.report_type).title
    creator = db.session.get(Admin, report.created_by_id) if report.created_by_id else None
    events.emit(
        events.Event(
            type=NotificationType.REPORT_READY,
            label=f"{title} report #{report.id} ({report.format.upper()}) is ready",
            organization_id=filters.organization_id,
            department_id=filters.department_id,
            facts={
                "Report": title,
                "Format": report.format.upper(),
                "Rows": report.row_count,
                "Size": f"{report.size_bytes} bytes",
                "Kept until": f"{report.expires_at:%Y-%m-%d %H:%M} UTC",
            },
            people={"requester": [creator.email]} if creator is not None and creator.email else {},
            path="/admin/reports/",
        ),
        actor="reports",
    )
    for hook in ON_READY:
        hook(report)


def build_here(*, report_id: int) -> Report:
    """Build the chunks not built yet in this process, one transaction each (the CLI: no
    worker needed). Chunk jobs running elsewhere at the same time are harmless: a chunk is
    stored once, and jobs arriving after the report is done do nothing."""
    while True:
        report = db.session.get(Report, report_id)
        assert report is not None
        missing = [s for s in range(report.chunks_total) if s not in (report.chunks_done or [])]
        if report.status not in ACTIVE or not missing:
            return report
        build_chunk(report_id=report_id, seq=missing[0])
        db.session.commit()


def chunk_failed(job: Job) -> None:
    """A chunk out of attempts fails its report (a report with a hole is no report)."""
    payload = job.payload or {}
    if "report_id" in payload:
        db.session.execute(
            update(Report)
            .where(Report.id == int(payload["report_id"]), Report.status.in_(ACTIVE))
            .values(
                status="failed",
                finished_at=utcnow(),
                message=f"chunk {int(payload['seq']) + 1} failed: {job.message}"[:2000],
            )
        )


def progress(report: Report) -> int:
    if report.status == "done":
        return 100
    if not report.chunks_total:
        return 0
    return len(report.chunks_done or []) * 100 // report.chunks_total


def visible_reports(*, actor: Actor, limit: int = 50) -> list[Report]:
    """The viewer's own reports (an MRAO: everyone's), newest first."""
    query = select(Report).order_by(Report.id.desc()).limit(limit)
    if not scope_of(actor).is_master:
        query = query.where(Report.created_by_id == actor.id)
    return list(db.session.execute(query).scalars())


def get_report(*, actor: Actor, report_id: int) -> Report:
    """Raises:
    NotFound: no such report, or another admin's (unless the viewer is an MRAO)."""
    report = db.session.get(Report, report_id)
    if report is None or not (
        scope_of(actor).is_master
        or (report.created_by_id is not None and report.created_by_id == actor.id)
    ):
        raise audit.not_found(actor=actor, what="report", model=Report, object_id=report_id)
    return report


def cancel_report(*, actor: Actor, report_id: int) -> Report:
    """Stop a report being built; its chunk jobs find it cancelled and do nothing.

    Raises:
        NotFound: not the viewer's report.
        Conflict: it has already ended.
    """
    report = get_report(actor=actor, report_id=report_id)
    before = report.status
    result = db.session.execute(
        update(Report)
        .where(Report.id == report.id, Report.status.in_(ACTIVE))
        .values(status="cancelled", finished_at=utcnow(), message=f"cancelled by {actor.login}")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.refresh(report)
        raise Conflict(f"Report #{report.id} has already ended ({report.status}).")
    audit.record(
        action="report.cancel",
        actor=actor,
        object_type="Report",
        object_id=report.id,
        label=str(report),
        before={"status": before},
        after={"status": "cancelled"},
    )
    db.session.expire(report)
    return report


def filename(report: Report) -> str:
    stamp = report.created_at.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{report.report_type}-{report.id}-{stamp}.{report.format}"


def figures(report: Report) -> list[dict[str, Any]]:
    """The report type's charts over all of a finished report's rows (the chunks' tallies
    summed), as Plotly figures."""
    rtype = catalog.report_type(report.report_type)
    tallies = db.session.execute(
        select(ReportChunk.summary).where(ReportChunk.report_id == report.id)
    ).scalars()
    return summary.figures(rtype.charts, summary.merge(t for t in tallies if t))


def plotly_source() -> str:
    """plotly.min.js from the installed plotly package (what the console serves), to
    inline in an HTML export."""
    return PLOTLY_JS.read_text(encoding="utf-8")


def meta(report: Report, *, with_figures: bool = False) -> export.Meta:
    rtype = catalog.report_type(report.report_type)
    shown = {k: str(v) for k, v in report.filters.items()}
    drawn = figures(report) if with_figures else []
    return export.Meta(rtype.key, rtype.title, report.created_at, shown, drawn)


def download(*, actor: Actor, report_id: int) -> Download:
    """The finished report as a stream: head, chunks in order (one read at a time), tail.
    Audited (``report.download``) in the caller's transaction: commit before streaming.

    Raises:
        NotFound: not the viewer's report.
        Conflict: not finished.
    """
    report = get_report(actor=actor, report_id=report_id)
    if report.status != "done":
        raise Conflict(f"Report #{report.id} is {report.status}, not ready to download.")
    audit.record(
        action="report.download",
        actor=actor,
        object_type="Report",
        object_id=report.id,
        label=str(report),
    )
    return content(report)


def content(report: Report) -> Download:
    """A finished report's file as a stream (no check, no audit: callers do both)."""
    rtype = catalog.report_type(report.report_type)
    html = Format(report.format) == Format.HTML
    writer = export.writer_for(
        Format(report.format), bom=report.bom, plotly_js=plotly_source() if html else ""
    )
    report_id, total, count = report.id, report.chunks_total, report.row_count

    def chunks() -> Iterator[bytes]:
        for seq in range(total):
            data = db.session.execute(
                select(ReportChunk.data).where(
                    ReportChunk.report_id == report_id, ReportChunk.seq == seq
                )
            ).scalar_one()
            yield data

    return Download(
        filename(report),
        Format(report.format).mimetype,
        export.stitch(writer, meta(report, with_figures=html), rtype.columns, chunks(), count),
    )


def purge_expired(*, now: dt.datetime | None = None) -> int:
    """Delete the reports past their keeping time (their chunks go with them)."""
    now = now or utcnow()
    ids = list(db.session.execute(select(Report.id).where(Report.expires_at < now)).scalars())
    if ids:
        db.session.execute(delete(ReportChunk).where(ReportChunk.report_id.in_(ids)))
        db.session.execute(delete(Report).where(Report.id.in_(ids)))
    return len(ids)


def run_purge_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    removed = purge_expired()
    return {"message": f"{removed} expired reports deleted"}
