"""Command line for certificates: cert request, approve, retry, revoke, list, show,
download (and, from app/cli/imports.py, import and hygiene)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.context import operator, place
from app.cli.core import commit_or_fail, emit_json, fail, json_option, no_worker_hint
from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertificateProfile,
    CertificateRequest,
    CertType,
    RequestMode,
    RequestStatus,
)
from app.services import audit
from app.services.certificates import approvals, enrollment, inventory, revocation

cert_cli = AppGroup("cert", help="Certificates: request, approve, list, show, revoke, download.")

# Files a directory given to `cert request --csr DIR` contributes, in name order.
CSR_SUFFIXES = (".csr", ".req", ".pem", ".p10")


def _csr_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CSR_SUFFIXES
            )
            if not found:
                fail(f"no CSR files ({', '.join(CSR_SUFFIXES)}) in the directory {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


def _request_json(req: CertificateRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "status": req.status.value,
        "common_name": req.common_name,
        "sans": list(req.sans),
        "profile": req.profile.name,
        "term_days": req.term_days,
        "certificate_id": req.certificate_id,
    }


@cert_cli.command("request")
@click.option(
    "--csr",
    "csr_paths",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    help=f"a CSR file (PEM or DER), or a directory of them ({', '.join(CSR_SUFFIXES)}); repeat for several",
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
@json_option
def cert_request(
    csr_paths: tuple[Path, ...],
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
    as_json: bool,
) -> None:
    """Submit certificate requests (the same checks as the console wizard).

    Several CSRs (--csr repeated, or a directory) are submitted together, all or nothing:
    if any is refused, none is stored and every refusal is listed. With --json: an object
    ({id, status, ...}) for one --csr FILE or --keygen, a list of them otherwise.
    """
    if bool(csr_paths) == bool(key_type):
        fail("give exactly one of --csr FILE (or DIR, repeatable) or --keygen KEY_TYPE")
    files = _csr_files(csr_paths)
    many = len(files) > 1 or any(p.is_dir() for p in csr_paths)
    if many and (common_name or sans):
        fail(
            "--cn and --san name one request; with several CSRs each request takes its names from its CSR"
        )
    profile = db.session.execute(
        select(CertificateProfile).where(CertificateProfile.name == profile_name)
    ).scalar_one_or_none()
    if profile is None:
        fail(f"no certificate profile named '{profile_name}'")
    assert profile is not None
    org_id, dept_id = place(org_name, dept_name)
    actor = operator(as_login)

    def data(csr: bytes | None) -> enrollment.RequestData:
        return enrollment.RequestData(
            organization_id=org_id,
            department_id=dept_id,
            profile_id=profile.id,
            term_days=term,
            mode=RequestMode.CSR if csr is not None else RequestMode.KEYGEN,
            csr=csr,
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

    if not many:
        one = data(files[0].read_bytes() if files else None)
        with audit.source(label="cli"):
            req = commit_or_fail(lambda: enrollment.submit_request(actor=actor, data=one))
        reqs = [req]
    else:
        batch = [(str(path), data(path.read_bytes())) for path in files]
        try:
            with audit.source(label="cli"):
                reqs = enrollment.submit_requests(actor=actor, requests=batch)
                db.session.commit()
        except enrollment.BatchRejected as exc:
            db.session.rollback()
            for line in exc.lines:
                click.secho(line, fg="red", err=True)
            fail(exc.message)
            return
    if as_json:
        items = [_request_json(req) for req in reqs]
        emit_json(items if many else items[0])
        return
    for req in reqs:
        click.echo(f"Request {req.id} for {req.common_name}: {req.status.value}")


FINAL = (RequestStatus.ISSUED, RequestStatus.FAILED, RequestStatus.DECLINED)


def _outcome(req: CertificateRequest) -> dict[str, Any]:
    item: dict[str, Any] = {
        "request_id": req.id,
        "certificate_id": req.certificate_id,
        "status": req.status.value,
    }
    if req.status == RequestStatus.FAILED:
        item["reason"] = req.failure_reason
    return item


def _wait_for_issuance(
    actor: Admin, ids: list[int], timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    """Poll until every request is Issued, Failed or Declined (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        reqs = [approvals.get_request(actor=actor, request_id=i) for i in ids]
        done = all(r.status in FINAL for r in reqs)
        outcomes = [_outcome(r) for r in reqs]
        db.session.commit()
        if done or time.monotonic() >= deadline:
            return outcomes, done
        time.sleep(0.2)


@cert_cli.command("approve")
@click.argument("request_ids", type=int, nargs=-1, required=True)
@click.option("--message", default="")
@click.option("--wait", is_flag=True, help="return when every request is issued (or failed)")
@click.option("--timeout", type=float, default=120, show_default=True, help="seconds --wait waits")
@click.option("--as", "as_login", default=None)
@json_option
def cert_approve(
    request_ids: tuple[int, ...],
    message: str,
    wait: bool,
    timeout: float,
    as_login: str | None,
    as_json: bool,
) -> None:
    """Approve requests; issuance runs on the workers (the server's, without a broker).

    With --wait: exit 0 when every request is Issued, 1 when one failed or the time ran out.
    With --json: a list of {request_id, certificate_id, status} (and reason when Failed).
    """
    actor = operator(as_login)
    with audit.source(label="cli"):
        approved = commit_or_fail(
            lambda: approvals.approve(actor=actor, request_ids=list(request_ids), message=message)
        )
    assert isinstance(approved, list)
    if not wait:
        if as_json:
            reqs = [approvals.get_request(actor=actor, request_id=i) for i in request_ids]
            emit_json([_outcome(r) for r in reqs])
        else:
            click.echo(f"Approved {len(approved)} request(s): {', '.join(map(str, approved))}")
        return
    outcomes, done = _wait_for_issuance(actor, list(request_ids), timeout)
    if as_json:
        emit_json(outcomes)
    else:
        for item in outcomes:
            what = (
                f"certificate {item['certificate_id']}"
                if item["certificate_id"]
                else item.get("reason", "")
            )
            click.echo(f"Request {item['request_id']}: {item['status']} {what}".rstrip())
    if not done:
        click.secho(
            f"error: not every request was issued within {timeout:g} s.{no_worker_hint()}",
            fg="red",
            err=True,
        )
        sys.exit(1)
    sys.exit(0 if all(i["status"] == RequestStatus.ISSUED.value for i in outcomes) else 1)


@cert_cli.command("retry")
@click.argument("request_ids", type=int, nargs=-1, required=True)
@click.option("--as", "as_login", default=None)
def cert_retry(request_ids: tuple[int, ...], as_login: str | None) -> None:
    """Queue Failed requests for issuance again (the reason is kept in the audit log)."""
    actor = operator(as_login)
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
@json_option
def cert_revoke(
    certificate_ids: tuple[int, ...], reason: str, message: str, as_login: str | None, as_json: bool
) -> None:
    """Revoke certificates; their CAs publish a new CRL at once."""
    actor = operator(as_login)
    with audit.source(label="cli"):
        done = commit_or_fail(
            lambda: revocation.revoke(
                actor=actor, certificate_ids=list(certificate_ids), reason=reason, message=message
            )
        )
    if as_json:
        emit_json(
            [
                _cert_json(inventory.get_certificate(actor=actor, certificate_id=i))
                for i in certificate_ids
            ]
        )
        return
    click.echo(f"Revoked {len(done)} certificate(s).")  # type: ignore[arg-type]


def _cert_json(cert: Certificate, *, full: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": cert.id,
        "common_name": cert.common_name,
        "sans": list(cert.sans or []),
        "type": cert.cert_type.value if cert.cert_type else None,
        "status": inventory.effective_status(cert),
        "origin": cert.origin.value,
        "organization": cert.organization.name if cert.organization else None,
        "department": cert.department.name if cert.department else None,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "serial": cert.serial_hex,
        "fingerprint": cert.fingerprint,
        "issuer": cert.issuer_dn,
        "request_id": cert.request_id,
    }
    if full:
        item.update(
            {
                "subject": cert.subject_dn,
                "key_algorithm": cert.key_algorithm,
                "key_size": cert.key_size,
                "signature_algorithm": cert.signature_algorithm,
                "ca": cert.ca.name if cert.ca else None,
                "profile_id": cert.profile_id,
                "revoked_at": cert.revoked_at.isoformat() if cert.revoked_at else None,
                "revocation_reason": cert.revocation_reason or None,
                "auto_renew": cert.auto_renew,
                "renewal_state": cert.renewal_state,
                "key_held": cert.sealed_key is not None,  # a PKCS#12 can be exported
                "install_state": inventory.install_state(cert),
                "pem": x509.load_der_x509_certificate(cert.der).public_bytes(Encoding.PEM).decode(),
            }
        )
    return item


@cert_cli.command("list")
@click.option("--org", "org_name", default=None)
@click.option("--dept", "dept_name", default=None)
@click.option("--status", default=None, help=", ".join(inventory.STATUSES))
@click.option("--type", "cert_type", type=click.Choice([t.value for t in CertType]), default=None)
@click.option(
    "--expiring-days", type=int, default=None, help="issued, valid, expiring within N days"
)
@click.option("--limit", type=int, default=1000, show_default=True, help="0: no limit")
@click.option("--as", "as_login", default=None)
@json_option
def cert_list(
    org_name: str | None,
    dept_name: str | None,
    status: str | None,
    cert_type: str | None,
    expiring_days: int | None,
    limit: int,
    as_login: str | None,
    as_json: bool,
) -> None:
    """List the certificates you may see, soonest to expire first."""
    actor = operator(as_login)
    org_id, dept_id = place(org_name, dept_name) if org_name else (None, None)
    where = inventory.CertificateFilter(
        organization_id=org_id,
        department_id=dept_id,
        status=status,
        cert_type=CertType(cert_type) if cert_type else None,
        expiring_within_days=expiring_days,
        limit=limit or None,
    )
    found = commit_or_fail(lambda: inventory.list_certificates(actor=actor, where=where))
    assert isinstance(found, list)
    if as_json:
        emit_json([_cert_json(cert) for cert in found])
        return
    for cert in found:
        owner = cert.organization.name if cert.organization else "(unassigned)"
        click.echo(
            f"{cert.id:>6} {inventory.effective_status(cert):<8} {cert.not_after:%Y-%m-%d} {(cert.cert_type or '-'):<12} {owner:<24} {cert.common_name}"
        )


@cert_cli.command("show")
@click.argument("certificate_id", type=int)
@click.option("--as", "as_login", default=None)
@json_option
def cert_show(certificate_id: int, as_login: str | None, as_json: bool) -> None:
    """Every field of a certificate (with --json, its PEM too)."""
    actor = operator(as_login)
    cert = commit_or_fail(
        lambda: inventory.get_certificate(actor=actor, certificate_id=certificate_id)
    )
    assert isinstance(cert, Certificate)
    item = _cert_json(cert, full=True)
    if as_json:
        emit_json(item)
        return
    for key, value in item.items():
        if key != "pem":
            click.echo(f"{key:>19}: {value if value is not None else ''}")


def _password(path: Path | None) -> str:
    """The first line of the file (its newline dropped), '-' for standard input."""
    if path is None:
        fail("--format p12 needs --password-file FILE (the PKCS#12 password, one line)")
    assert path is not None
    text = sys.stdin.readline() if str(path) == "-" else path.read_text(encoding="utf-8")
    lines = text.splitlines()
    return lines[0] if lines else ""


@cert_cli.command("download")
@click.argument("certificate_id", type=int)
@click.option(
    "--format",
    "fmt",
    default="x509",
    show_default=True,
    help="x509, x509CO, x509IO, x509IOR, base64, bin, pem, pemco, pemia, cer; p12 (with the server-generated key)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="default: standard output",
)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="p12: a file whose first line is the PKCS#12 password ('-': standard input)",
)
@click.option("--as", "as_login", default=None)
def cert_download(
    certificate_id: int,
    fmt: str,
    out: Path | None,
    password_file: Path | None,
    as_login: str | None,
) -> None:
    """Write a certificate in a download format, or a PKCS#12 with its key (audited)."""
    actor = operator(as_login)
    if fmt.lower() in ("p12", "pkcs12", "pfx"):
        password = _password(password_file)
        with audit.source(label="cli"):
            result = commit_or_fail(
                lambda: inventory.pkcs12(
                    actor=actor, certificate_id=certificate_id, password=password
                )
            )
    else:
        result = commit_or_fail(
            lambda: inventory.download(actor=actor, certificate_id=certificate_id, fmt=fmt)
        )
    if out and fmt.lower() in ("p12", "pkcs12", "pfx"):
        # A private key: readable by its owner only, from the first byte written.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(result.content)  # type: ignore[union-attr]
    elif out:
        out.write_bytes(result.content)  # type: ignore[union-attr]
    else:
        sys.stdout.buffer.write(result.content)  # type: ignore[union-attr]


COMMANDS = (cert_cli,)
