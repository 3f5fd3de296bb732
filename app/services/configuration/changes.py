"""Export, plan and apply a configuration document through the domain services, so that
validation, authorization and audit are the ones every front door gets.

apply() works in the caller's transaction (the caller commits once); plan() runs the very
same apply and rolls it back, so a plan names exactly what apply would do and meets every
refusal apply would meet. Creates and updates go in the order of document.SECTIONS
(organizations before the domains delegated to them, parents before issuing CAs); deletes
come last, in the reverse order, so that nothing is deleted while something still refers
to it. Certificate authorities are never deleted or changed: a CA's certificate is fixed
when it is signed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
    AssignmentRule,
    CertificateAuthority,
    CertificateProfile,
    CertType,
    Delegation,
    DelegationStatus,
    Department,
    DiscoveryTask,
    Domain,
    LintMode,
    Organization,
    Role,
)
from app.services import audit
from app.services.accounts import admins
from app.services.ca import authorities, profiles
from app.services.configuration import document, state
from app.services.configuration.document import ORG_TEXT, SECTIONS, Doc, key_of
from app.services.discovery import rules, tasks
from app.services.errors import DomainError, Forbidden, ValidationFailed
from app.services.notifications import templates as notice_templates
from app.services.persons import invitations, mailing
from app.services.scope import Actor, require_actor
from app.services.structure import domains, orgs

SYMBOL = {"create": "+", "update": "~", "approve": "~", "delete": "-"}
# Deletes run after every create and update, in this order: whatever refers to a thing goes
# before it (an administrator's scope and a task before its organization, a delegation
# before its domain and department).
DELETE_ORDER = {
    kind: position
    for position, kind in enumerate(
        (
            "admin",
            "discovery task",
            "assignment rule",
            "delegation",
            "domain",
            "profile",
            "department",
            "organization",
        )
    )
}


@dataclass(frozen=True)
class Change:
    action: str  # create | update | approve | delete
    kind: str  # organization, department, authority, profile, domain, delegation, ...
    name: str
    details: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{SYMBOL[self.action]} {self.action} {self.kind} '{self.name}'"
        return text + (": " + "; ".join(self.details) if self.details else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "details": list(self.details),
        }


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    # Administrators created by this apply: login -> a generated password, shown once.
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def export() -> str:
    """The whole configuration as YAML (no key, password or other secret)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (
        f"# Certwright configuration, exported {now}.\n"
        "# Check with `flask --app wsgi config plan FILE`, apply with `config apply FILE`;\n"
        "# the format is described in docs/config.md. No private key or password is in here.\n"
    )
    return document.dump(readable(state.read()), header=header)


def readable(doc: Doc) -> Doc:
    """The canonical document without empty values and defaults, as a person writes it."""
    out: Doc = {"version": document.VERSION}
    for section in SECTIONS:
        entries = []
        for entry in doc.get(section, []):
            tidy: dict[str, Any] = {}
            for key, value in entry.items():
                if value in ("", None) or (key == "lifetime_years"):
                    continue
                if key in ("ranges", "host_overrides"):
                    value = value.splitlines()
                if key == "schedule":
                    value = {k: v for k, v in value.items() if v is not None}
                    if value.get("kind") == "manual":
                        value = {"kind": "manual"}
                tidy[key] = value
            entries.append(tidy)
        out[section] = entries
    return out


def plan(*, actor: Actor, text: str) -> Outcome:
    """What apply would change, found by applying in the current transaction and rolling
    it back (call it with nothing else pending).

    Raises:
        document.DocumentError: the file is not a valid configuration.
        DomainError: a change the services refuse (the message names the entry).
    """
    try:
        outcome = apply(actor=actor, text=text)
    finally:
        db.session.rollback()
    outcome.passwords.clear()
    return outcome


def apply(*, actor: Actor, text: str) -> Outcome:
    """Make the database match the file, in the caller's transaction (it commits once).

    Raises:
        Forbidden: the actor is not an MRAO (or the system).
        document.DocumentError: the file is not a valid configuration.
        DomainError: a change the services refuse (the message names the entry).
    """
    if not require_actor(actor).is_master:
        raise Forbidden("Only an MRAO can apply a configuration.")
    desired = document.load(text)
    run = _Run(actor, desired, state.read(tuple(s for s in SECTIONS if s in desired)))
    run.forward()
    run.deletes()
    if run.outcome.changes:
        counts: dict[str, int] = {}
        for change in run.outcome.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        audit.record(
            action="config.apply",
            actor=actor,
            object_type="Configuration",
            label="configuration file",
            after={"changes": [c.describe() for c in run.outcome.changes]},
            message=", ".join(f"{n} {action}" for action, n in sorted(counts.items())),
        )
    return run.outcome


def _refusal(exc: DomainError) -> str:
    if isinstance(exc, ValidationFailed):
        return "; ".join(f"{f}: {m}" for f, ms in exc.errors.items() for m in ms)
    return exc.message


def _diff(
    current: dict[str, Any], wanted: dict[str, Any], keys: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(
        f"{k}: {_show(current.get(k))} -> {_show(wanted.get(k))}"
        for k in keys
        if current.get(k) != wanted.get(k)
    )


def _template_diff(current: dict[str, str] | None, wanted: dict[str, str]) -> tuple[str, ...]:
    """A template's change in a line: the subject in full, the body by its size."""
    if current is None:
        return (f"subject: {_show(wanted['subject'])}", f"body: {len(wanted['body'])} characters")
    details = _diff(current, wanted, ("subject",))
    if current["body"] != wanted["body"]:
        details += (f"body: {len(current['body'])} -> {len(wanted['body'])} characters",)
    return details


def _notice_diff(current: dict[str, str] | None, wanted: dict[str, str]) -> tuple[str, ...]:
    """A notification template's change in a line: the subject in full, the parts by size."""
    if current is None:
        return (
            f"subject: {_show(wanted['subject'])}",
            f"text: {len(wanted['text'])} characters",
            f"html: {len(wanted['html'])} characters",
        )
    details = _diff(current, wanted, ("subject",))
    for part in ("text", "html"):
        if current[part] != wanted[part]:
            details += (f"{part}: {len(current[part])} -> {len(wanted[part])} characters",)
    return details


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items() if v is not None) + "}"
    return repr(value) if isinstance(value, str) else str(value)


class _Run:
    """One apply: the file, the database's state before it, and the changes made so far."""

    def __init__(self, actor: Actor, desired: Doc, current: Doc) -> None:
        self.actor = actor
        self.desired = desired
        self.current = {
            section: {document.identity(section, e): e for e in entries}
            for section, entries in current.items()
        }
        self.outcome = Outcome()
        self._deferred: list[tuple[int, Callable[[], None]]] = []

    # --- bookkeeping --------------------------------------------------------------------
    @contextmanager
    def change(
        self, action: str, kind: str, name: str, details: tuple[str, ...] = ()
    ) -> Iterator[None]:
        try:
            yield
        except DomainError as exc:
            raise DomainError(f"{action} {kind} '{name}': {_refusal(exc)}") from exc
        self.outcome.changes.append(Change(action, kind, name, details))

    def later(self, order: int, fn: Callable[[], None]) -> None:
        """A delete, run after every create and update (in DELETE_ORDER)."""
        self._deferred.append((order, fn))

    def forward(self) -> None:
        for section in SECTIONS:
            if section in self.desired:
                getattr(self, f"_{section}")(self.desired[section])

    def deletes(self) -> None:
        for _, fn in sorted(self._deferred, key=lambda item: item[0]):
            fn()

    def unlisted(self, section: str) -> list[dict[str, Any]]:
        """Entries in the database that the file's section does not list."""
        wanted = {document.identity(section, e) for e in self.desired[section]}
        return [e for ident, e in self.current[section].items() if ident not in wanted]

    # --- lookups by name ----------------------------------------------------------------
    def org(self, name: str) -> Organization:
        org = db.session.execute(
            select(Organization).where(func.lower(Organization.name) == key_of(name))
        ).scalar_one_or_none()
        if org is None:
            raise DomainError(f"no organization named '{name}'")
        return org

    def dept(self, org: Organization, name: str) -> Department:
        dept = db.session.execute(
            select(Department).where(
                Department.organization_id == org.id, func.lower(Department.name) == key_of(name)
            )
        ).scalar_one_or_none()
        if dept is None:
            raise DomainError(f"organization '{org.name}' has no department '{name}'")
        return dept

    def place(self, to: str) -> tuple[int, int | None]:
        org_name, _, dept_name = to.partition("/")
        org = self.org(org_name)
        return org.id, self.dept(org, dept_name).id if dept_name else None

    def ca(self, name: str) -> CertificateAuthority:
        ca = db.session.execute(
            select(CertificateAuthority).where(
                func.lower(CertificateAuthority.name) == key_of(name)
            )
        ).scalar_one_or_none()
        if ca is None:
            raise DomainError(f"no certificate authority named '{name}'")
        return ca

    def one(self, model: Any, *where: Any) -> Any:
        return db.session.execute(select(model).where(*where)).scalar_one()

    # --- organizations and departments ---------------------------------------------------
    def _organizations(self, wanted: list[dict[str, Any]]) -> None:
        current = self.current["organizations"]
        for entry in wanted:
            data = orgs.OrgData(
                name=entry["name"],
                country=entry["country"],
                **{key: entry[key] for key in ORG_TEXT},
            )
            now = current.get(key_of(entry["name"]))
            if now is None:
                with self.change("create", "organization", entry["name"]):
                    orgs.create_org(actor=self.actor, data=data)
                have: list[str] = []
            else:
                details = _diff(now, entry, ("name", *ORG_TEXT, "country"))
                if details:
                    with self.change("update", "organization", entry["name"], details):
                        orgs.update_org(
                            actor=self.actor,  # type: ignore[arg-type]
                            org_id=self.org(now["name"]).id,
                            data=data,
                        )
                have = now["departments"]
            if "portal" in entry:
                self._portal(entry["name"], now["portal"] if now else None, entry["portal"])
            if "notification_templates" in entry:
                self._notification_templates(
                    entry["name"],
                    (now or {}).get("notification_templates", {}),
                    entry["notification_templates"],
                )
            if "departments" not in entry:
                continue
            org_name = entry["name"]
            keep = {key_of(d) for d in entry["departments"]}
            for dept in entry["departments"]:
                if key_of(dept) not in {key_of(h) for h in have}:
                    with self.change("create", "department", f"{org_name}/{dept}"):
                        orgs.create_dept(
                            actor=self.actor, organization_id=self.org(org_name).id, name=dept
                        )
            for dept in have:
                if key_of(dept) not in keep:
                    self.later(DELETE_ORDER["department"], self._delete_dept(org_name, dept))
        for entry in self.unlisted("organizations"):
            for dept in entry["departments"]:
                self.later(DELETE_ORDER["department"], self._delete_dept(entry["name"], dept))
            self.later(DELETE_ORDER["organization"], self._delete_org(entry["name"]))

    def _portal(self, org_name: str, now: dict[str, Any] | None, wanted: dict[str, Any]) -> None:
        """Invitation validity and mail templates, through the services the console's
        Email Template page uses (same checks, same audit events)."""
        now = now or {"invitation_days": invitations.DEFAULT_DAYS, "mail_templates": {}}
        if wanted["invitation_days"] != now["invitation_days"]:
            details = (f"invitation_days: {now['invitation_days']} -> {wanted['invitation_days']}",)
            with self.change("update", "portal settings", org_name, details):
                invitations.set_invitation_days(
                    actor=self.actor,
                    organization_id=self.org(org_name).id,
                    days=wanted["invitation_days"],
                )
        if "mail_templates" not in wanted:
            return
        have = now["mail_templates"]
        for kind, template in wanted["mail_templates"].items():
            current = have.get(kind)
            if current == template:
                continue
            details = _template_diff(current, template)
            action = "create" if current is None else "update"
            with self.change(action, "mail template", f"{org_name}/{kind}", details):
                mailing.save_template(
                    actor=self.actor,
                    organization_id=self.org(org_name).id,
                    kind=kind,
                    subject=template["subject"],
                    body=template["body"],
                )
        for kind in have:
            if kind not in wanted["mail_templates"]:
                details = ("back to the built-in wording",)
                with self.change("delete", "mail template", f"{org_name}/{kind}", details):
                    mailing.reset_template(
                        actor=self.actor, organization_id=self.org(org_name).id, kind=kind
                    )

    def _notification_templates(
        self, org_name: str, have: dict[str, dict[str, str]], wanted: dict[str, dict[str, str]]
    ) -> None:
        """The organization's notification templates, through the service the console's
        Notification templates page uses (same checks, same audit events)."""
        for kind, template in wanted.items():
            current = have.get(kind)
            if current == template:
                continue
            details = _notice_diff(current, template)
            action = "create" if current is None else "update"
            with self.change(action, "notification template", f"{org_name}/{kind}", details):
                notice_templates.save_template(
                    actor=self.actor,
                    organization_id=self.org(org_name).id,
                    kind=kind,
                    subject=template["subject"],
                    body=template["text"],
                    html=template["html"],
                )
        for kind in have:
            if kind not in wanted:
                details = ("back to the built-in template",)
                with self.change("delete", "notification template", f"{org_name}/{kind}", details):
                    notice_templates.reset_template(
                        actor=self.actor, organization_id=self.org(org_name).id, kind=kind
                    )

    def _delete_dept(self, org_name: str, dept: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "department", f"{org_name}/{dept}"):
                dept_id = self.dept(self.org(org_name), dept).id
                orgs.delete_dept(actor=self.actor, dept_id=dept_id)  # type: ignore[arg-type]

        return run

    def _delete_org(self, name: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "organization", name):
                orgs.delete_org(actor=self.actor, org_id=self.org(name).id)  # type: ignore[arg-type]

        return run

    # --- certificate authorities: created when missing, never changed ---------------------
    def _authorities(self, wanted: list[dict[str, Any]]) -> None:
        by_key = {key_of(e["name"]): e for e in wanted}
        done: set[str] = set()

        def ensure(entry: dict[str, Any], chain: tuple[str, ...] = ()) -> None:
            key = key_of(entry["name"])
            if key in done:
                return
            if key in chain:
                raise DomainError(f"authority '{entry['name']}' is its own ancestor")
            parent = entry["parent"]
            if parent and key_of(parent) in by_key:
                ensure(by_key[key_of(parent)], (*chain, key))
            done.add(key)
            now = self.current["authorities"].get(key)
            if now is None:
                self._create_ca(entry)
            else:
                self._check_ca(now, entry)

        for entry in wanted:
            ensure(entry)

    def _create_ca(self, entry: dict[str, Any]) -> None:
        with self.change("create", "authority", entry["name"], self._ca_details(entry)):
            parent_id = self.ca(entry["parent"]).id if entry["parent"] else None
            authorities.create_ca(
                actor=self.actor,
                spec=authorities.CaSpec(
                    name=entry["name"],
                    key_type=entry["key_type"],
                    customer_name=entry["customer"],
                    parent_id=parent_id,
                    signature_hash=entry["signature_hash"],
                    locality=entry["city"],
                    state=entry["state"],
                    country=entry["country"],
                    lifetime_years=entry["lifetime_years"],
                    purpose=entry.get("purpose") or "TLS",
                ),
            )

    @staticmethod
    def _ca_details(entry: dict[str, Any]) -> tuple[str, ...]:
        details = [
            f"{entry['key_type']}",
            f"under '{entry['parent']}'" if entry["parent"] else "root",
        ]
        if entry["parent"]:
            details.append(f"issues {entry.get('purpose') or 'TLS'}")
        if entry["fingerprint"]:
            details.append("a new key: the file's fingerprint cannot be reproduced")
        return tuple(details)

    @staticmethod
    def _check_ca(now: dict[str, Any], entry: dict[str, Any]) -> None:
        fixed = ["customer", "key_type", "parent", "city", "state", "country"]
        if entry["signature_hash"]:
            fixed.append("signature_hash")
        if entry["fingerprint"]:
            fixed.append("fingerprint")
        if entry.get("purpose"):
            fixed.append("purpose")
        differ = [k for k in fixed if (now.get(k) or "").lower() != (entry.get(k) or "").lower()]
        if differ:
            shown = "; ".join(
                f"{k} is {now.get(k)!r}, the file says {entry.get(k)!r}" for k in differ
            )
            raise DomainError(
                f"authority '{entry['name']}' exists and a CA certificate cannot change ({shown}); "
                "create a CA under a new name instead"
            )

    # --- certificate profiles -------------------------------------------------------------
    PROFILE_KEYS = (
        "description",
        "type",
        "ca",
        "terms",
        "key_types",
        "approval",
        "four_eyes",
        "key_reuse",
        "client_auth",
        "server_auth",
        "key_escrow",
        "legacy_pkcs12",
        "lint",
        "lint_sample",
        "acme_directory",
        "active",
    )

    def _profile_data(self, entry: dict[str, Any]) -> profiles.ProfileData:
        return profiles.ProfileData(
            name=entry["name"],
            cert_type=CertType(entry["type"]),
            ca_id=self.ca(entry["ca"]).id,
            terms=tuple(entry["terms"]),
            key_types=tuple(entry["key_types"]),
            description=entry["description"],
            requires_approval=entry["approval"] == "required",
            four_eyes=entry["four_eyes"],
            allow_key_reuse=entry["key_reuse"],
            include_client_auth=entry["client_auth"],
            include_server_auth=entry["server_auth"],
            key_escrow=entry["key_escrow"],
            pkcs12_legacy=entry["legacy_pkcs12"],
            lint_mode=LintMode(entry["lint"]),
            lint_sample_n=entry["lint_sample"],
            acme_slug=entry["acme_directory"],
            active=entry["active"],
        )

    def _profiles(self, wanted: list[dict[str, Any]]) -> None:
        for entry in wanted:
            now = self.current["profiles"].get(key_of(entry["name"]))
            if now is None:
                with self.change("create", "profile", entry["name"]):
                    profiles.create_profile(actor=self.actor, data=self._profile_data(entry))
                continue
            now_cmp = dict(now, ca=key_of(now["ca"]))
            details = _diff(
                now_cmp, dict(entry, ca=key_of(entry["ca"])), ("name", *self.PROFILE_KEYS)
            )
            if details:
                with self.change("update", "profile", entry["name"], details):
                    profile_id = self.one(
                        CertificateProfile.id,
                        func.lower(CertificateProfile.name) == key_of(entry["name"]),
                    )
                    profiles.update_profile(
                        actor=self.actor,  # type: ignore[arg-type]
                        profile_id=profile_id,
                        data=self._profile_data(entry),
                    )
        for entry in self.unlisted("profiles"):
            self.later(DELETE_ORDER["profile"], self._delete_profile(entry["name"]))

    def _delete_profile(self, name: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "profile", name):
                profile_id = self.one(
                    CertificateProfile.id, func.lower(CertificateProfile.name) == key_of(name)
                )
                profiles.delete_profile(actor=self.actor, profile_id=profile_id)  # type: ignore[arg-type]

        return run

    # --- domains and delegations ----------------------------------------------------------
    def _domains(self, wanted: list[dict[str, Any]]) -> None:
        for entry in wanted:
            name = entry["name"]
            now = self.current["domains"].get(key_of(name))
            if now is None:
                with self.change("create", "domain", name):
                    domains.create_domain(
                        actor=self.actor,  # type: ignore[arg-type]
                        name=name,
                        description=entry["description"],
                        active=entry["active"],
                    )
                have: dict[str, dict[str, Any]] = {}
            else:
                details = _diff(now, entry, ("description", "active"))
                if details:
                    with self.change("update", "domain", name, details):
                        domains.update_domain(
                            actor=self.actor,  # type: ignore[arg-type]
                            domain_id=self.one(Domain.id, Domain.name == name),
                            description=entry["description"],
                            active=entry["active"],
                        )
                have = {key_of(d["to"]): d for d in now["delegations"]}
            if "delegations" not in entry:
                continue
            for d in entry["delegations"]:
                self._delegation(name, d, have.get(key_of(d["to"])))
            keep = {key_of(d["to"]) for d in entry["delegations"]}
            for key, d in have.items():
                if key not in keep:
                    self.later(DELETE_ORDER["delegation"], self._delete_delegation(name, d["to"]))
        for entry in self.unlisted("domains"):
            self.later(DELETE_ORDER["domain"], self._delete_domain(entry["name"]))

    def _delegation_row(self, domain: str, to: str) -> Delegation:
        org_id, dept_id = self.place(to)
        return self.one(
            Delegation,
            Delegation.domain_id == self.one(Domain.id, Domain.name == domain),
            Delegation.organization_id == org_id,
            Delegation.department_id.is_(None)
            if dept_id is None
            else Delegation.department_id == dept_id,
        )  # type: ignore[no-any-return]

    def _delegation(self, domain: str, wanted: dict[str, Any], now: dict[str, Any] | None) -> None:
        label = f"{domain} -> {wanted['to']}"
        types = [CertType(t) for t in wanted["types"]]
        approved = DelegationStatus.APPROVED.value
        if now is None:
            if wanted["status"] != approved:
                raise DomainError(
                    f"delegation {label}: a new delegation is created approved (status: Approved)"
                )
            with self.change("create", "delegation", label, (", ".join(wanted["types"]),)):
                org_id, dept_id = self.place(wanted["to"])
                domains.delegate(
                    actor=self.actor,  # type: ignore[arg-type]
                    domain_id=self.one(Domain.id, Domain.name == domain),
                    organization_id=org_id,
                    department_id=dept_id,
                    types=types,
                )
            return
        if now["types"] != wanted["types"]:
            details = _diff(now, wanted, ("types",))
            with self.change("update", "delegation", label, details):
                domains.update_delegation_types(
                    actor=self.actor,  # type: ignore[arg-type]
                    delegation_id=self._delegation_row(domain, wanted["to"]).id,
                    types=types,
                )
        if now["status"] == wanted["status"]:
            return
        if now["status"] == DelegationStatus.REQUESTED.value and wanted["status"] == approved:
            with self.change("approve", "delegation", label):
                domains.decide_delegation(
                    actor=self.actor,  # type: ignore[arg-type]
                    delegation_id=self._delegation_row(domain, wanted["to"]).id,
                    approve=True,
                    message="approved by a configuration file",
                )
            return
        raise DomainError(
            f"delegation {label} is {now['status']}; a configuration file can only approve a "
            f"requested delegation (delete a rejected one in the console, or leave out 'status')"
        )

    def _delete_delegation(self, domain: str, to: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "delegation", f"{domain} -> {to}"):
                domains.delete_delegation(
                    actor=self.actor,  # type: ignore[arg-type]
                    delegation_id=self._delegation_row(domain, to).id,
                )

        return run

    def _delete_domain(self, name: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "domain", name):
                domains.delete_domain(
                    actor=self.actor,  # type: ignore[arg-type]
                    domain_id=self.one(Domain.id, Domain.name == name),
                )

        return run

    # --- assignment rules -----------------------------------------------------------------
    def _rule_id(self, name: str, to: str) -> int | None:
        org_id, dept_id = self.place(to)
        return db.session.execute(  # type: ignore[no-any-return]
            select(AssignmentRule.id).where(
                func.lower(AssignmentRule.name) == key_of(name),
                AssignmentRule.organization_id == org_id,
                AssignmentRule.department_id.is_(None)
                if dept_id is None
                else AssignmentRule.department_id == dept_id,
            )
        ).scalar_one_or_none()

    def _assignment_rules(self, wanted: list[dict[str, Any]]) -> None:
        for entry in wanted:
            ident = document.identity("assignment_rules", entry)
            now = self.current["assignment_rules"].get(ident)
            details = () if now is None else _diff(now, entry, ("name", "match", "conditions"))
            if now is not None and not details:
                continue
            action = "create" if now is None else "update"
            with self.change(
                action, "assignment rule", document.display("assignment_rules", entry), details
            ):
                org_id, dept_id = self.place(entry["to"])
                rules.save_rule(
                    actor=self.actor,  # type: ignore[arg-type]
                    data=rules.RuleData(
                        name=entry["name"],
                        match_mode=entry["match"],
                        conditions=entry["conditions"],
                        organization_id=org_id,
                        department_id=dept_id,
                    ),
                    rule_id=None if now is None else self._rule_id(now["name"], now["to"]),
                )
        for entry in self.unlisted("assignment_rules"):
            self.later(DELETE_ORDER["assignment rule"], self._delete_rule(entry))

    def _delete_rule(self, entry: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            with self.change(
                "delete", "assignment rule", document.display("assignment_rules", entry)
            ):
                rule_id = self._rule_id(entry["name"], entry["to"])
                assert rule_id is not None
                rules.delete_rule(actor=self.actor, rule_id=rule_id)  # type: ignore[arg-type]

        return run

    # --- discovery tasks ------------------------------------------------------------------
    TASK_KEYS = (
        "name",
        "description",
        "ranges",
        "ports",
        "host_overrides",
        "connect_timeout",
        "handshake_timeout",
        "concurrency",
        "schedule",
        "rules",
    )

    def _task_id(self, entry: dict[str, Any]) -> int:
        owner = entry.get("organization")
        return self.one(  # type: ignore[no-any-return]
            DiscoveryTask.id,
            func.lower(DiscoveryTask.name) == key_of(entry["name"]),
            DiscoveryTask.organization_id.is_(None)
            if not owner
            else DiscoveryTask.organization_id == self.org(owner).id,
        )

    def _discovery_tasks(self, wanted: list[dict[str, Any]]) -> None:
        for entry in wanted:
            ident = document.identity("discovery_tasks", entry)
            now = self.current["discovery_tasks"].get(ident)
            if "rules" not in entry:  # the task's rules are not managed by this file
                entry = dict(entry, rules=now["rules"] if now else [])
            details = () if now is None else _diff(now, entry, self.TASK_KEYS)
            if now is not None and not details:
                continue
            action = "create" if now is None else "update"
            with self.change(
                action, "discovery task", document.display("discovery_tasks", entry), details
            ):
                rule_ids = []
                for ref in entry["rules"]:
                    rule_id = self._rule_id(ref["name"], ref["to"])
                    if rule_id is None:
                        raise DomainError(f"no assignment rule '{ref['name']}' for {ref['to']}")
                    rule_ids.append(rule_id)
                data = tasks.TaskData(
                    name=entry["name"],
                    ranges=entry["ranges"],
                    ports=entry["ports"],
                    host_overrides=entry["host_overrides"],
                    connect_timeout=entry["connect_timeout"],
                    handshake_timeout=entry["handshake_timeout"],
                    concurrency=entry["concurrency"],
                    schedule=entry["schedule"],
                    organization_id=self.org(entry["organization"]).id
                    if entry["organization"]
                    else None,
                    description=entry["description"],
                    rule_ids=rule_ids,
                )
                if now is None:
                    tasks.create_task(actor=self.actor, data=data)
                else:
                    tasks.update_task(
                        actor=self.actor,  # type: ignore[arg-type]
                        task_id=self._task_id(now),
                        data=data,
                    )
        for entry in self.unlisted("discovery_tasks"):
            self.later(DELETE_ORDER["discovery task"], self._delete_task(entry))

    def _delete_task(self, entry: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            with self.change(
                "delete", "discovery task", document.display("discovery_tasks", entry)
            ):
                tasks.delete_task(actor=self.actor, task_id=self._task_id(entry))  # type: ignore[arg-type]

        return run

    # --- administrators (never a password: a new one gets a generated password) ----------
    def _grants(self, scopes: list[dict[str, Any]]) -> list[admins.Grant]:
        grants = []
        for scope in scopes:
            org_id, dept_id = self.place(scope["to"])
            grants.append(
                admins.Grant(org_id, dept_id, frozenset(CertType(t) for t in scope["types"]))
            )
        return grants

    def _admins(self, wanted: list[dict[str, Any]]) -> None:
        for entry in wanted:
            login = entry["login"]
            now = self.current["admins"].get(key_of(login))
            if "scopes" not in entry:
                entry = dict(entry, scopes=now["scopes"] if now else [])
            if now is None:
                password = secrets.token_urlsafe(24)
                with self.change("create", "admin", login, (entry["role"],)):
                    admins.create_admin(
                        actor=self.actor,
                        login=login,
                        email=entry["email"],
                        role=Role(entry["role"]),
                        password=password,
                        full_name=entry["full_name"],
                        grants=self._grants(entry["scopes"]),
                    )
                self.outcome.passwords[login] = password
                continue
            details = _diff(now, entry, ("email", "full_name", "role", "active", "scopes"))
            if details:
                with self.change("update", "admin", login, details):
                    admins.update_admin(
                        actor=self.actor,  # type: ignore[arg-type]
                        admin_id=self.one(Admin.id, func.lower(Admin.login) == key_of(login)),
                        email=entry["email"],
                        full_name=entry["full_name"],
                        role=Role(entry["role"]),
                        active=entry["active"],
                        grants=self._grants(entry["scopes"]),
                    )
        for entry in self.unlisted("admins"):
            self.later(DELETE_ORDER["admin"], self._delete_admin(entry["login"]))

    def _delete_admin(self, login: str) -> Callable[[], None]:
        def run() -> None:
            with self.change("delete", "admin", login):
                admins.delete_admin(
                    actor=self.actor,  # type: ignore[arg-type]
                    admin_id=self.one(Admin.id, func.lower(Admin.login) == key_of(login)),
                )

        return run
