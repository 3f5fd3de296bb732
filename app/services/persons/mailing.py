"""The portal's mails (invitation, registration complete, renewal): each organization may
word them itself (Settings > Organizations > Email Template); built-in wording otherwise.

Templates are Jinja in a sandbox (no attribute access to internals, no imports, ranges of
at most MAX_RANGE items) over plain string values. Mail is sent as text/plain, so values are inserted as
they are except for control characters, which are removed (a name cannot add lines or
headers); a template that names an unknown value is refused when saved.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.exceptions import SecurityError
from sqlalchemy import select

from app.extensions import db
from app.models import MailTemplate, Organization, OutboxMessage
from app.models.types import utcnow
from app.notices import sandbox
from app.services import audit
from app.services.errors import NotFound, ValidationFailed
from app.services.platform import mail
from app.services.scope import Actor, manageable_org

MAX_TEMPLATE = 20_000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


@dataclass(frozen=True)
class Kind:
    label: str
    subject: str
    body: str
    variables: tuple[str, ...]


_PERSON = ("first_name", "last_name", "full_name", "email", "organization", "department")
KINDS: dict[str, Kind] = {
    "invitation": Kind(
        "Invitation",
        "Your client certificate from {{ organization }}",
        """Hello {{ first_name }},

{{ organization }} invites you to collect your personal client certificate
(email signing and encryption, and sign-in with a certificate) for {{ email }}.

1. Open {{ link }}
2. Enter your one-time code: {{ code }}
3. Choose a password for the certificate file and a passphrase for later renewal
   or revocation, accept the subscriber agreement, and download your certificate.

The code works once and until {{ expires }}. If you did not expect this message,
ignore it and tell {{ organization }}.
""",
        (*_PERSON, "link", "code", "expires"),
    ),
    "registration_complete": Kind(
        "Registration complete",
        "Your client certificate is ready",
        """Hello {{ first_name }},

your client certificate for {{ email }} has been issued
(serial {{ serial }}, valid until {{ not_after }}).

Download it once from the page you registered on; if you closed it, open
{{ link }}
The file is protected by the password you chose. To revoke or renew the certificate
later, use {{ portal }} with your email address and your passphrase.
""",
        (*_PERSON, "serial", "not_after", "link", "portal"),
    ),
    "renewal": Kind(
        "Renewal",
        "Renew your client certificate",
        """Hello {{ first_name }},

you asked to renew your client certificate for {{ email }}
(serial {{ serial }}, valid until {{ not_after }}).

1. Open {{ link }}
2. Enter your one-time code: {{ code }}
3. Choose a password for the new certificate file and download it.

Your current certificate is revoked when you have downloaded the new one. The code
works once and until {{ expires }}. If you did not ask for this, ignore this message.
""",
        (*_PERSON, "serial", "not_after", "link", "code", "expires"),
    ),
}


MAX_RANGE = sandbox.MAX_RANGE


_ENV = sandbox.BoundedSandbox(
    autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
)
MAX_OUTPUT = 100_000


def clean_value(value: object) -> str:
    """A value as the mail shows it: a single line without control characters."""
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", str(value)))


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    """A template's compiled form, by its text (which alone decides what it compiles to):
    compiling costs far more than rendering, and every registration's job and every
    invitation mailed compiled the same two templates again (cProfile)."""
    return _ENV.from_string(source)


def _render(subject: str, body: str, context: Mapping[str, object]) -> tuple[str, str]:
    values = {k: clean_value(v) for k, v in context.items()}
    rendered_subject = _compiled(subject).render(values)
    rendered_body = _compiled(body).render(values)
    if len(rendered_body) > MAX_OUTPUT:
        raise SecurityError(f"a rendered mail is at most {MAX_OUTPUT} characters")
    return clean_value(rendered_subject).strip()[:256], rendered_body


def template_of(organization_id: int | None, kind: str) -> tuple[str, str, bool]:
    """(subject, body, customised) for the organization, the built-in one by default."""
    found = (
        db.session.execute(
            select(MailTemplate).where(
                MailTemplate.organization_id == organization_id, MailTemplate.kind == kind
            )
        ).scalar_one_or_none()
        if organization_id is not None
        else None
    )
    if found is not None:
        return found.subject, found.body, True
    return KINDS[kind].subject, KINDS[kind].body, False


def send(
    *,
    kind: str,
    organization_id: int,
    to: str,
    context: Mapping[str, object],
    department_id: int | None = None,
    template: tuple[str, str, bool] | None = None,
) -> OutboxMessage:
    """Render the organization's template of ``kind`` and queue the mail (after commit),
    placed in the person's organization/department: the outbox shows it only to whoever
    may see that place (it holds one-time codes).

    A customised template that no longer renders (it was valid when saved) falls back to
    the built-in wording rather than leave the person without the mail.

    ``template``: what template_of(organization_id, kind) returned, for a caller mailing
    many people of one organization in one transaction."""
    subject, body, custom = template or template_of(organization_id, kind)
    try:
        rendered = _render(subject, body, context)
    except TemplateError:
        if not custom:
            raise
        rendered = _render(KINDS[kind].subject, KINDS[kind].body, context)
    return mail.send_mail(
        to=[to],
        subject=rendered[0],
        body=rendered[1],
        category=f"portal.{kind}",
        organization_id=organization_id,
        department_id=department_id,
    )


def sample_context(kind: str, organization: Organization) -> dict[str, str]:
    sample = {
        "first_name": "Jane",
        "last_name": "Doe",
        "full_name": "Jane Doe",
        "email": "jane.doe@example.com",
        "organization": organization.name,
        "department": "",
        "link": "https://certwright.example/enroll/register?email=jane.doe%40example.com",
        "portal": "https://certwright.example/portal/",
        "code": "ABCD-EFGH-JKLM-NPQR-STUV-WXYZ-2345-6789",
        "expires": "2030-01-07 12:00 UTC",
        "serial": "1f2e3d4c5b6a",
        "not_after": "2031-01-01",
    }
    return {name: sample[name] for name in KINDS[kind].variables}


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise NotFound("No such mail template.")
    return KINDS[kind]


def preview(
    *, actor: Actor, organization_id: int, kind: str, subject: str, body: str
) -> tuple[str, str]:
    """Render a template (as typed, not yet saved) with sample values.

    Raises:
        ValidationFailed: the template is too long, does not parse, or names a value
            the mail does not have.
    """
    org = manageable_org(actor, organization_id)
    return _checked(kind, org, subject, body)


def _checked(kind: str, org: Organization, subject: str, body: str) -> tuple[str, str]:
    spec = _kind(kind)
    errors: dict[str, list[str]] = {}
    if not subject.strip():
        errors["subject"] = ["The subject is required."]
    if not body.strip():
        errors["body"] = ["The body is required."]
    if len(body) > MAX_TEMPLATE or len(subject) > 256:
        errors["body"] = [f"A template is at most {MAX_TEMPLATE} characters (subject 256)."]
    if errors:
        raise ValidationFailed(errors)
    try:
        return _render(subject, body, sample_context(kind, org))
    except TemplateError as exc:
        known = ", ".join(spec.variables)
        raise ValidationFailed(
            {"body": [f"The template cannot be rendered: {exc}. Values you can use: {known}."]}
        ) from exc


def save_template(
    *, actor: Actor, organization_id: int, kind: str, subject: str, body: str
) -> MailTemplate:
    """Store the organization's wording of a mail after rendering it once with samples."""
    org = manageable_org(actor, organization_id)
    _checked(kind, org, subject, body)
    found = db.session.execute(
        select(MailTemplate).where(
            MailTemplate.organization_id == org.id, MailTemplate.kind == kind
        )
    ).scalar_one_or_none()
    before = {"subject": found.subject, "body": found.body} if found else None
    if found is None:
        found = MailTemplate(organization_id=org.id, kind=kind, subject="", body="")
        db.session.add(found)
    found.subject, found.body = subject.strip(), body
    found.updated_at, found.updated_by_id = utcnow(), actor.id
    db.session.flush()
    audit.record(
        action="mail_template.save",
        actor=actor,
        object_type="MailTemplate",
        object_id=found.id,
        label=f"{org.name}: {KINDS[kind].label}",
        before=before,
        after={"subject": found.subject, "body": found.body},
        organization_id=org.id,
    )
    return found


def reset_template(*, actor: Actor, organization_id: int, kind: str) -> None:
    """Go back to the built-in wording."""
    org = manageable_org(actor, organization_id)
    _kind(kind)
    found = db.session.execute(
        select(MailTemplate).where(
            MailTemplate.organization_id == org.id, MailTemplate.kind == kind
        )
    ).scalar_one_or_none()
    if found is None:
        return
    audit.record(
        action="mail_template.reset",
        actor=actor,
        object_type="MailTemplate",
        object_id=found.id,
        label=f"{org.name}: {KINDS[kind].label}",
        before={"subject": found.subject, "body": found.body},
        organization_id=org.id,
    )
    db.session.delete(found)


def template_context(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in values.items()}
