"""Dashboard numbers: certificates and requests the admin may see, by status, type, key
and expiry window (every query goes through the admin's scope)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, or_, select, union_all
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateCount,
    CertificateExpiryCount,
    CertificateMonthCount,
    CertificateProfile,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    Delegation,
    DelegationStatus,
    Department,
    DiscoveryTask,
    Domain,
    Job,
    JobStatus,
    Organization,
    RequestStatus,
    ScanRun,
)
from app.models.types import utcnow
from app.reports.charts import (
    EXPIRY_WINDOWS,
    PENDING_AGES,
    TIMELINE_WEEKS,
    month_starts,
    next_month,
    week_windows,
)
from app.services.accounts import admins
from app.services.certificates import inventory, risks
from app.services.discovery.tasks import visible_tasks_clause
from app.services.imports import findings
from app.services.scope import department_clause, organization_clause, scope_of
from app.services.structure import domains


@dataclass
class Overview:
    by_status: dict[str, int] = field(default_factory=dict)
    by_type: dict[CertType, int] = field(default_factory=dict)
    by_key: dict[str, int] = field(default_factory=dict)
    by_issuer: dict[str, int] = field(default_factory=dict)  # issuer CN ("" unknown)
    by_signature: dict[str, int] = field(default_factory=dict)
    by_origin: dict[str, int] = field(default_factory=dict)  # Issued | Discovered | Imported
    # live certificates expiring in each of charts.EXPIRY_WINDOWS (0-7, 8-30, 31-60, 61-90 days)
    expiring: list[int] = field(default_factory=lambda: [0] * len(EXPIRY_WINDOWS))
    # live certificates expiring in each week of the next twelve months (charts.week_windows)
    expiring_weeks: list[int] = field(default_factory=lambda: [0] * TIMELINE_WEEKS)
    awaiting_approval: int = 0
    total: int = 0


def _visible(actor: Admin) -> ColumnElement[bool]:
    """Placed certificates of the types the admin holds (unassigned discoveries excepted)."""
    scope = scope_of(actor)
    placed = Certificate.organization_id.is_not(None)
    parts = []
    for cert_type in CertType:
        clause = inventory.visible_clause(scope, cert_type)
        typed = Certificate.cert_type == cert_type
        parts.append(typed if clause is None else typed & clause)
    return placed & or_(*parts)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def expiry_window_clause(start: int, end: int, *, now: datetime) -> ColumnElement[bool]:
    """Certificates expiring on the UTC days today+start .. today+end-1, and not before
    now (the dashboard's windows and timeline weeks, and the lists they open)."""
    today = now.date()
    return (Certificate.not_after >= max(now, _day_start(today + timedelta(days=start)))) & (
        Certificate.not_after < _day_start(today + timedelta(days=end))
    )


def _visible_on(table: Any, actor: Admin) -> ColumnElement[bool]:
    """_visible over a summary table's organization, department and type columns."""
    scope = scope_of(actor)
    parts = []
    unscoped = []  # types held everywhere: one IN, not an OR of equalities per row
    for cert_type in CertType:
        clause = scope.type_filter(table.organization_id, table.department_id, cert_type)
        if clause is None:
            unscoped.append(cert_type.value)
        else:
            parts.append((table.cert_type == cert_type.value) & clause)
    if unscoped:
        parts.append(table.cert_type.in_(unscoped))
    return table.organization_id.is_not(None) & or_(*parts)


def _label(value: Any) -> str:
    return value.value if hasattr(value, "value") else str(value or "")


def certificate_overview(*, actor: Admin, now: datetime | None = None) -> Overview:
    """The dashboard's certificate numbers from the summary tables (app.services.reports
    .counts): sums of a few thousand group rows instead of a scan of the certificates.
    Expiry counts sum whole UTC days; today's part (expired since midnight, or expiring
    later today) is counted in the certificates, an indexed range of one day."""
    now = now or utcnow()
    today = now.date()
    result = Overview()
    counts = CertificateCount
    visible = _visible_on(counts, actor)
    names = ("status", "cert_type", "key_type", "issuer_cn", "signature_algorithm", "origin")
    groups: dict[str, dict[str, int]] = {name: {} for name in names}
    # One query: the groups of every column at once (a few hundred rows), summed here.
    columns = [getattr(counts, name) for name in names]
    for *values, count in db.session.execute(
        select(*columns, func.sum(counts.n)).where(visible).group_by(*columns)
    ):
        if not count:
            continue
        for name, value in zip(names, values, strict=True):
            key = _label(value)
            groups[name][key] = groups[name].get(key, 0) + int(count)
    # Issued past its notAfter reads Expired: whole days before today from the expiry
    # summary, since midnight from the certificates.
    expiry = CertificateExpiryCount
    expiry_visible = _visible_on(expiry, actor)
    issued = expiry.status == CertStatus.ISSUED.value
    lapsed = int(
        db.session.execute(
            select(func.coalesce(func.sum(expiry.n), 0)).where(
                expiry_visible, issued, expiry.expiry_day < today
            )
        ).scalar_one()
    )
    # Today's certificates (an indexed range of one day of not_after, read first: a
    # materialized CTE, so the planner does not start from an organization's index):
    # Issued ones expired since midnight, and live ones expiring later today.
    day = (
        select(
            Certificate.organization_id,
            Certificate.department_id,
            Certificate.cert_type,
            Certificate.status,
            Certificate.not_after,
        )
        .where(
            Certificate.not_after >= _day_start(today),
            Certificate.not_after < _day_start(today + timedelta(days=1)),
        )
        .cte("today_certificates")
        .prefix_with("MATERIALIZED")
    )
    expired_today, expiring_today = db.session.execute(
        select(
            func.coalesce(
                func.sum(
                    case(
                        ((day.c.status == CertStatus.ISSUED.value) & (day.c.not_after < now), 1),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(
                func.sum(
                    case(
                        (
                            day.c.status.in_([CertStatus.ISSUED.value, CertStatus.EXTERNAL.value])
                            & (day.c.not_after >= now),
                            1,
                        ),
                        else_=0,
                    )
                ),
                0,
            ),
        ).where(_visible_on(day.c, actor))
    ).one()
    lapsed += int(expired_today)
    by_status = groups["status"]
    if lapsed:
        by_status["Issued"] = by_status.get("Issued", 0) - lapsed
        by_status["Expired"] = by_status.get("Expired", 0) + lapsed
    result.by_status = {k: v for k, v in by_status.items() if v}
    result.total = sum(result.by_status.values())
    result.by_type = {CertType(k): v for k, v in groups["cert_type"].items() if k}
    result.by_key = {(k or "unknown"): v for k, v in groups["key_type"].items()}
    result.by_issuer = groups["issuer_cn"]
    result.by_signature = groups["signature_algorithm"]
    result.by_origin = groups["origin"]
    # Live certificates by expiry day for the next year: whole days after today from the
    # summary, today (not before now) from the certificates.
    weeks = week_windows()
    horizon = today + timedelta(days=weeks[-1][1])
    by_day: dict[int, int] = {}
    for day, count in db.session.execute(
        select(expiry.expiry_day, func.sum(expiry.n))
        .where(expiry_visible, expiry.expiry_day > today, expiry.expiry_day < horizon)
        .group_by(expiry.expiry_day)
    ):
        offset = ((day if isinstance(day, date) else date.fromisoformat(str(day))) - today).days
        by_day[offset] = by_day.get(offset, 0) + int(count)
    by_day[0] = int(expiring_today)

    def days(start: int, end: int) -> int:
        return sum(by_day.get(d, 0) for d in range(start, end))

    result.expiring = [days(start, end) for start, end in EXPIRY_WINDOWS]
    result.expiring_weeks = [days(start, end) for start, end in weeks]
    pending = (
        select(func.count())
        .select_from(CertificateRequest)
        .where(CertificateRequest.status == RequestStatus.REQUESTED, _visible_requests(actor))
    )
    result.awaiting_approval = int(db.session.execute(pending).scalar_one())
    return result


def direct_overview(*, actor: Admin, now: datetime | None = None) -> Overview:
    """certificate_overview computed from the certificates themselves (a scan of every
    visible row): the reference the summary tables are tested and checked against."""
    now = now or utcnow()
    visible = _visible(actor)
    result = Overview()
    expired_but_issued = (Certificate.status == CertStatus.ISSUED.value) & (
        Certificate.not_after < now
    )
    display = case((expired_but_issued, "Expired"), else_=Certificate.status)
    for status, count in db.session.execute(
        select(display, func.count()).where(visible).group_by(display)
    ):
        label = status.value if hasattr(status, "value") else str(status)
        result.by_status[label] = result.by_status.get(label, 0) + int(count)
    result.total = sum(result.by_status.values())
    for cert_type, count in db.session.execute(
        select(Certificate.cert_type, func.count()).where(visible).group_by(Certificate.cert_type)
    ):
        if cert_type is not None:
            result.by_type[CertType(cert_type)] = int(count)
    # Key types in the one vocabulary (app.pki.algorithms): issued, discovered and imported
    # EC-P256 keys are one slice.
    for label, count in db.session.execute(
        select(Certificate.key_type, func.count()).where(visible).group_by(Certificate.key_type)
    ):
        name = label or "unknown"
        result.by_key[name] = result.by_key.get(name, 0) + int(count)
    for column, target in (
        (Certificate.issuer_cn, result.by_issuer),
        (Certificate.signature_algorithm, result.by_signature),
        (Certificate.origin, result.by_origin),
    ):
        for value, count in db.session.execute(
            select(column, func.count()).where(visible).group_by(column)
        ):
            key = value.value if hasattr(value, "value") else str(value or "")
            target[key] = target.get(key, 0) + int(count)
    live = visible & Certificate.status.in_([CertStatus.ISSUED.value, CertStatus.EXTERNAL.value])
    for index, (start, end) in enumerate(EXPIRY_WINDOWS):
        result.expiring[index] = int(
            db.session.execute(
                select(func.count())
                .select_from(Certificate)
                .where(live & expiry_window_clause(start, end, now=now))
            ).scalar_one()
        )
    for index, (start, end) in enumerate(week_windows()):
        result.expiring_weeks[index] = int(
            db.session.execute(
                select(func.count())
                .select_from(Certificate)
                .where(live & expiry_window_clause(start, end, now=now))
            ).scalar_one()
        )
    return result


def _visible_requests(actor: Admin) -> ColumnElement[bool]:
    """Requests of the types the admin holds where they were made (as the lists show)."""
    scope = scope_of(actor)
    parts = []
    for cert_type in CertType:
        clause = scope.type_filter(
            CertificateRequest.organization_id, CertificateRequest.department_id, cert_type
        )
        typed = CertificateRequest.cert_type == cert_type
        parts.append(typed if clause is None else typed & clause)
    return or_(*parts)


def _month_index(column: Any, starts: list[datetime]) -> Any:
    """A CASE naming the month (index into ``starts``, then the month after the last)
    a timestamp falls in; one grouped query, whatever the database."""
    return case(
        *[(column < end, i) for i, end in enumerate(starts[1:])],
        else_=len(starts) - 1,
    )


@dataclass(frozen=True)
class MonthCounts:
    month: date  # the month's first day
    requested: int  # requests made that month (of every status)
    issued: int  # certificates issued by Certwright that month (origin Issued, added then)


def _month_starts(today: date | None) -> tuple[list[date], list[datetime]]:
    """The last twelve UTC months' first days, and their starts as times (plus the start
    of the month after the last)."""
    firsts = month_starts(today or utcnow().date())
    starts = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in firsts]
    end = next_month(firsts[-1])
    starts.append(datetime(end.year, end.month, end.day, tzinfo=UTC))
    return firsts, starts


def _requested_by_month(actor: Admin, starts: list[datetime]) -> list[int]:
    """Requests made in each month (an indexed range of created_at)."""
    requested = [0] * (len(starts) - 1)
    month = _month_index(CertificateRequest.created_at, starts)
    for index, count in db.session.execute(
        select(month, func.count())
        .where(
            _visible_requests(actor),
            CertificateRequest.created_at >= starts[0],
            CertificateRequest.created_at < starts[-1],
        )
        .group_by(month)
    ):
        requested[int(index)] = int(count)
    return requested


def requests_vs_issued(*, actor: Admin, today: date | None = None) -> list[MonthCounts]:
    """Requests made and certificates issued in each of the last twelve months (UTC),
    scoped like the request and certificate lists. The issued side sums the month summary
    (certificate_month_counts, kept by triggers: app.services.reports.counts), not the
    certificates; direct_requests_vs_issued counts the same in the certificates."""
    firsts, starts = _month_starts(today)
    requested = _requested_by_month(actor, starts)
    months = CertificateMonthCount
    position = {d: i for i, d in enumerate(firsts)}
    issued = [0] * len(firsts)
    for month, count in db.session.execute(
        select(months.month, func.sum(months.n))
        .where(
            _visible_on(months, actor),
            months.origin == CertOrigin.ISSUED.value,
            months.month >= firsts[0],
            months.month <= firsts[-1],
        )
        .group_by(months.month)
    ):
        day = month if isinstance(month, date) else date.fromisoformat(str(month))
        if day in position and count:
            issued[position[day]] += int(count)
    return [MonthCounts(d, requested[i], issued[i]) for i, d in enumerate(firsts)]


def direct_requests_vs_issued(*, actor: Admin, today: date | None = None) -> list[MonthCounts]:
    """requests_vs_issued counted in the certificates (a scan of the visible ones): the
    reference the month summary is tested and checked against."""
    firsts, starts = _month_starts(today)
    requested = _requested_by_month(actor, starts)
    issued = [0] * len(firsts)
    month = _month_index(Certificate.created_at, starts)
    for index, count in db.session.execute(
        select(month, func.count())
        .where(
            _visible(actor),
            Certificate.origin == CertOrigin.ISSUED,
            Certificate.created_at >= starts[0],
            Certificate.created_at < starts[-1],
        )
        .group_by(month)
    ):
        issued[int(index)] = int(count)
    return [MonthCounts(d, requested[i], issued[i]) for i, d in enumerate(firsts)]


def pending_approvals(*, actor: Admin) -> dict[CertType, list[int]]:
    """Requests awaiting approval the admin may see, by type and by how long they have
    waited (charts.PENDING_AGES)."""
    now = utcnow()
    age = case(
        *[
            (CertificateRequest.created_at > now - timedelta(days=end), i)
            for i, (_, end) in enumerate(PENDING_AGES)
            if end is not None
        ],
        else_=len(PENDING_AGES) - 1,
    )
    result = {t: [0] * len(PENDING_AGES) for t in CertType}
    for cert_type, index, count in db.session.execute(
        select(CertificateRequest.cert_type, age, func.count())
        .where(CertificateRequest.status == RequestStatus.REQUESTED, _visible_requests(actor))
        .group_by(CertificateRequest.cert_type, age)
    ):
        result[CertType(cert_type)][int(index)] = int(count)
    return result


def pending_age_clause(column: Any, start: int, end: int | None, *, now: datetime) -> Any:
    """Rows created ``start`` to ``end`` days before now (the pending-age buckets)."""
    clause = column <= now - timedelta(days=start)
    if end is not None:
        clause = clause & (column > now - timedelta(days=end))
    return clause


@dataclass(frozen=True)
class RunTrend:
    run_id: int
    task_id: int
    task_name: str
    finished_at: datetime
    tls_endpoints: int
    certificates: int
    flagged: int | None  # endpoints with a health flag (None: run predates the count)


def discovery_trend(*, actor: Admin, limit: int = 30) -> list[RunTrend]:
    """The last ``limit`` finished discovery runs of the tasks the admin may see (a DRAO:
    none), oldest first, with their endpoint, certificate and health-flag counts."""
    query = (
        select(ScanRun, DiscoveryTask.name)
        .join(DiscoveryTask, DiscoveryTask.id == ScanRun.task_id)
        .where(ScanRun.finished_at.is_not(None))
        .order_by(ScanRun.finished_at.desc(), ScanRun.id.desc())
        .limit(limit)
    )
    clause = visible_tasks_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    trend = []
    for run, name in db.session.execute(query):
        flags = (run.counts or {}).get("flags")
        flagged = flags.get("any") if isinstance(flags, dict) else None
        trend.append(
            RunTrend(
                run_id=run.id,
                task_id=run.task_id,
                task_name=name,
                finished_at=run.finished_at,
                tls_endpoints=int(run.tls_endpoints or 0),
                certificates=int(run.certificates or 0),
                flagged=int(flagged) if isinstance(flagged, int) else None,
            )
        )
    return trend[::-1]


def top_risks(*, actor: Admin) -> dict[str, dict[CertType, int]]:
    """Certificates the admin may see carrying each risk (risks.RISKS), by type."""
    now = utcnow()
    visible = _visible(actor)
    result: dict[str, dict[CertType, int]] = {
        code: dict.fromkeys(CertType, 0) for code in risks.RISKS
    }
    # One statement (a round trip each cost more than the counts on a loaded machine).
    parts = [
        select(literal(code).label("code"), Certificate.cert_type, func.count().label("n"))
        .where(visible, risks.risk_clause(code, now=now))
        .group_by(Certificate.cert_type)
        for code in risks.RISKS
    ]
    for code, cert_type, count in db.session.execute(union_all(*parts)):
        if cert_type is not None:
            result[code][CertType(cert_type)] = int(count)
    return result


@dataclass(frozen=True)
class FirstSteps:
    """How far the admin's part of the account is from a first certificate: each step of
    the welcome is done when the data it creates exists (what the admin may see)."""

    org_without_location: tuple[int, str] | None  # an organization missing city and state
    has_org: bool
    has_domain: bool
    has_delegation: bool
    has_root_ca: bool
    has_issuing_ca: bool
    has_profile: bool
    has_request: bool
    has_certificate: bool

    @property
    def done(self) -> bool:
        return self.has_certificate and self.org_without_location is None


def first_steps(*, actor: Admin) -> FirstSteps:
    """The welcome checklist: organization address, domain, delegation, private CA,
    profile, request, certificate (SSL, the first certificate most people want)."""
    scope = scope_of(actor)
    orgs = select(Organization.id, Organization.name).order_by(Organization.id)
    clause = organization_clause(scope)
    if clause is not None:
        orgs = orgs.where(clause)
    bare = orgs.where(
        func.coalesce(Organization.city, "") == "", func.coalesce(Organization.state, "") == ""
    )
    delegations = select(Delegation.id).where(
        Delegation.status == DelegationStatus.APPROVED, Delegation.ssl.is_(True)
    )
    visible = None if scope.is_master else domains.delegation_clause(scope)
    if visible is not None:
        delegations = delegations.where(visible)
    domain_query = select(Domain.id)
    domain_clause = domains.visible_domains_clause(scope)
    if domain_clause is not None:
        domain_query = domain_query.where(domain_clause)
    requests = select(CertificateRequest.id).where(CertificateRequest.cert_type == CertType.SSL)
    request_clause = scope.type_filter(
        CertificateRequest.organization_id, CertificateRequest.department_id, CertType.SSL
    )
    if request_clause is not None:
        requests = requests.where(request_clause)
    certificates = select(Certificate.id).where(
        Certificate.cert_type == CertType.SSL,
        Certificate.origin == CertOrigin.ISSUED,
        _visible(actor),
    )
    active_ca = CertificateAuthority.status == CaStatus.ACTIVE
    # One statement for the whole checklist (a round trip each cost more than the lookups
    # on a loaded machine).
    first_bare = bare.limit(1).subquery()
    row = db.session.execute(
        select(
            select(first_bare.c.id).scalar_subquery(),
            select(first_bare.c.name).scalar_subquery(),
            orgs.exists(),
            domain_query.exists(),
            delegations.exists(),
            select(CertificateAuthority.id)
            .where(active_ca, CertificateAuthority.parent_id.is_(None))
            .exists(),
            select(CertificateAuthority.id)
            .where(active_ca, CertificateAuthority.parent_id.is_not(None))
            .exists(),
            select(CertificateProfile.id)
            .where(
                CertificateProfile.cert_type == CertType.SSL, CertificateProfile.active.is_(True)
            )
            .exists(),
            requests.exists(),
            certificates.exists(),
        )
    ).one()
    missing_id, missing_name, *found = row
    return FirstSteps(
        org_without_location=(missing_id, missing_name) if missing_id is not None else None,
        has_org=bool(found[0]),
        has_domain=bool(found[1]),
        has_delegation=bool(found[2]),
        has_root_ca=bool(found[3]),
        has_issuing_ca=bool(found[4]),
        has_profile=bool(found[5]),
        has_request=bool(found[6]),
        has_certificate=bool(found[7]),
    )


def delegation_states(*, actor: Admin) -> dict[str, int]:
    """Domain delegations the admin may see, by status (Requested, Approved, Rejected)."""
    scope = scope_of(actor)
    query = select(Delegation.status, func.count()).group_by(Delegation.status)
    clause = None if scope.is_master else domains.delegation_clause(scope)
    if clause is not None:
        query = query.where(clause)
    counts = {s.value: 0 for s in DelegationStatus}
    for status, count in db.session.execute(query):
        label = status.value if hasattr(status, "value") else str(status)
        counts[label] = int(count)
    return counts


def _count(model: Any, clause: Any) -> Any:
    query = select(func.count()).select_from(model)
    if clause is not None:
        query = query.where(clause)
    return query.scalar_subquery()


def headline_counts(*, actor: Admin) -> dict[str, int]:
    """The dashboard's number cards: what the admin may see of the account."""
    scope = scope_of(actor)
    delegation_clause = None if scope.is_master else domains.delegation_clause(scope)
    pending_clause = Delegation.status == DelegationStatus.REQUESTED
    if delegation_clause is not None:
        pending_clause = pending_clause & delegation_clause
    counted = {
        "Organizations": _count(Organization, organization_clause(scope)),
        "Departments": _count(Department, department_clause(scope)),
        "Domains": _count(Domain, domains.visible_domains_clause(scope)),
        "Delegations awaiting approval": _count(Delegation, pending_clause),
        "Administrators": _count(Admin, admins.visible_admins_clause(scope)),
    }
    # One statement for the cards (a round trip each cost more than the counts on a
    # loaded machine).
    row = db.session.execute(select(*counted.values())).one()
    result = {name: int(value) for name, value in zip(counted, row, strict=True)}
    result["Certificates with weak or shared keys"] = findings.count_with_findings(actor=actor)
    return result


def running_jobs(*, actor: Admin) -> int | None:
    """Jobs pending or running (an MRAO's card; None for everyone else)."""
    if not scope_of(actor).is_master:
        return None
    query = _count(Job, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
    return int(db.session.execute(select(query)).scalar_one())


@dataclass
class Page:
    """Every number the dashboard page shows an admin (what bench/reports.py times)."""

    headline: dict[str, int]
    running: int | None
    steps: FirstSteps
    overview: Overview
    delegations: dict[str, int]
    months: list[MonthCounts]
    pending: dict[CertType, list[int]]
    trend: list[RunTrend]
    risks: dict[str, dict[CertType, int]]


def page(*, actor: Admin) -> Page:
    """The dashboard's data, every panel, scoped to the admin."""
    return Page(
        headline=headline_counts(actor=actor),
        running=running_jobs(actor=actor),
        steps=first_steps(actor=actor),
        overview=certificate_overview(actor=actor),
        delegations=delegation_states(actor=actor),
        months=requests_vs_issued(actor=actor),
        pending=pending_approvals(actor=actor),
        trend=discovery_trend(actor=actor),
        risks=top_risks(actor=actor),
    )
