"""The report types: their columns, filters and scoped queries (rows of one id range, in id
order). Every query goes through the viewer's scope clause; filters only narrow it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Select, Text, and_, case, cast, func, literal, select, true, type_coerce
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    AdminScope,
    Certificate,
    CertificateProfile,
    CertStatus,
    CertType,
    Delegation,
    DelegationStatus,
    Department,
    DiscoveryTask,
    Domain,
    Endpoint,
    Organization,
    RunStatus,
    ScanRun,
)
from app.reports.export import Column
from app.reports.summary import ChartSpec
from app.services import audit
from app.services.accounts.admins import visible_admins_clause
from app.services.certificates import inventory
from app.services.discovery.endpoints import visible_endpoints_clause
from app.services.discovery.tasks import visible_tasks_clause
from app.services.errors import DomainError
from app.services.scope import Actor, Scope, scope_of
from app.services.structure.domains import delegation_clause, visible_domains_clause

CERT_STATUSES = tuple(s.value for s in CertStatus)


@dataclass(frozen=True)
class Filters:
    """What a report is narrowed to. Dates are whole UTC days, both ends included."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    date_field: str = ""
    organization_id: int | None = None
    department_id: int | None = None
    status: str = ""
    profile_id: int | None = None
    issuer: str = ""
    as_of: dt.datetime | None = None  # "now" for derived states (Expired), fixed at start

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value in (None, ""):
                continue
            out[key] = value.isoformat() if isinstance(value, dt.date) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filters:
        def day(key: str) -> dt.date | None:
            return dt.date.fromisoformat(data[key]) if data.get(key) else None

        def number(key: str) -> int | None:
            return int(data[key]) if data.get(key) not in (None, "") else None

        as_of = data.get("as_of")
        return cls(
            date_from=day("date_from"),
            date_to=day("date_to"),
            date_field=str(data.get("date_field", "")),
            organization_id=number("organization_id"),
            department_id=number("department_id"),
            status=str(data.get("status", "")),
            profile_id=number("profile_id"),
            issuer=str(data.get("issuer", "")),
            as_of=dt.datetime.fromisoformat(as_of) if as_of else None,
        )

    def period(self, column: Any) -> ColumnElement[bool]:
        clause: ColumnElement[bool] = true()
        if self.date_from is not None:
            start = dt.datetime.combine(self.date_from, dt.time(), dt.UTC)
            clause = and_(clause, column >= start)
        if self.date_to is not None:
            end = dt.datetime.combine(self.date_to + dt.timedelta(days=1), dt.time(), dt.UTC)
            clause = and_(clause, column < end)
        return clause


Builder = Callable[[Scope, Filters], Select[Any]]
Shaper = Callable[[Any], tuple[Any, ...]]


@dataclass(frozen=True)
class CsvText:
    """A report type's rows for CSV on PostgreSQL, each cell already the text
    ``export.csv_cell`` would write (times as ISO 8601 UTC seconds with Z, booleans as
    true/false, NULL as empty), formatted by the database while it sends them, so the
    worker only escapes formulas (export.CsvWriter.text_rows). ``shape_block`` finishes
    a block of rows in Python; ``numeric`` are the positions of numbers (never escaped)."""

    build: Builder
    numeric: frozenset[int]
    shape_block: Callable[[Sequence[Any]], Sequence[Sequence[str]]]


@dataclass(frozen=True)
class ReportType:
    key: str
    title: str
    columns: tuple[Column, ...]
    id_column: Any  # the column the report is split on (ranges of it, in order)
    build: Builder
    date_fields: Mapping[str, Any]  # filter name -> column; the first is the default
    statuses: tuple[str, ...] = ()
    shape: Shaper | None = None
    uses_profile: bool = False
    uses_issuer: bool = False
    uses_department: bool = True
    # The rows' organization, when they have one: a report narrowed to an organization is
    # split over that organization's span of ids, not the whole table's.
    org_column: Any = None
    charts: tuple[ChartSpec, ...] = ()  # drawn in the HTML view and export
    # PostgreSQL: the same rows with every cell as its CSV text (CsvText), for CSV reports.
    csv_text: CsvText | None = None

    def rows(
        self, scope: Scope, filters: Filters, low: int, high: int, *, as_csv_text: bool = False
    ) -> Select[Any]:
        """The rows whose split column lies in [low, high], in its order (``as_csv_text``:
        the csv_text query of the same rows)."""
        build = self.csv_text.build if as_csv_text and self.csv_text else self.build
        query = build(scope, filters)
        if filters.date_from or filters.date_to:
            field = filters.date_field or next(iter(self.date_fields))
            query = query.where(filters.period(self.date_fields[field]))
        return query.where(self.id_column.between(low, high)).order_by(self.id_column)


def _placed(query: Select[Any], org: Any, dept: Any, filters: Filters) -> Select[Any]:
    if filters.organization_id is not None:
        query = query.where(org == filters.organization_id)
    if filters.department_id is not None and dept is not None:
        query = query.where(dept == filters.department_id)
    return query


# --- certificates ---------------------------------------------------------------------------

CERT_COLUMNS = (
    Column("id", "Id"),
    Column("common_name", "Common name"),
    Column("organization", "Organization"),
    Column("department", "Department"),
    Column("status", "Status"),
    Column("origin", "Origin"),
    Column("profile", "Profile"),
    Column("issuer", "Issuer"),
    Column("serial", "Serial number"),
    Column("valid_from", "Valid from"),
    Column("expires", "Expires"),
    Column("key_type", "Key type"),
    Column("signature_algorithm", "Signature algorithm"),
    Column("subject_alternative_names", "Subject alternative names"),
    Column("revoked_at", "Revoked"),
    Column("revocation_reason", "Revocation reason"),
    Column("auto_renew", "Auto renew"),
    Column("fingerprint", "SHA-256 fingerprint"),
)


def _effective_status(as_of: dt.datetime) -> ColumnElement[Any]:
    """Issued past its expiry reads Expired (as the inventory shows it)."""
    return case(
        (
            (Certificate.status == CertStatus.ISSUED) & (Certificate.not_after < as_of),
            CertStatus.EXPIRED.value,
        ),
        else_=Certificate.status,
    )


def _certificate_columns(status: ColumnElement[Any]) -> tuple[Any, ...]:
    return (
        Certificate.id,
        Certificate.common_name,
        Organization.name,
        Department.name,
        status,
        Certificate.origin,
        CertificateProfile.name,
        Certificate.issuer_cn,
        Certificate.serial_hex,
        Certificate.not_before,
        Certificate.not_after,
        Certificate.key_type,
        Certificate.signature_algorithm,
        Certificate.sans,
        Certificate.revoked_at,
        Certificate.revocation_reason,
        Certificate.auto_renew,
        Certificate.fingerprint,
    )


def _text(value: Any) -> ColumnElement[str]:
    """A text cell as CSV writes it: NULL is empty."""
    return func.coalesce(type_coerce(value, Text), literal("", Text))


def _utc_text(value: Any) -> ColumnElement[str]:
    """A time as CSV writes it (export.csv_cell): ISO 8601 UTC, whole seconds, Z."""
    return _text(func.to_char(func.timezone("UTC", value), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))


def _certificate_csv_columns(status: ColumnElement[Any]) -> tuple[Any, ...]:
    """_certificate_columns as CSV text (PostgreSQL); the SANs stay JSON text, joined by
    _shape_certificate_block."""
    return (
        cast(Certificate.id, Text),
        _text(Certificate.common_name),
        _text(Organization.name),
        _text(Department.name),
        _text(status),
        _text(Certificate.origin),
        _text(CertificateProfile.name),
        _text(Certificate.issuer_cn),
        _text(Certificate.serial_hex),
        _utc_text(Certificate.not_before),
        _utc_text(Certificate.not_after),
        _text(Certificate.key_type),
        _text(Certificate.signature_algorithm),
        func.coalesce(cast(Certificate.sans, Text), literal("null", Text)),
        _utc_text(Certificate.revoked_at),
        _text(Certificate.revocation_reason),
        _text(
            case(
                (Certificate.auto_renew.is_(True), literal("true", Text)),
                (Certificate.auto_renew.is_(False), literal("false", Text)),
            )
        ),
        _text(Certificate.fingerprint),
    )


SANS = 13  # position of the SANs among the certificate columns


def _certificates(
    cert_type: CertType,
    columns: Callable[[ColumnElement[Any]], tuple[Any, ...]] = _certificate_columns,
) -> Builder:
    def build(scope: Scope, filters: Filters) -> Select[Any]:
        as_of = filters.as_of or dt.datetime.now(dt.UTC)
        status = _effective_status(as_of)
        query = (
            select(*columns(status))
            .outerjoin(Organization, Organization.id == Certificate.organization_id)
            .outerjoin(Department, Department.id == Certificate.department_id)
            .outerjoin(CertificateProfile, CertificateProfile.id == Certificate.profile_id)
            .where(Certificate.cert_type == cert_type)
        )
        clause = inventory.visible_clause(scope, cert_type)
        if clause is not None:
            query = query.where(clause)
        query = _placed(query, Certificate.organization_id, Certificate.department_id, filters)
        if filters.status:
            query = query.where(status == filters.status)
        if filters.profile_id is not None:
            query = query.where(Certificate.profile_id == filters.profile_id)
        if filters.issuer:
            query = query.where(Certificate.issuer_cn.ilike(f"%{filters.issuer}%"))
        return query

    return build


def _shape_certificate(row: Any) -> tuple[Any, ...]:
    values = list(row)
    values[SANS] = " ".join(values[SANS] or [])
    return tuple(values)


def _shape_certificate_block(rows: Sequence[Any]) -> list[list[str]]:
    """A block of _certificate_csv_columns rows with their SANs joined like
    _shape_certificate (the block's JSON parsed in one call)."""
    names = json.loads("[" + ",".join(row[SANS] for row in rows) + "]")
    shaped = []
    for row, listed in zip(rows, names, strict=True):
        values = list(row)
        values[SANS] = " ".join(listed or [])
        shaped.append(values)
    return shaped


CERT_CHARTS = (
    ChartSpec("status", "By status", "donut"),
    ChartSpec("expires", "Expiring by month", "month"),
    ChartSpec("organization", "By organization"),
    ChartSpec("issuer", "By issuer"),
    ChartSpec("key_type", "By key type and size"),
    ChartSpec("signature_algorithm", "By signature algorithm"),
    ChartSpec("origin", "By origin", "donut"),
)


def _certificate_type(key: str, title: str, cert_type: CertType) -> ReportType:
    return ReportType(
        key=key,
        title=title,
        columns=CERT_COLUMNS,
        id_column=Certificate.id,
        org_column=Certificate.organization_id,
        build=_certificates(cert_type),
        date_fields={
            "expires": Certificate.not_after,
            "issued": Certificate.not_before,
            "revoked": Certificate.revoked_at,
        },
        statuses=CERT_STATUSES,
        shape=_shape_certificate,
        csv_text=CsvText(
            build=_certificates(cert_type, _certificate_csv_columns),
            numeric=frozenset({0}),
            shape_block=_shape_certificate_block,
        ),
        uses_profile=True,
        uses_issuer=True,
        charts=CERT_CHARTS,
    )


# --- domains and delegations -----------------------------------------------------------------


def _domains(scope: Scope, filters: Filters) -> Select[Any]:
    visible = true() if scope.is_master else delegation_clause(scope)
    joined = and_(Delegation.domain_id == Domain.id, visible)
    if filters.organization_id is not None:
        joined = and_(joined, Delegation.organization_id == filters.organization_id)
    if filters.department_id is not None:
        joined = and_(joined, Delegation.department_id == filters.department_id)
    query = (
        select(
            Domain.id,
            Domain.name,
            Domain.active,
            Domain.dcv_method,
            Domain.dcv_order_status,
            Domain.dcv_validated_at,
            Domain.dcv_expires_at,
            Delegation.id,
            Organization.name,
            Department.name,
            Delegation.ssl,
            Delegation.client,
            Delegation.code_signing,
            Delegation.device,
            Delegation.status,
        )
        .outerjoin(Delegation, joined)
        .outerjoin(Organization, Organization.id == Delegation.organization_id)
        .outerjoin(Department, Department.id == Delegation.department_id)
    )
    clause = visible_domains_clause(scope)
    if clause is not None:
        query = query.where(clause)
    if filters.organization_id is not None or filters.department_id is not None:
        query = query.where(Delegation.id.is_not(None))
    if filters.status:
        query = query.where(Delegation.status == filters.status)
    return query.order_by(Domain.id, Delegation.id)


DOMAINS = ReportType(
    key="domains",
    title="Domains and delegations",
    columns=(
        Column("domain_id", "Domain id"),
        Column("domain", "Domain"),
        Column("active", "Active"),
        Column("dcv_method", "DCV method"),
        Column("dcv_status", "DCV status"),
        Column("dcv_validated_at", "DCV validated"),
        Column("dcv_expires_at", "DCV expires"),
        Column("delegation_id", "Delegation id"),
        Column("organization", "Organization"),
        Column("department", "Department"),
        Column("ssl", "SSL"),
        Column("client", "Client"),
        Column("code_signing", "Code Signing"),
        Column("device", "Device"),
        Column("delegation_status", "Delegation status"),
    ),
    id_column=Domain.id,
    build=_domains,
    date_fields={"created": Domain.created_at, "dcv_expires": Domain.dcv_expires_at},
    statuses=tuple(s.value for s in DelegationStatus),
    charts=(
        ChartSpec("dcv_status", "By DCV status", "donut"),
        ChartSpec("delegation_status", "By delegation status", "donut"),
        ChartSpec("organization", "By organization"),
    ),
)


# --- admins and their privileges -------------------------------------------------------------


def _admins(scope: Scope, filters: Filters) -> Select[Any]:
    # An alias: the visibility clause correlates its own AdminScope subqueries to Admin.
    grant = aliased(AdminScope)
    query = (
        select(
            Admin.id,
            Admin.login,
            Admin.full_name,
            Admin.email,
            Admin.role,
            Admin.kind,
            Admin.active,
            Admin.last_login_at,
            Organization.name,
            Department.name,
            grant.ssl,
            grant.client,
            grant.code_signing,
            grant.device,
        )
        .outerjoin(grant, grant.admin_id == Admin.id)
        .outerjoin(Organization, Organization.id == grant.organization_id)
        .outerjoin(Department, Department.id == grant.department_id)
    )
    clause = visible_admins_clause(scope)
    if clause is not None:
        query = query.where(clause)
    query = _placed(query, grant.organization_id, grant.department_id, filters)
    if filters.status:
        query = query.where(Admin.active.is_(filters.status == "Active"))
    return query.order_by(Admin.id, grant.id)


ADMINS = ReportType(
    key="admins",
    title="Administrators and their privileges",
    columns=(
        Column("admin_id", "Admin id"),
        Column("login", "Login"),
        Column("name", "Name"),
        Column("email", "Email"),
        Column("role", "Role"),
        Column("kind", "Kind"),
        Column("active", "Active"),
        Column("last_login", "Last login"),
        Column("organization", "Organization"),
        Column("department", "Department"),
        Column("ssl", "SSL"),
        Column("client", "Client"),
        Column("code_signing", "Code Signing"),
        Column("device", "Device"),
    ),
    id_column=Admin.id,
    build=_admins,
    date_fields={"created": Admin.created_at, "last_login": Admin.last_login_at},
    statuses=("Active", "Inactive"),
    charts=(
        ChartSpec("role", "By role", "donut"),
        ChartSpec("active", "Active", "donut"),
        ChartSpec("organization", "By organization"),
    ),
)


# --- network discovery -----------------------------------------------------------------------


def _tasks(scope: Scope, filters: Filters) -> Select[Any]:
    last = aliased(ScanRun)
    latest = (
        select(func.max(ScanRun.id)).where(ScanRun.task_id == DiscoveryTask.id).scalar_subquery()
    )
    runs = select(func.count(ScanRun.id)).where(ScanRun.task_id == DiscoveryTask.id)
    query = (
        select(
            DiscoveryTask.id,
            DiscoveryTask.name,
            DiscoveryTask.description,
            DiscoveryTask.agent,
            DiscoveryTask.ranges,
            DiscoveryTask.ports,
            Organization.name,
            DiscoveryTask.created_at,
            runs.scalar_subquery(),
            last.status,
            last.started_at,
            last.finished_at,
            last.tls_endpoints,
            last.certificates,
        )
        .outerjoin(Organization, Organization.id == DiscoveryTask.organization_id)
        .outerjoin(last, last.id == latest)
    )
    clause = visible_tasks_clause(scope)
    if clause is not None:
        query = query.where(clause)
    query = _placed(query, DiscoveryTask.organization_id, None, filters)
    if filters.status:
        query = query.where(last.status == filters.status)
    return query


TASKS = ReportType(
    key="discovery_tasks",
    title="Network Discovery Tasks",
    columns=(
        Column("id", "Id"),
        Column("name", "Name"),
        Column("description", "Description"),
        Column("agent", "Agent"),
        Column("ranges", "Ranges"),
        Column("ports", "Ports"),
        Column("organization", "Organization"),
        Column("created", "Created"),
        Column("runs", "Runs"),
        Column("last_run_status", "Last run status"),
        Column("last_run_started", "Last run started"),
        Column("last_run_finished", "Last run finished"),
        Column("last_run_endpoints", "Last run TLS endpoints"),
        Column("last_run_certificates", "Last run certificates"),
    ),
    id_column=DiscoveryTask.id,
    build=_tasks,
    date_fields={"created": DiscoveryTask.created_at},
    statuses=tuple(s.value for s in RunStatus),
    uses_department=False,
    charts=(
        ChartSpec("last_run_status", "By last run status", "donut"),
        ChartSpec("organization", "By organization"),
    ),
)

HEALTH = (
    "self_signed_leaf",
    "incomplete_chain",
    "misordered_chain",
    "hostname_mismatch",
    "expired",
    "not_yet_valid",
    "weak_key",
    "sha1_signature",
)


def _results(scope: Scope, filters: Filters) -> Select[Any]:
    query = (
        select(
            Endpoint.id,
            Endpoint.ip,
            Endpoint.port,
            Endpoint.host_name,
            DiscoveryTask.name,
            Certificate.common_name,
            Certificate.issuer_cn,
            Certificate.not_after,
            Certificate.key_type,
            Certificate.signature_algorithm,
            Organization.name,
            Endpoint.tls_version,
            Endpoint.first_seen_at,
            Endpoint.last_seen_at,
            Endpoint.error,
            *(getattr(Endpoint, flag) for flag in HEALTH),
        )
        .join(DiscoveryTask, DiscoveryTask.id == Endpoint.task_id)
        .outerjoin(Certificate, Certificate.id == Endpoint.certificate_id)
        .outerjoin(Organization, Organization.id == Certificate.organization_id)
    )
    clause = visible_endpoints_clause(scope)
    if clause is not None:
        query = query.where(clause)
    query = _placed(query, Certificate.organization_id, Certificate.department_id, filters)
    if filters.status == "healthy":
        query = query.where(*(getattr(Endpoint, f).is_(False) for f in HEALTH))
    elif filters.status:
        query = query.where(getattr(Endpoint, filters.status).is_(True))
    if filters.issuer:
        query = query.where(Certificate.issuer_cn.ilike(f"%{filters.issuer}%"))
    return query


RESULTS = ReportType(
    key="discovery_results",
    title="Network Discovery Results",
    columns=(
        Column("id", "Id"),
        Column("ip", "IP"),
        Column("port", "Port"),
        Column("host_name", "Host name"),
        Column("task", "Task"),
        Column("common_name", "Common name"),
        Column("issuer", "Issuer"),
        Column("expires", "Expires"),
        Column("key_type", "Key type"),
        Column("signature_algorithm", "Signature algorithm"),
        Column("organization", "Organization"),
        Column("tls_version", "TLS version"),
        Column("first_seen", "First seen"),
        Column("last_seen", "Last seen"),
        Column("error", "Error"),
        *(Column(flag, flag.replace("_", " ").capitalize()) for flag in HEALTH),
    ),
    id_column=Endpoint.id,
    build=_results,
    date_fields={"last_seen": Endpoint.last_seen_at, "first_seen": Endpoint.first_seen_at},
    statuses=("healthy", *HEALTH),
    uses_issuer=True,
    charts=(
        ChartSpec("tls_version", "By TLS version"),
        ChartSpec("key_type", "By key type and size"),
        ChartSpec("issuer", "By issuer"),
        ChartSpec("expires", "Expiring by month", "month"),
    ),
)


TYPES: dict[str, ReportType] = {
    t.key: t
    for t in (
        _certificate_type("ssl_certificates", "SSL certificates", CertType.SSL),
        _certificate_type("client_certificates", "Client certificates", CertType.CLIENT),
        _certificate_type("device_certificates", "Device certificates", CertType.DEVICE),
        _certificate_type(
            "code_signing_certificates", "Code Signing certificates", CertType.CODE_SIGNING
        ),
        DOMAINS,
        ADMINS,
        TASKS,
        RESULTS,
    )
}


def report_type(key: str) -> ReportType:
    """Raises:
    DomainError: no report type of that name."""
    try:
        return TYPES[key]
    except KeyError:
        names = ", ".join(TYPES)
        raise DomainError(f"No report type {key!r}; choose one of {names}.", field="type") from None


def check_filters(rtype: ReportType, actor: Actor, filters: Filters) -> None:
    """Refuse filters the report does not know or the viewer may not name.

    Raises:
        DomainError: naming the field.
    """
    if filters.date_field and filters.date_field not in rtype.date_fields:
        known = ", ".join(rtype.date_fields)
        raise DomainError(
            f"{rtype.title} filter dates by {known}, not {filters.date_field!r}.",
            field="date_field",
        )
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise DomainError("The date range ends before it starts.", field="date_to")
    if filters.status and filters.status not in rtype.statuses:
        known = ", ".join(rtype.statuses) or "none"
        raise DomainError(
            f"{rtype.title} has no status {filters.status!r} (known: {known}).", field="status"
        )
    if filters.profile_id is not None and not rtype.uses_profile:
        raise DomainError(f"{rtype.title} cannot be filtered by profile.", field="profile_id")
    if filters.issuer and not rtype.uses_issuer:
        raise DomainError(f"{rtype.title} cannot be filtered by issuer.", field="issuer")
    if filters.department_id is not None and not rtype.uses_department:
        raise DomainError(f"{rtype.title} cannot be filtered by department.", field="department_id")
    scope = scope_of(actor)
    org, dept = filters.organization_id, filters.department_id
    if org is not None and not scope.is_master and org not in scope.visible_org_ids:
        _record_denied(actor, Organization, org)
        raise DomainError("No such organization.", field="organization_id")
    if (
        dept is not None
        and not scope.is_master
        and not (dept in scope.depts or any(o in scope.orgs for o in _parent_orgs(dept)))
    ):
        _record_denied(actor, Department, dept)
        raise DomainError("No such department.", field="department_id")


def _record_denied(actor: Actor, model: type, object_id: int) -> None:
    """A filter naming an existing organization/department outside the viewer's scope."""
    if db.session.get(model, object_id) is not None:
        audit.record_denied(
            actor=actor,
            object_type=model.__name__,
            object_id=object_id,
            attempted="a report filter",
        )


def _parent_orgs(department_id: int) -> list[int]:
    found = db.session.execute(
        select(Department.organization_id).where(Department.id == department_id)
    ).scalar_one_or_none()
    return [] if found is None else [int(found)]
