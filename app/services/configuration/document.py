"""A configuration document: YAML in (safe_load only), checked and brought to one canonical
shape that the database's state (state.py) is read into as well, so the two compare field by
field. Every problem is reported at once, with where it is ("profiles[2].terms: ...").

Sections and the keys ``departments``, ``delegations``, ``scopes`` and ``rules`` are
authoritative when present (what the file leaves out of them is deleted) and left alone when
absent. Other keys left out take their default (an empty address line, approval required).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from app import recurrence
from app.models import CertType, DelegationStatus, LintMode, Role
from app.pki import keys
from app.pki.errors import PkiError
from app.pki.profiles import SignatureHash
from app.scan import settings
from app.services.ca.profiles import ACME_SLUG
from app.services.errors import DomainError
from app.services.notifications.templates import KINDS as NOTICE_KINDS
from app.services.persons.invitations import DEFAULT_DAYS, MAX_DAYS
from app.services.persons.mailing import KINDS as MAIL_KINDS
from app.services.structure.domains import normalize_domain

VERSION = 1
# In the order apply creates things (deletes go the other way).
SECTIONS = (
    "organizations",
    "authorities",
    "profiles",
    "domains",
    "assignment_rules",
    "discovery_tasks",
    "admins",
)
ORG_TEXT = ("address1", "address2", "address3", "city", "state", "postal_code")
TYPE_NAMES = {t.value: t for t in CertType} | {"code-signing": CertType.CODE_SIGNING}
APPROVAL = ("required", "automatic")
# Read from the database and written by export, never applied: a new CA gets a new key.
CA_READ_ONLY = ("status", "subject", "not_before", "not_after", "serial", "certificate")

Doc = dict[str, Any]


class DocumentError(DomainError):
    """A configuration file that cannot be applied; ``lines`` has one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(f"The configuration has {len(lines)} problem(s).", field="file")
        self.lines = lines


def load(text: str) -> Doc:
    """Parse YAML text (safe_load: plain data only) and check it.

    Raises:
        DocumentError: the YAML is malformed or describes an invalid configuration.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DocumentError([f"not valid YAML: {exc}"]) from exc
    return check(data if data is not None else {})


class _Dumper(yaml.SafeDumper):
    """Multi-line text (mail templates) as literal blocks, the way a person writes it;
    PyYAML quotes it instead where a block cannot hold it exactly."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: Doc, *, header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


class _Reader:
    """Collects problems while reading one document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, "expected a mapping (key: value)")
            return {}
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        return dict(value)

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, "expected a list")
            return []
        return value

    def text(self, data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(where, f"'{key}' is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(f"{where}.{key}", "expected text")
            return ""
        text = str(value).strip()
        if required and not text:
            self.fail(where, f"'{key}' is required")
        return text

    def flag(self, data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", "expected true or false")
            return default
        return value

    def number(
        self, data: Mapping[str, Any], key: str, where: str, default: Any, kind: Callable[..., Any]
    ) -> Any:
        value = data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{where}.{key}", "expected a number")
            return default
        return kind(value)

    def types(self, value: Any, where: str) -> list[str]:
        found = []
        for item in self.items(value, where):
            name = str(item).strip().lower()
            if name not in TYPE_NAMES:
                self.fail(
                    where, f"'{item}' is not a certificate type (ssl, client, code_signing, device)"
                )
                continue
            found.append(TYPE_NAMES[name].value)
        if not found and not any(p.startswith(where) for p in self.problems):
            self.fail(where, "give at least one certificate type")
        return sorted(set(found))

    def place(self, value: Any, where: str) -> str:
        """'Org' or 'Org/Dept', spaces around the slash removed."""
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected 'Organization' or 'Organization/Department'")
            return ""
        org, _, dept = value.partition("/")
        return f"{org.strip()}/{dept.strip()}" if dept.strip() else org.strip()


def key_of(name: str) -> str:
    """Names are matched case-insensitively, as the services compare them."""
    return name.strip().lower()


def check(data: Any) -> Doc:
    """The canonical document; raises DocumentError with every problem."""
    r = _Reader()
    top = r.mapping(data, "(top)", ("version", *SECTIONS))
    if top.get("version", VERSION) != VERSION:
        r.fail("version", f"this Certwright reads version {VERSION}")
    out: Doc = {}
    readers: dict[str, Callable[[_Reader, Any, str], dict[str, Any]]] = {
        "organizations": _organization,
        "authorities": _authority,
        "profiles": _profile,
        "domains": _domain,
        "assignment_rules": _rule,
        "discovery_tasks": _task,
        "admins": _admin,
    }
    for section in SECTIONS:
        if section not in top:
            continue
        entries: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, raw in enumerate(r.items(top[section], section)):
            entry = readers[section](r, raw, f"{section}[{i}]")
            ident = identity(section, entry)
            if ident in seen:
                r.fail(f"{section}[{i}]", f"'{display(section, entry)}' is listed twice")
            seen.add(ident)
            entries.append(entry)
        out[section] = entries
    if r.problems:
        raise DocumentError(r.problems)
    return out


def identity(section: str, entry: Mapping[str, Any]) -> str:
    """What an entry is matched by: its name (rules: with their place; tasks: their owner)."""
    if section == "assignment_rules":
        return f"{key_of(entry['to'])}|{key_of(entry['name'])}"
    if section == "discovery_tasks":
        return f"{key_of(entry.get('organization') or '')}|{key_of(entry['name'])}"
    if section == "admins":
        return key_of(entry["login"])
    return key_of(entry["name"])


def display(section: str, entry: Mapping[str, Any]) -> str:
    if section == "assignment_rules":
        return f"{entry['name']} ({entry['to']})"
    if section == "discovery_tasks" and entry.get("organization"):
        return f"{entry['name']} ({entry['organization']})"
    return str(entry.get("login") or entry["name"])


def _organization(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(
        raw,
        where,
        ("name", "country", *ORG_TEXT, "departments", "portal", "notification_templates"),
    )
    org: dict[str, Any] = {"name": r.text(data, "name", where, required=True)}
    for key in ORG_TEXT:
        org[key] = r.text(data, key, where)
    org["country"] = r.text(data, "country", where, required=True).upper()
    if "departments" in data:
        names = [str(d).strip() for d in r.items(data["departments"], f"{where}.departments")]
        if len({key_of(n) for n in names}) != len(names):
            r.fail(f"{where}.departments", "a department is listed twice")
        org["departments"] = sorted(names, key=key_of)
    if "portal" in data:
        org["portal"] = _portal(r, data["portal"], f"{where}.portal")
    if "notification_templates" in data:
        org["notification_templates"] = _notification_templates(
            r, data["notification_templates"], f"{where}.notification_templates"
        )
    return org


def _notification_templates(r: _Reader, raw: Any, where: str) -> dict[str, dict[str, str]]:
    """The organization's own notification templates by kind (``notice.<type>``,
    ``digest.<type>``): subject, text, html (optional). Authoritative when present (a kind
    left out goes back to the built-in template); rendering is checked by the notification
    template service at plan and apply."""
    templates = r.mapping(raw or {}, where, tuple(NOTICE_KINDS))
    out: dict[str, dict[str, str]] = {}
    for kind in NOTICE_KINDS:  # in a fixed order, as the database is read
        if kind not in templates:
            continue
        at = f"{where}.{kind}"
        entry = r.mapping(templates[kind], at, ("subject", "text", "html"))
        subject = r.text(entry, "subject", at, required=True)
        parts = {}
        for part in ("text", "html"):
            value = entry.get(part, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                r.fail(f"{at}.{part}", "expected text")
                value = ""
            parts[part] = value
        if not parts["text"].strip():
            r.fail(at, "'text' is required (the plain-text part)")
        out[kind] = {"subject": subject, "text": parts["text"], "html": parts["html"]}
    return out


def _portal(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    """The organization's enrollment portal settings: how long invitation codes stay
    valid (default 7 days) and its own wording of the portal mails. ``mail_templates``
    is authoritative when present (a kind it leaves out goes back to the built-in
    wording) and left alone when absent. Whether a template renders is checked by the
    mail service itself, at plan and at apply."""
    data = r.mapping(raw, where, ("invitation_days", "mail_templates"))
    days = data.get("invitation_days", DEFAULT_DAYS)
    if isinstance(days, bool) or not isinstance(days, int):
        r.fail(f"{where}.invitation_days", "expected a whole number of days")
        days = DEFAULT_DAYS
    elif not 1 <= days <= MAX_DAYS:
        r.fail(f"{where}.invitation_days", f"between 1 and {MAX_DAYS} days, not {days}")
    portal: dict[str, Any] = {"invitation_days": days}
    if "mail_templates" not in data:
        return portal
    templates = r.mapping(
        data["mail_templates"] or {}, f"{where}.mail_templates", tuple(MAIL_KINDS)
    )
    portal["mail_templates"] = {}
    for kind in MAIL_KINDS:  # in a fixed order, as the database is read
        if kind not in templates:
            continue
        at = f"{where}.mail_templates.{kind}"
        entry = r.mapping(templates[kind], at, ("subject", "body"))
        subject = r.text(entry, "subject", at, required=True)
        body = entry.get("body")
        if not isinstance(body, str) or not body.strip():
            r.fail(at, "'body' is required (text)")
            body = ""
        portal["mail_templates"][kind] = {"subject": subject, "body": body}
    return portal


def _canonical_key_type(r: _Reader, value: str, where: str) -> str:
    try:
        return str(keys.parse_key_type(value))
    except PkiError as exc:
        r.fail(where, str(exc))
        return value


# What an issuing CA issues (its extendedKeyUsage), as the file may spell it.
CA_PURPOSES = {"tls": "TLS", "smime": "SMIME", "codesigning": "CodeSigning", "device": "Device"}


def _authority(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(
        raw,
        where,
        (
            "name",
            "customer",
            "key_type",
            "signature_hash",
            "parent",
            "city",
            "state",
            "country",
            "lifetime_years",
            "fingerprint",
            "purpose",
            *CA_READ_ONLY,
        ),
    )
    ca: dict[str, Any] = {
        "name": r.text(data, "name", where, required=True),
        "customer": r.text(data, "customer", where, required=True),
        "key_type": _canonical_key_type(
            r, r.text(data, "key_type", where, required=True), f"{where}.key_type"
        ),
    }
    hash_name = r.text(data, "signature_hash", where)
    if hash_name:
        try:
            hash_name = SignatureHash(hash_name.upper()).value
        except ValueError:
            r.fail(f"{where}.signature_hash", f"'{hash_name}' is not SHA-256, SHA-384 or SHA-512")
    ca["signature_hash"] = hash_name or None
    ca["parent"] = r.text(data, "parent", where) or None
    ca["city"] = r.text(data, "city", where)
    ca["state"] = r.text(data, "state", where)
    ca["country"] = r.text(data, "country", where).upper()
    ca["lifetime_years"] = r.number(data, "lifetime_years", where, None, int)
    ca["fingerprint"] = r.text(data, "fingerprint", where).replace(":", "").lower() or None
    purpose = r.text(data, "purpose", where)
    ca["purpose"] = None
    if purpose:
        ca["purpose"] = CA_PURPOSES.get(purpose.lower().replace("_", "").replace("/", ""))
        if ca["purpose"] is None:
            r.fail(f"{where}.purpose", f"'{purpose}' is not tls, smime, codesigning or device")
    return ca


def _profile(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(
        raw,
        where,
        (
            "name",
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
        ),
    )
    types = r.types([data.get("type")] if "type" in data else [], f"{where}.type")
    terms = []
    for term in r.items(data.get("terms"), f"{where}.terms"):
        if isinstance(term, bool) or not isinstance(term, int) or term < 1:
            r.fail(f"{where}.terms", f"'{term}' is not a whole number of days")
        else:
            terms.append(term)
    key_types = [
        _canonical_key_type(r, str(k), f"{where}.key_types")
        for k in r.items(data.get("key_types"), f"{where}.key_types")
    ]
    approval = r.text(data, "approval", where) or "required"
    if approval not in APPROVAL:
        r.fail(f"{where}.approval", "expected 'required' or 'automatic'")
    acme_directory = r.text(data, "acme_directory", where).lower()
    if acme_directory and not ACME_SLUG.fullmatch(acme_directory):
        r.fail(
            f"{where}.acme_directory",
            "an ACME directory name is 1 to 63 lower-case letters, digits and hyphens",
        )
    lint = r.text(data, "lint", where) or LintMode.EVERY.value
    if lint not in {m.value for m in LintMode}:
        r.fail(f"{where}.lint", "expected 'every' or 'sample'")
    return {
        "name": r.text(data, "name", where, required=True),
        "description": r.text(data, "description", where),
        "type": types[0] if types else "",
        "ca": r.text(data, "ca", where, required=True),
        "terms": sorted(set(terms)),
        "key_types": sorted(set(key_types)),
        "approval": approval,
        "four_eyes": r.flag(data, "four_eyes", where, False),
        "key_reuse": r.flag(data, "key_reuse", where, True),
        "client_auth": r.flag(data, "client_auth", where, False),
        "server_auth": r.flag(data, "server_auth", where, False),
        "key_escrow": r.flag(data, "key_escrow", where, False),
        "legacy_pkcs12": r.flag(data, "legacy_pkcs12", where, False),
        "lint": lint,
        "lint_sample": r.number(data, "lint_sample", where, 100, int),
        "acme_directory": acme_directory,
        "active": r.flag(data, "active", where, True),
    }


def _domain(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(raw, where, ("name", "description", "active", "delegations"))
    domain: dict[str, Any] = {
        "name": r.text(data, "name", where, required=True),
        "description": r.text(data, "description", where),
        "active": r.flag(data, "active", where, True),
    }
    if domain["name"]:
        try:
            domain["name"] = normalize_domain(domain["name"])
        except DomainError as exc:
            r.fail(f"{where}.name", exc.message)
    if "delegations" in data:
        delegations = []
        for j, item in enumerate(r.items(data["delegations"], f"{where}.delegations")):
            at = f"{where}.delegations[{j}]"
            d = r.mapping(item, at, ("to", "types", "status"))
            status = r.text(d, "status", at) or DelegationStatus.APPROVED.value
            if status not in {s.value for s in DelegationStatus}:
                r.fail(f"{at}.status", "expected Approved, Requested or Rejected")
            delegations.append(
                {
                    "to": r.place(d.get("to"), f"{at}.to"),
                    "types": r.types(d.get("types"), f"{at}.types"),
                    "status": status,
                }
            )
        places = [key_of(d["to"]) for d in delegations]
        if len(set(places)) != len(places):
            r.fail(f"{where}.delegations", "the same organization/department is listed twice")
        domain["delegations"] = sorted(delegations, key=lambda d: key_of(d["to"]))
    return domain


def _rule(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(raw, where, ("name", "to", "match", "conditions"))
    match = r.text(data, "match", where) or "all"
    if match not in ("all", "any"):
        r.fail(f"{where}.match", "expected 'all' or 'any'")
    conditions = []
    for j, item in enumerate(r.items(data.get("conditions"), f"{where}.conditions")):
        at = f"{where}.conditions[{j}]"
        c = r.mapping(item, at, ("field", "operator", "value"))
        conditions.append(
            {
                "field": r.text(c, "field", at, required=True),
                "operator": r.text(c, "operator", at, required=True),
                "value": r.text(c, "value", at, required=True),
            }
        )
    return {
        "name": r.text(data, "name", where, required=True),
        "to": r.place(data.get("to"), f"{where}.to"),
        "match": match,
        "conditions": conditions,
    }


def _lines(r: _Reader, value: Any, where: str) -> str:
    """A list of entries (or text, one per line) as the newline-separated text tasks keep."""
    if value is None:
        return ""
    if isinstance(value, str):
        parts = value.replace(",", "\n").splitlines()
    elif isinstance(value, list):
        parts = [str(v) for v in value]
    else:
        r.fail(where, "expected a list or text")
        return ""
    return "\n".join(p.strip() for p in parts if p.strip())


def _task(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(
        raw,
        where,
        (
            "name",
            "organization",
            "description",
            "ranges",
            "ports",
            "host_overrides",
            "connect_timeout",
            "handshake_timeout",
            "concurrency",
            "schedule",
            "rules",
        ),
    )
    schedule = data.get("schedule", {"kind": "manual"})
    if isinstance(schedule, str):
        schedule = {"kind": schedule}
    try:
        schedule = recurrence.parse_schedule(schedule).to_dict()
    except (recurrence.ScheduleError, AttributeError) as exc:
        r.fail(f"{where}.schedule", str(exc))
    ports = data.get("ports", settings.PORTS)
    if isinstance(ports, list):
        ports = ",".join(str(p) for p in ports)
    task: dict[str, Any] = {
        "name": r.text(data, "name", where, required=True),
        "organization": r.text(data, "organization", where) or None,
        "description": r.text(data, "description", where),
        "ranges": _lines(r, data.get("ranges"), f"{where}.ranges"),
        "ports": str(ports).replace(" ", ""),
        "host_overrides": _lines(r, data.get("host_overrides"), f"{where}.host_overrides"),
        "connect_timeout": r.number(
            data, "connect_timeout", where, settings.CONNECT_TIMEOUT, float
        ),
        "handshake_timeout": r.number(
            data, "handshake_timeout", where, settings.HANDSHAKE_TIMEOUT, float
        ),
        "concurrency": r.number(data, "concurrency", where, settings.CONCURRENCY, int),
        "schedule": schedule,
    }
    if not task["ranges"]:
        r.fail(where, "'ranges' is required")
    if "rules" in data:
        rules = []
        for j, item in enumerate(r.items(data["rules"], f"{where}.rules")):
            at = f"{where}.rules[{j}]"
            ref = r.mapping(item, at, ("name", "to"))
            rules.append(
                {"name": r.text(ref, "name", at, required=True), "to": r.place(ref.get("to"), at)}
            )
        task["rules"] = rules
    return task


def _admin(r: _Reader, raw: Any, where: str) -> dict[str, Any]:
    data = r.mapping(raw, where, ("login", "email", "full_name", "role", "active", "scopes"))
    role = r.text(data, "role", where, required=True).upper()
    if role and role not in {x.value for x in Role}:
        r.fail(f"{where}.role", "expected MRAO, RAO or DRAO")
    admin: dict[str, Any] = {
        "login": r.text(data, "login", where, required=True),
        "email": r.text(data, "email", where, required=True),
        "full_name": r.text(data, "full_name", where),
        "role": role,
        "active": r.flag(data, "active", where, True),
    }
    if "scopes" in data:
        scopes = []
        for j, item in enumerate(r.items(data["scopes"], f"{where}.scopes")):
            at = f"{where}.scopes[{j}]"
            s = r.mapping(item, at, ("to", "types"))
            scopes.append(
                {"to": r.place(s.get("to"), f"{at}.to"), "types": r.types(s.get("types"), at)}
            )
        admin["scopes"] = sorted(scopes, key=lambda s: key_of(s["to"]))
    return admin
