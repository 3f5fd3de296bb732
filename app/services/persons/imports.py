"""Persons from a CSV file: one result per line (created, updated, refused and why); the
whole file or nothing, unless asked to keep the good lines.

Columns (header line required, any order, case-insensitive; TEMPLATE is the download):
email, first_name, middle_name, last_name, organization, department, domain,
alternative_emails (separated by ";" or spaces), validation_type (Standard or High), phone,
secret_id. A line whose email belongs to a person updates that person; an update that
would revoke the person's valid certificates is refused unless the import says so.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from sqlalchemy import select

from app.extensions import db
from app.models import Department, Domain, Organization, ValidationType
from app.services import audit
from app.services.errors import DomainError, ValidationFailed
from app.services.persons import persons
from app.services.scope import Actor, scope_of
from app.services.structure.domains import visible_domains_clause

MAX_BYTES = 2 * 1024 * 1024
MAX_LINES = 5000
COLUMNS = (
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "organization",
    "department",
    "domain",
    "alternative_emails",
    "validation_type",
    "phone",
    "secret_id",
)
REQUIRED = ("email", "first_name", "last_name", "organization")
TEMPLATE = (
    ",".join(COLUMNS)
    + "\r\n"
    + "jane.doe@example.com,Jane,,Doe,Acme Corp,IT Operations,example.com,"
    + "j.doe@example.com,Standard,+1 555 0100,\r\n"
)
_SPLIT = re.compile(r"[;\s]+")


@dataclass
class LineResult:
    line: int
    email: str
    outcome: str  # created | updated | unchanged | refused
    reason: str = ""


@dataclass
class ImportReport:
    results: list[LineResult] = field(default_factory=list)
    applied: bool = True

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def summary(self) -> str:
        parts = [
            f"{self.count(o)} {o}"
            for o in ("created", "updated", "unchanged", "refused")
            if self.count(o)
        ]
        text = ", ".join(parts) or "no lines"
        return text if self.applied else f"nothing imported ({text}; the file is all or nothing)"


class ImportRefused(DomainError):
    """Some lines were refused and the file is all or nothing: nothing was kept."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"Nothing was imported: {report.count('refused')} line(s) refused.")
        self.report = report


def _rows(data: bytes) -> list[dict[str, str]]:
    if len(data) > MAX_BYTES:
        raise DomainError(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.", field="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError("The file is not UTF-8 text.", field="file") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DomainError(
            f"The header line lacks {', '.join(missing)}; download the template for the columns.",
            field="file",
        )
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise DomainError(f"Unknown column(s): {', '.join(unknown)}.", field="file")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if len(rows) >= MAX_LINES:
            raise DomainError(f"At most {MAX_LINES} lines per file.", field="file")
        rows.append({k: (v or "").strip() for k, v in row.items() if k})
    return rows


def _place(actor: Actor, row: dict[str, str]) -> tuple[int, int | None]:
    """The organization/department a line names, looked up among those the actor may see:
    one outside the scope reads like one that does not exist (and is a denied attempt)."""
    scope = scope_of(actor)
    name = row.get("organization", "")
    org = db.session.execute(
        select(Organization).where(Organization.name == name)
    ).scalar_one_or_none()
    if org is None or not (scope.is_master or org.id in scope.visible_org_ids):
        if org is not None:
            _denied(actor, "Organization", org.id)
        raise DomainError(f"no organization named '{name}'")
    if not row.get("department"):
        return org.id, None
    dept = db.session.execute(
        select(Department).where(
            Department.organization_id == org.id, Department.name == row["department"]
        )
    ).scalar_one_or_none()
    if dept is None or not scope.covers(org.id, dept.id):
        if dept is not None:  # a DRAO's sibling department
            _denied(actor, "Department", dept.id)
        raise DomainError(f"'{org.name}' has no department '{row['department']}'")
    return org.id, dept.id


def _domain_id(actor: Actor, name: str) -> int | None:
    if not name:
        return None
    found = db.session.execute(
        select(Domain.id).where(Domain.name == name.strip().lower())
    ).scalar_one_or_none()
    clause = visible_domains_clause(scope_of(actor))
    hidden = (
        found is not None
        and clause is not None
        and db.session.execute(select(Domain.id).where(Domain.id == found, clause)).first() is None
    )
    if hidden:
        _denied(actor, "Domain", found)
        found = None
    if found is None:
        raise DomainError(f"no domain named '{name}'")
    return found


def _denied(actor: Actor, object_type: str, object_id: int) -> None:
    audit.record_denied(
        actor=actor, object_type=object_type, object_id=object_id, attempted="a person import line"
    )


def _data(actor: Actor, row: dict[str, str]) -> persons.PersonData:
    org_id, dept_id = _place(actor, row)
    kind = (row.get("validation_type") or "Standard").capitalize()
    if kind not in {v.value for v in ValidationType}:
        raise DomainError(f"validation_type must be Standard or High, not '{kind}'")
    return persons.PersonData(
        organization_id=org_id,
        department_id=dept_id,
        domain_id=_domain_id(actor, row.get("domain", "")),
        email=row.get("email", ""),
        first_name=row.get("first_name", ""),
        middle_name=row.get("middle_name", ""),
        last_name=row.get("last_name", ""),
        alt_emails=[a for a in _SPLIT.split(row.get("alternative_emails", "")) if a],
        validation_type=ValidationType(kind),
        phone=row.get("phone", ""),
        secret_id=row.get("secret_id", ""),
    )


def _reason(exc: DomainError) -> str:
    if isinstance(exc, ValidationFailed):
        return "; ".join(f"{f}: {m}" for f, ms in exc.errors.items() for m in ms)
    return exc.message


def import_csv(
    *, actor: Actor, data: bytes, keep_good_lines: bool = False, revoke_on_update: bool = False
) -> ImportReport:
    """Create or update a person per line.

    Raises:
        DomainError: the file itself is unusable (size, encoding, header).
        ImportRefused: a line was refused and ``keep_good_lines`` is false; its report
            says why for every line. The caller rolls back.
    """
    report = ImportReport()
    seen: set[str] = set()
    for number, row in enumerate(_rows(data), start=2):  # line 1 is the header
        email = row.get("email", "").lower()
        if email in seen:
            report.results.append(LineResult(number, email, "refused", "the email is listed twice"))
            continue
        seen.add(email)
        # No savepoint per line (SQLite's driver would commit the first one): create_person
        # and update_person check everything before they write, so a refused line has
        # written nothing, and a refused file is rolled back whole by the caller.
        try:
            item = _data(actor, row)
            existing = persons.find_by_email(email) if email else None
            if existing is None:
                persons.create_person(actor=actor, data=item)
                outcome = "created"
            else:
                changed = persons.pending_changes(actor=actor, person_id=existing.id, data=item)
                persons.update_person(
                    actor=actor, person_id=existing.id, data=item, confirmed=revoke_on_update
                )
                outcome = "updated" if changed or item.secret_id else "unchanged"
        except persons.ConfirmationNeeded as exc:
            report.results.append(
                LineResult(
                    number,
                    email,
                    "refused",
                    f"{len(exc.certificates)} valid certificate(s) would be revoked; tick "
                    "'revoke on update' or edit the person in the console",
                )
            )
            continue
        except DomainError as exc:
            report.results.append(LineResult(number, email, "refused", _reason(exc)))
            continue
        report.results.append(LineResult(number, email, outcome))
    if report.count("refused") and not keep_good_lines:
        report.applied = False
        raise ImportRefused(report)
    return report
