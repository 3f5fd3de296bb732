"""What an issuance batch tells people: one audit event per organization/department listing
every certificate (searchable by id, serial and name), and one collection mail per set of
recipients with a download link per certificate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from app.models import CertType, RequestMode
from app.models.notifications import NotificationType
from app.services import audit
from app.services.notifications import events
from app.services.platform import mail
from app.services.scope import SYSTEM

Request = Row[Any]  # a request row as app.services.certificates.issuance reads it


@dataclass(frozen=True)
class Issued:
    """One certificate this batch stored, for its audit record and collection mail."""

    req: Request
    cert_id: int
    serial_hex: str
    ca_id: int
    token: str


def audit_issued(done: Sequence[Issued]) -> None:
    """One audit event per organization/department of the batch, listing every certificate
    (id, request, serial, names) in its after-values and, searchably, in its message."""
    groups: dict[tuple[int, int | None], list[Issued]] = defaultdict(list)
    for item in done:
        groups[(item.req.organization_id, item.req.department_id)].append(item)
    for (org_id, dept_id), items in groups.items():
        first = items[0]
        audit.record(
            action="certificate.issue",
            actor=SYSTEM,
            object_type="Certificate",
            object_id=first.cert_id if len(items) == 1 else "",
            label=first.req.common_name if len(items) == 1 else f"{len(items)} certificates",
            after={
                "certificates": [
                    {
                        "id": i.cert_id,
                        "request_id": i.req.id,
                        "serial": i.serial_hex,
                        "ca_id": i.ca_id,
                    }
                    for i in items
                ]
            },
            message="; ".join(
                f"#{i.cert_id} {i.req.common_name} serial {i.serial_hex}" for i in items
            ),
            organization_id=org_id,
            department_id=dept_id,
        )


def issued_events(done: Sequence[Issued]) -> None:
    """One "certificate issued" event per certificate (written only if a rule listens)."""
    found = []
    for item in done:
        req = item.req
        kind = CertType(req.cert_type)
        found.append(
            events.Event(
                type=NotificationType.CERTIFICATE_ISSUED,
                label=req.common_name,
                organization_id=req.organization_id,
                department_id=req.department_id,
                cert_type=kind.value,
                profile_id=req.profile_id,
                certificate_id=item.cert_id,
                request_id=req.id,
                facts={
                    "Serial": item.serial_hex,
                    "Names": ", ".join(req.sans),
                    "Term": f"{req.term_days} days",
                },
                people={
                    "requester": [req.requester_email],
                    "external": list(req.external_requesters or []),
                },
                person_id=req.person_id,
                path=f"/admin/{kind.value}_certs/details/?id={item.cert_id}",
            )
        )
    events.emit_many(found, actor=SYSTEM)


def collection_mails(done: Sequence[Issued], base: str) -> list[mail.Mail]:
    """One collection mail per set of recipients and organization/department: a requester
    who asked for 300 certificates gets one message listing them, not 300; and a message
    never mixes places, since its links are readable by whoever may see its place in the
    outbox. A person's certificate is collected on the enrollment portal instead
    (app/services/persons/registration.py)."""
    groups: dict[tuple[int, int | None, tuple[str, ...]], list[Issued]] = defaultdict(list)
    for item in done:
        req = item.req
        if req.person_id is not None:
            continue
        recipients = tuple(sorted({req.requester_email, *req.external_requesters} - {""}))
        groups[(req.organization_id, req.department_id, recipients)].append(item)
    # A request without any recipient (an ACME order of an account with no contact) has
    # nobody to tell; its certificate is collected by the ACME client.
    return [
        _collection_mail(list(recipients), items, base)
        for (_, _, recipients), items in groups.items()
        if recipients
    ]


def _succession(req: Request) -> str:
    """'renewal' or 'replacement' when the request succeeds a certificate, else ''."""
    if req.renewal_of_id:
        return "renewal"
    if req.replaces_id:
        return "replacement"
    return ""


def _collection_mail(to: list[str], items: Sequence[Issued], base: str) -> mail.Mail:
    blocks = []
    for item in items:
        req = item.req
        if req.mode == RequestMode.KEYGEN:
            how = "The private key was generated by Certwright: an administrator downloads it as a password-protected PKCS#12 from the console (Certificates > details)."
        else:
            how = f"Download (PEM with chain, certificate only, PKCS#7 or DER):\n  {base}/collect/{item.cert_id}/{item.token}"
        succession = _succession(req)
        if succession == "renewal":
            what = (
                f"This is the renewal of certificate #{req.renewal_of_id}, which stays valid until it expires: "
                "install this one in its place before then.\n"
            )
        elif succession == "replacement":
            what = (
                f"This replaces certificate #{req.replaces_id}, which has been revoked (superseded): "
                "install this one in its place now.\n"
            )
        else:
            what = ""
        blocks.append(
            f"{CertType(req.cert_type).label} certificate for {req.common_name}\n{what}"
            f"Names: {', '.join(req.sans)}\nTerm: {req.term_days} days\nRequest: #{req.id}\n{how}\n"
        )
    first = items[0].req
    kinds = {_succession(item.req) for item in items}
    verb = (
        {"renewal": "renewed", "replacement": "replaced"}.get(kinds.pop(), "issued")
        if len(kinds) == 1
        else "issued"
    )
    subject = (
        f"Certificate {verb}: {first.common_name}"
        if len(items) == 1
        else f"{len(items)} certificates {verb}"
    )
    intro = (
        f"Your certificate has been {verb}."
        if len(items) == 1
        else f"{len(items)} of your certificates have been {verb}."
    )
    body = (
        f"{intro}\n\n"
        + "\n".join(blocks)
        + "\nThe links work until the certificates expire; keep them private.\n"
    )
    return mail.Mail(
        to=to,
        subject=subject,
        body=body,
        category="issuance",
        organization_id=first.organization_id,
        department_id=first.department_id,
    )
