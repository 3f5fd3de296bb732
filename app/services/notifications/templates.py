"""An organization's own wording of its notification mails, per type (and digest), kept with
its portal mail templates (mail_templates, Settings > Organizations > Email Template).

Kind names: ``notice.<type>`` (one mail per notice) and ``digest.<type>`` (the daily
digest), e.g. ``notice.ssl_expiration``. A template has a subject, a plain-text part and an
optional HTML part (empty: made from the plain text). Templates run in the bounded sandbox
(app/notices/sandbox.py); the HTML part escapes every value; a template that names a value
the notice does not have is refused when saved (the message lists the values there are),
and one that fails at send time gives way to the built-in template. Links in the values
point at CW_BASE_URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import CertType, MailTemplate, NotificationType, Organization
from app.models.types import utcnow
from app.notices import digest, text
from app.services import audit
from app.services.errors import NotFound, ValidationFailed
from app.services.scope import Actor, manageable_org

MAX_TEMPLATE = 20_000


@dataclass(frozen=True)
class NoticeKind:
    key: str
    label: str
    type: NotificationType
    digest: bool

    @property
    def family(self) -> str:
        base = "expiry" if self.type.is_expiry else "event"
        return f"{base}_digest" if self.digest else base

    @property
    def built_in(self) -> text.TemplateSet:
        return text.BUILT_IN[self.family]


def kind_key(kind: NotificationType, digest_mode: bool) -> str:
    return f"{'digest' if digest_mode else 'notice'}.{kind.value}"


KINDS: dict[str, NoticeKind] = {
    kind_key(t, d): NoticeKind(kind_key(t, d), f"{t.label}{' (daily digest)' if d else ''}", t, d)
    for t in NotificationType
    for d in (False, True)
}

# The values a template may use, per family (what compose.build gives every template).
_COMMON = ("rule.name", "rule.type_label", "base_url", "escalation", "escalation_hours",
           "digest", "preference_url")  # fmt: skip
_CERT = ("common_name", "type_label", "not_after", "when", "days_left", "threshold",
         "serial", "issuer", "organization", "department", "url", "ack_url")  # fmt: skip
_EVENT = ("type_label", "label", "at", "actor", "lines", "facts", "url")
VARIABLES: dict[str, tuple[str, ...]] = {
    "expiry": (*_COMMON, *(f"c.{v}" for v in _CERT)),
    "expiry_digest": (*_COMMON, "count", "summary", "groups (heading, items: c.*)"),
    "event": (*_COMMON, *(f"e.{v}" for v in _EVENT)),
    "event_digest": (*_COMMON, "count", "groups (heading, items: e.*)"),
}


@dataclass(frozen=True)
class Stored:
    templates: text.TemplateSet
    custom: bool


def _kind(kind: str) -> NoticeKind:
    if kind not in KINDS:
        raise NotFound("No such notification template.")
    return KINDS[kind]


def _row(organization_id: int, kind: str) -> MailTemplate | None:
    return db.session.execute(
        select(MailTemplate).where(
            MailTemplate.organization_id == organization_id, MailTemplate.kind == kind
        )
    ).scalar_one_or_none()


def template_of(organization_id: int | None, kind: str) -> Stored:
    """The organization's template of this kind, else the built-in one."""
    spec = _kind(kind)
    found = _row(organization_id, kind) if organization_id is not None else None
    if found is None:
        return Stored(spec.built_in, False)
    return Stored(text.TemplateSet(found.subject, found.body, found.html or ""), True)


class Lookup:
    """The templates of one composing batch: each (organization, kind) read once."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], text.TemplateSet | None] = {}

    def custom(
        self, organization_id: int | None, kind: NotificationType, digest_mode: bool
    ) -> text.TemplateSet | None:
        if organization_id is None:
            return None
        key = (organization_id, kind_key(kind, digest_mode))
        if key not in self._seen:
            found = _row(*key)
            self._seen[key] = (
                text.TemplateSet(found.subject, found.body, found.html or "")
                if found is not None
                else None
            )
        return self._seen[key]


# --- sample values (preview, and the check when saving) ----------------------------------


def sample_context(spec: NoticeKind, org: Organization) -> dict[str, Any]:
    base = str(current_app.config["CW_BASE_URL"])
    kind = spec.type.expiry_type or CertType.SSL
    context: dict[str, Any] = {
        "rule": {
            "id": 1,
            "name": f"{spec.type.label} ({org.name})",
            "type": spec.type.value,
            "type_label": spec.type.label,
        },
        "base_url": base,
        "escalation": False,
        "escalation_hours": 0,
        "digest": spec.digest,
        "preference_url": f"{base}/notifications/preference/1/sample-token",
    }
    if spec.type.is_expiry:
        items = [
            {
                "id": n,
                "common_name": cn,
                "serial": "1f2e3d4c5b6a7988",
                "issuer": "Example Issuing CA",
                "organization": org.name,
                "department": "",
                "type": kind.value,
                "type_label": kind.label,
                "not_after": (utcnow() + timedelta(days=days)).strftime("%Y-%m-%d %H:%M UTC"),
                "days_left": days,
                "when": f"expires in {days} days",
                "threshold": threshold,
                "url": f"{base}/admin/{kind.value}_certs/details/?id={n}",
                "ack_url": f"{base}/notifications/ack/{n}/sample-token",
            }
            for n, cn, days, threshold in (
                (1, "www.example.com", 6, 7),
                (2, "mail.example.com", 25, 30),
            )
        ]
        if not spec.digest:
            items = items[:1]
        grouped = digest.by_threshold(items)
        context.update(
            c=items[0], groups=grouped, count=len(items), summary=digest.summary(grouped)
        )
    else:
        events = [
            {
                "id": 1,
                "type": spec.type.value,
                "type_label": spec.type.label,
                "label": "www.example.com",
                "at": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
                "actor": "jdoe",
                "facts": {"Serial": "1f2e3d4c5b6a7988"},
                "lines": ["Serial: 1f2e3d4c5b6a7988"],
                "url": f"{base}/admin/ssl_certs/details/?id=1",
            }
        ]
        context.update(e=events[0], groups=digest.by_type(events), count=len(events))
    return context


def _checked(
    spec: NoticeKind, org: Organization, subject: str, body: str, html: str
) -> text.Rendered:
    errors: dict[str, list[str]] = {}
    if not subject.strip():
        errors["subject"] = ["The subject is required."]
    if not body.strip():
        errors["body"] = ["The plain-text part is required."]
    if len(subject) > 256:
        errors["subject"] = ["A subject template is at most 256 characters."]
    for field, value in (("body", body), ("html", html)):
        if len(value) > MAX_TEMPLATE:
            errors[field] = [f"A template is at most {MAX_TEMPLATE} characters."]
    if errors:
        raise ValidationFailed(errors)
    templates = text.TemplateSet(subject, body, html)
    try:
        text.check(templates)
        return text.render(templates, sample_context(spec, org), strict=True)
    except text.NoticeTemplateError as exc:
        known = ", ".join(VARIABLES[spec.family])
        raise ValidationFailed(
            {"body": [f"The template cannot be rendered: {exc}. Values you can use: {known}."]}
        ) from exc


def preview(
    *, actor: Actor, organization_id: int, kind: str, subject: str, body: str, html: str
) -> text.Rendered:
    """Render a template (as typed, not yet saved) with sample values.

    Raises:
        ValidationFailed: too long, does not parse, or names a value the notice lacks.
    """
    org = manageable_org(actor, organization_id)
    return _checked(_kind(kind), org, subject, body, html)


def save_template(
    *, actor: Actor, organization_id: int, kind: str, subject: str, body: str, html: str = ""
) -> MailTemplate:
    """Store the organization's wording of a notice after rendering it once with samples."""
    org = manageable_org(actor, organization_id)
    spec = _kind(kind)
    _checked(spec, org, subject, body, html)
    found = _row(org.id, kind)
    before = {"subject": found.subject, "body": found.body, "html": found.html} if found else None
    if found is None:
        found = MailTemplate(organization_id=org.id, kind=kind, subject="", body="", html="")
        db.session.add(found)
    found.subject, found.body, found.html = subject.strip(), body, html
    found.updated_at, found.updated_by_id = utcnow(), actor.id
    db.session.flush()
    audit.record(
        action="mail_template.save",
        actor=actor,
        object_type="MailTemplate",
        object_id=found.id,
        label=f"{org.name}: {spec.label}",
        before=before,
        after={"subject": found.subject, "body": found.body, "html": found.html},
        organization_id=org.id,
    )
    return found


def reset_template(*, actor: Actor, organization_id: int, kind: str) -> None:
    """Go back to the built-in template."""
    org = manageable_org(actor, organization_id)
    spec = _kind(kind)
    found = _row(org.id, kind)
    if found is None:
        return
    audit.record(
        action="mail_template.reset",
        actor=actor,
        object_type="MailTemplate",
        object_id=found.id,
        label=f"{org.name}: {spec.label}",
        before={"subject": found.subject, "body": found.body, "html": found.html},
        organization_id=org.id,
    )
    db.session.delete(found)


def custom_kinds(organization_id: int) -> set[str]:
    return {
        k
        for k in db.session.execute(
            select(MailTemplate.kind).where(
                MailTemplate.organization_id == organization_id,
                MailTemplate.kind.in_(list(KINDS)),
            )
        ).scalars()
    }
