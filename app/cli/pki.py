"""Command line for the private CA: ca create/list/revoke/rotate-kek, cert
request/approve/retry/revoke/download."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.core import commit_or_fail, fail
from app.extensions import db
from app.models import (
    Admin,
    CertificateAuthority,
    CertificateProfile,
    CertType,
    Department,
    Organization,
    RequestMode,
    Role,
)
from app.pki.profiles import CaPurpose
from app.services import audit
from app.services.ca import authorities
from app.services.certificates import approvals, enrollment, inventory, revocation
from app.services.scope import SYSTEM

ca_cli = AppGroup("ca", help="Private certificate authorities.")
PURPOSES = {
    "tls": CaPurpose.TLS,
    "smime": CaPurpose.SMIME,
    "codesigning": CaPurpose.CODE_SIGNING,
    "device": CaPurpose.DEVICE,
}
cert_cli = AppGroup("cert", help="Certificates: request, approve, revoke, download.")


def _operator(login: str | None) -> Admin:
    """The administrator a command acts as (--as LOGIN); default: the first active MRAO."""
    query = select(Admin).where(Admin.active.is_(True))
    query = (
        query.where(Admin.login == login)
        if login
        else query.where(Admin.role == Role.MRAO).order_by(Admin.id)
    )
    admin = db.session.execute(query).scalars().first()
    if admin is None:
        fail(
            f"no active administrator {login!r}"
            if login
            else "no active MRAO; run `flask --app wsgi bootstrap` first"
        )
    assert admin is not None
    return admin


@ca_cli.command("create")
@click.option("--name", required=True)
@click.option(
    "--key-type",
    default="RSA-3072",
    show_default=True,
    help="RSA-2048, RSA-3072, RSA-4096, EC-P256, EC-P384",
)
@click.option(
    "--customer",
    "customer_name",
    required=True,
    help="O, and CN with ' Root CA'/' Issuing CA' appended",
)
@click.option("--parent", default=None, help="parent CA name; none makes a root")
@click.option(
    "--hash",
    "signature_hash",
    default=None,
    help="SHA-256, SHA-384, SHA-512 for RSA keys (default SHA-256); an ECDSA key signs with its curve's hash",
)
@click.option(
    "--purpose",
    type=click.Choice(sorted(PURPOSES), case_sensitive=False),
    default="tls",
    show_default=True,
    help="what an issuing CA issues (sets its extended key usage); ignored for a root",
)
@click.option("--city", default="")
@click.option("--state", default="")
@click.option("--country", default="")
@click.option("--years", type=int, default=None, help="lifetime; default by template")
def ca_create(
    name: str,
    key_type: str,
    customer_name: str,
    parent: str | None,
    signature_hash: str | None,
    city: str,
    state: str,
    country: str,
    years: int | None,
    purpose: str,
) -> None:
    """Create a root CA, or an issuing CA under --parent."""
    parent_id = None
    if parent:
        found = db.session.execute(
            select(CertificateAuthority).where(CertificateAuthority.name == parent)
        ).scalar_one_or_none()
        if found is None:
            fail(f"no CA named '{parent}'")
        parent_id = found.id  # type: ignore[union-attr]
    spec = authorities.CaSpec(
        name=name,
        key_type=key_type,
        customer_name=customer_name,
        parent_id=parent_id,
        signature_hash=signature_hash,
        locality=city,
        state=state,
        country=country,
        lifetime_years=years,
        purpose=PURPOSES[purpose.lower()].value,
    )
    with audit.source(label="cli"):
        created = commit_or_fail(lambda: authorities.create_ca(actor=SYSTEM, spec=spec))
    assert isinstance(created, CertificateAuthority)
    issues = "" if created.is_root else f", issues {authorities.purpose_label(created)}"
    click.echo(
        f"Created {created.kind_label} '{created.name}' (id {created.id}): {created.subject_dn}, "
        f"signs with {created.signature_hash}{issues}, valid to {created.not_after:%Y-%m-%d}"
    )


@ca_cli.command("list")
def ca_list() -> None:
    for item in db.session.execute(
        select(CertificateAuthority).order_by(CertificateAuthority.id)
    ).scalars():
        click.echo(
            f"{item.id:>4} {item.name:<30} {item.kind_label:<11} {authorities.purpose_label(item):<12} {item.key_type:<9} {item.status.value:<8} to {item.not_after:%Y-%m-%d}  {item.subject_dn}"
        )


@ca_cli.command("revoke")
@click.argument("name")
@click.option(
    "--reason",
    required=True,
    help="cACompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn",
)
@click.option("--message", default="")
@click.option("--as", "as_login", default=None, help="act as this MRAO (default: the first)")
def ca_revoke(name: str, reason: str, message: str, as_login: str | None) -> None:
    """Revoke an issuing CA (by name or id); its parent publishes a new CRL at once."""
    found = db.session.execute(
        select(CertificateAuthority).where(
            (CertificateAuthority.name == name)
            | (CertificateAuthority.id == (int(name) if name.isdigit() else -1))
        )
    ).scalar_one_or_none()
    if found is None:
        fail(f"no CA named '{name}'")
    assert found is not None
    actor = _operator(as_login)
    with audit.source(label="cli"):
        revoked = commit_or_fail(
            lambda: authorities.revoke_ca(
                actor=actor, ca_id=found.id, reason=reason, message=message
            )
        )
    assert isinstance(revoked, CertificateAuthority)
    click.echo(
        f"Revoked the CA '{revoked.name}' ({revoked.revocation_reason}); "
        f"the CRL of '{revoked.parent.name if revoked.parent else ''}' lists it."
    )


@ca_cli.command("rotate-kek")
def ca_rotate_kek() -> None:
    """Re-seal every CA key under the first key of CW_KEK (prepend a new key first)."""
    with audit.source(label="cli"):
        count = commit_or_fail(lambda: authorities.rotate_kek(actor=SYSTEM))
    click.echo(f"Re-sealed {count} keys under the primary key-encryption key.")


def _place(org_name: str, dept_name: str | None) -> tuple[int, int | None]:
    org = db.session.execute(
        select(Organization).where(Organization.name == org_name)
    ).scalar_one_or_none()
    if org is None:
        fail(f"no organization named '{org_name}'")
    assert org is not None
    if not dept_name:
        return org.id, None
    dept = db.session.execute(
        select(Department).where(Department.organization_id == org.id, Department.name == dept_name)
    ).scalar_one_or_none()
    if dept is None:
        fail(f"organization '{org_name}' has no department '{dept_name}'")
    assert dept is not None
    return org.id, dept.id


@cert_cli.command("request")
@click.option(
    "--csr", "csr_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option(
    "--keygen",
    "key_type",
    default=None,
    help="have the server generate a key of this type instead of --csr",
)
@click.option("--org", "org_name", required=True)
@click.option("--dept", "dept_name", default=None)
@click.option("--profile", "profile_name", required=True)
@click.option("--term", type=int, required=True, help="days")
@click.option("--cn", "common_name", default="", help="default: the CSR's")
@click.option("--san", "sans", multiple=True)
@click.option(
    "--type",
    "cert_type",
    type=click.Choice([t.value for t in CertType]),
    default="ssl",
    show_default=True,
)
@click.option("--requester-email", default="")
@click.option("--external", "external", multiple=True, help="external requester email; repeat")
@click.option("--auto-renew/--no-auto-renew", default=False)
@click.option("--renew-days", type=int, default=30)
@click.option(
    "--as", "as_login", default=None, help="act as this administrator (default: the first MRAO)"
)
def cert_request(
    csr_path: Path | None,
    key_type: str | None,
    org_name: str,
    dept_name: str | None,
    profile_name: str,
    term: int,
    common_name: str,
    sans: tuple[str, ...],
    cert_type: str,
    requester_email: str,
    external: tuple[str, ...],
    auto_renew: bool,
    renew_days: int,
    as_login: str | None,
) -> None:
    """Submit a certificate request (the same checks as the console wizard)."""
    if bool(csr_path) == bool(key_type):
        fail("give exactly one of --csr FILE or --keygen KEY_TYPE")
    profile = db.session.execute(
        select(CertificateProfile).where(CertificateProfile.name == profile_name)
    ).scalar_one_or_none()
    if profile is None:
        fail(f"no certificate profile named '{profile_name}'")
    org_id, dept_id = _place(org_name, dept_name)
    actor = _operator(as_login)
    data = enrollment.RequestData(
        organization_id=org_id,
        department_id=dept_id,
        profile_id=profile.id,
        term_days=term,  # type: ignore[union-attr]
        mode=RequestMode.CSR if csr_path else RequestMode.KEYGEN,
        csr=csr_path.read_bytes() if csr_path else None,
        key_type=key_type,
        common_name=common_name,
        sans=sans,
        requester_email=requester_email,
        external_requesters=external,
        auto_renew=auto_renew,
        renew_days_before=renew_days,
        eula_accepted=True,
        cert_type=CertType(cert_type),
        comments="submitted from the command line",
    )
    with audit.source(label="cli"):
        req = commit_or_fail(lambda: enrollment.submit_request(actor=actor, data=data))
    click.echo(f"Request {req.id} for {req.common_name}: {req.status.value}")  # type: ignore[union-attr]


@cert_cli.command("approve")
@click.argument("request_ids", type=int, nargs=-1, required=True)
@click.option("--message", default="")
@click.option("--as", "as_login", default=None)
def cert_approve(request_ids: tuple[int, ...], message: str, as_login: str | None) -> None:
    """Approve requests; issuance runs on the workers."""
    actor = _operator(as_login)
    with audit.source(label="cli"):
        approved = commit_or_fail(
            lambda: approvals.approve(actor=actor, request_ids=list(request_ids), message=message)
        )
    click.echo(f"Approved {len(approved)} request(s): {', '.join(map(str, approved))}")  # type: ignore[arg-type]


@cert_cli.command("retry")
@click.argument("request_ids", type=int, nargs=-1, required=True)
@click.option("--as", "as_login", default=None)
def cert_retry(request_ids: tuple[int, ...], as_login: str | None) -> None:
    """Queue Failed requests for issuance again (the reason is kept in the audit log)."""
    actor = _operator(as_login)
    with audit.source(label="cli"):
        retried = commit_or_fail(
            lambda: approvals.retry(actor=actor, request_ids=list(request_ids))
        )
    click.echo(f"Queued {len(retried)} request(s) again: {', '.join(map(str, retried))}")  # type: ignore[arg-type]


@cert_cli.command("revoke")
@click.argument("certificate_ids", type=int, nargs=-1, required=True)
@click.option(
    "--reason",
    required=True,
    help="RFC 5280 reason, e.g. keyCompromise, superseded, cessationOfOperation",
)
@click.option("--message", default="")
@click.option("--as", "as_login", default=None)
def cert_revoke(
    certificate_ids: tuple[int, ...], reason: str, message: str, as_login: str | None
) -> None:
    """Revoke certificates; their CAs publish a new CRL at once."""
    actor = _operator(as_login)
    with audit.source(label="cli"):
        done = commit_or_fail(
            lambda: revocation.revoke(
                actor=actor, certificate_ids=list(certificate_ids), reason=reason, message=message
            )
        )
    click.echo(f"Revoked {len(done)} certificate(s).")  # type: ignore[arg-type]


@cert_cli.command("download")
@click.argument("certificate_id", type=int)
@click.option(
    "--format",
    "fmt",
    default="x509",
    show_default=True,
    help="x509, x509CO, x509IO, x509IOR, base64, bin, pem, pemco, pemia, cer",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="default: standard output",
)
@click.option("--as", "as_login", default=None)
def cert_download(certificate_id: int, fmt: str, out: Path | None, as_login: str | None) -> None:
    actor = _operator(as_login)
    result = commit_or_fail(
        lambda: inventory.download(actor=actor, certificate_id=certificate_id, fmt=fmt)
    )
    if out:
        out.write_bytes(result.content)  # type: ignore[union-attr]
    else:
        sys.stdout.buffer.write(result.content)  # type: ignore[union-attr]


COMMANDS = (ca_cli, cert_cli)
