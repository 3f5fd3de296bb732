"""Command line for the private CAs: ca create, list, revoke, rotate-kek (and, from
app/cli/imports.py, weak-keys)."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.context import operator
from app.cli.core import commit_or_fail, emit_json, fail, json_option
from app.extensions import db
from app.models import (
    CertificateAuthority,
)
from app.pki.profiles import CaPurpose
from app.services import audit
from app.services.ca import authorities
from app.services.scope import SYSTEM

ca_cli = AppGroup("ca", help="Private certificate authorities.")
PURPOSES = {
    "tls": CaPurpose.TLS,
    "smime": CaPurpose.SMIME,
    "codesigning": CaPurpose.CODE_SIGNING,
    "device": CaPurpose.DEVICE,
}


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
@json_option
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
    as_json: bool,
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
    if as_json:
        emit_json(_ca_json(created))
        return
    issues = "" if created.is_root else f", issues {authorities.purpose_label(created)}"
    click.echo(
        f"Created {created.kind_label} '{created.name}' (id {created.id}): {created.subject_dn}, "
        f"signs with {created.signature_hash}{issues}, valid to {created.not_after:%Y-%m-%d}"
    )


def _ca_json(ca: CertificateAuthority) -> dict[str, Any]:
    return {
        "id": ca.id,
        "name": ca.name,
        "kind": ca.kind_label,
        "parent": ca.parent.name if ca.parent is not None else None,
        "key_type": ca.key_type,
        "signature_hash": ca.signature_hash,
        "issues": None if ca.is_root else authorities.purpose_label(ca),
        "status": ca.status.value,
        "subject": ca.subject_dn,
        "serial": ca.serial_hex,
        "fingerprint": ca.fingerprint,
        "not_before": ca.not_before.isoformat(),
        "not_after": ca.not_after.isoformat(),
    }


@ca_cli.command("list")
@json_option
def ca_list(as_json: bool) -> None:
    found = (
        db.session.execute(select(CertificateAuthority).order_by(CertificateAuthority.id))
        .scalars()
        .all()
    )
    if as_json:
        emit_json([_ca_json(ca) for ca in found])
        return
    for item in found:
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
    actor = operator(as_login)
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


COMMANDS = (ca_cli,)
