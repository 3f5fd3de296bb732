"""Command line: bootstrap, admin, audit, jobs, scheduler, secrets."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.models import AdminKind, CertType, Department, Job, Organization, Role, WorkerHeartbeat
from app.models.types import utcnow
from app.services import audit
from app.services.accounts import admins, bootstrap
from app.services.errors import DomainError
from app.services.platform import jobs
from app.services.scope import SYSTEM
from app.services.structure import orgs
from app.settings import SETTING, setting


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def emit_json(value: Any) -> None:
    """One JSON document on standard output (what --json promises scripts)."""
    click.echo(json.dumps(value, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")


def no_worker_hint() -> str:
    """Why background work may not start: no live worker process, or nothing at all."""
    recent = utcnow() - timedelta(seconds=30)
    alive = db.session.execute(
        select(WorkerHeartbeat.id).where(
            WorkerHeartbeat.kind.in_(["worker", "embedded"]), WorkerHeartbeat.seen_at >= recent
        )
    ).first()
    db.session.rollback()
    if alive:
        return ""
    return (
        " No worker is running: start the server (`make run`) or, with BROKER_URL, `make worker`."
    )


def commit_or_fail(fn: object) -> object:
    try:
        result = fn()  # type: ignore[operator]
        db.session.commit()
        return result
    except DomainError as exc:
        db.session.rollback()
        fail(exc.message)
    return None


@click.command("bootstrap")
def bootstrap_command() -> None:
    """Create the first MRAO, the first organization and system schedules (idempotent)."""
    with audit.source(label="bootstrap"):
        result = commit_or_fail(
            lambda: bootstrap.bootstrap(
                login=setting("CW_ADMIN_LOGIN"),
                password=setting("CW_ADMIN_PASSWORD") or None,
                email=setting("CW_ADMIN_EMAIL"),
                org_name=setting("CW_ORG_NAME"),
                country=setting("CW_ORG_COUNTRY"),
                city=setting("CW_ORG_CITY"),
                state=setting("CW_ORG_STATE"),
            )
        )
    assert isinstance(result, bootstrap.BootstrapResult)
    if result.admin_created:
        click.echo(f"Created the first MRAO '{result.login}'.")
        if result.generated_password:
            click.secho("=" * 64, fg="yellow")
            click.secho(
                f"  Sign in as '{result.login}' with the password: {result.generated_password}",
                fg="yellow",
            )
            click.secho("  It is shown only this once; change it in My Profile.", fg="yellow")
            click.secho("=" * 64, fg="yellow")
    if result.org_created:
        click.echo("Created the first organization (rename it in Settings > Organizations).")
        for warning in orgs.name_warnings(str(setting("CW_ORG_NAME"))):
            click.secho(f"warning: {warning}", fg="yellow", err=True)


admin_cli = AppGroup("admin", help="Manage administrators.")


def _parse_scope(text: str) -> admins.Grant:
    """'Org Name[/Dept Name][:ssl,client,code_signing,device]'."""
    where, _, privs = text.partition(":")
    org_name, _, dept_name = where.partition("/")
    org = db.session.execute(
        select(Organization).where(Organization.name == org_name.strip())
    ).scalar_one_or_none()
    if org is None:
        fail(f"no organization named '{org_name.strip()}'")
    dept_id = None
    if dept_name.strip():
        dept = db.session.execute(
            select(Department).where(
                Department.organization_id == org.id, Department.name == dept_name.strip()
            )
        ).scalar_one_or_none()
        if dept is None:
            fail(f"organization '{org.name}' has no department '{dept_name.strip()}'")
        dept_id = dept.id
    try:
        types = (
            frozenset(CertType(p.strip()) for p in privs.split(",") if p.strip())
            if privs
            else frozenset(CertType)
        )
    except ValueError:
        fail(f"privileges must be among {', '.join(t.value for t in CertType)}")
    return admins.Grant(org.id, dept_id, types)


@admin_cli.command("create")
@click.option("--login", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="'Org[/Dept][:ssl,client,code_signing,device]'; repeat for several",
)
@click.option("--full-name", default="")
@json_option
@click.option(
    "--type",
    "kind",
    type=click.Choice([k.value for k in AdminKind], case_sensitive=False),
    default=AdminKind.STANDARD.value,
    show_default=True,
    help="API: a REST API account (header authentication, no console sign-in)",
)
@click.option(
    "--network",
    "networks",
    multiple=True,
    help="API accounts: a source network (CIDR) calls may come from; repeat for several",
)
@click.option(
    "--password",
    envvar=SETTING["CW_NEW_ADMIN_PASSWORD"].name,
    default=None,
    help="or CW_NEW_ADMIN_PASSWORD; prompted when absent",
)
@click.option(
    "--must-change-password/--no-must-change-password",
    default=True,
    show_default=True,
    help="the administrator chooses a new password at first sign-in",
)
def admin_create(
    login: str,
    email: str,
    role: str,
    scopes: tuple[str, ...],
    full_name: str,
    kind: str,
    networks: tuple[str, ...],
    as_json: bool,
    password: str | None,
    must_change_password: bool,
) -> None:
    """Create an administrator (for scripts)."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    grants = [_parse_scope(s) for s in scopes]
    with audit.source(label="cli"):
        admin = commit_or_fail(
            lambda: admins.create_admin(
                actor=SYSTEM,
                login=login,
                email=email,
                role=Role(role),
                password=password,
                full_name=full_name,
                grants=grants,
                must_change_password=must_change_password,
                kind=AdminKind(kind.upper()),
                api_networks=networks,
            )
        )
    assert admin is not None
    what = f"{role} API account" if kind.upper() == AdminKind.API else role
    if as_json:
        emit_json({"id": admin.id, "login": admin.login, "role": role, "type": kind.upper()})  # type: ignore[attr-defined]
        return
    click.echo(f"Created {what} '{admin.login}' (id {admin.id}).")  # type: ignore[attr-defined]


audit_cli = AppGroup("audit", help="The audit log.")


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the hash chain and its authenticated head; name the first edited, deleted,
    inserted or reordered row and say how many rows the head expects."""
    verdict = audit.verify()
    if verdict.ok:
        click.echo(verdict.summary())
        return
    click.secho(verdict.summary(), fg="red")
    sys.exit(1)


jobs_cli = AppGroup("jobs", help="Background jobs.")


@jobs_cli.command("enqueue")
@click.argument("kind")
@click.option("--wait", is_flag=True, help="wait until it ends and print its result")
@click.option("--timeout", default=120, show_default=True)
@json_option
def jobs_enqueue(kind: str, wait: bool, timeout: int, as_json: bool) -> None:
    """Start a job of KIND (for example audit_verify, housekeeping).

    Without a broker (`make run`) the running server's worker starts it within a second."""
    if kind not in jobs.KINDS:
        fail(f"unknown job kind '{kind}'; known: {', '.join(sorted(jobs.KINDS))}")
    with audit.source(label="cli"):
        job = jobs.create_job(kind=kind)
        db.session.commit()
    if not as_json:
        click.echo(f"job {job.id} {kind} pending")
    if wait:
        _wait(job.id, timeout, as_json=as_json)
    elif as_json:
        emit_json(_job_json(job))


def _job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "progress": job.progress,
        "attempts": job.attempts,
        "message": job.message,
        "result": job.result,
    }


def _wait(job_id: int, timeout: int, *, as_json: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        job = db.session.get(Job, job_id)
        assert job is not None
        if job.status.is_final:
            if as_json:
                emit_json(_job_json(job))
            else:
                click.echo(f"job {job.id} {job.status.value}: {job.message}")
            sys.exit(0 if job.status.value == "done" else 1)
        db.session.commit()
        time.sleep(0.2)
    fail(f"job {job_id} did not finish within {timeout} s.{no_worker_hint()}")


@jobs_cli.command("list")
@click.option("--limit", default=20, show_default=True)
@json_option
def jobs_list(limit: int, as_json: bool) -> None:
    found = db.session.execute(select(Job).order_by(Job.id.desc()).limit(limit)).scalars().all()
    if as_json:
        emit_json([_job_json(job) for job in found])
        return
    for job in found:
        click.echo(
            f"{job.id:>6} {job.kind:<20} {job.status.value:<9} {job.progress:>3}% attempts={job.attempts} {job.message}"
        )


@jobs_cli.command("wait")
@click.argument("job_id", type=int)
@click.option("--timeout", default=120, show_default=True)
@json_option
def jobs_wait(job_id: int, timeout: int, as_json: bool) -> None:
    _wait(job_id, timeout, as_json=as_json)


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler loop (one per deployment; a second one is harmless)."""
    import logging

    from flask import current_app

    from app.runtime.scheduler import run_scheduler_forever

    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s] [PID %(process)d] [%(name)s] %(levelname)s: %(message)s",
    )

    run_scheduler_forever(current_app._get_current_object())  # type: ignore[attr-defined]


secrets_cli = AppGroup("secrets", help="The secrets every process of a deployment shares.")


@secrets_cli.command("generate")
def secrets_generate() -> None:
    """Print new SECRET_KEY, CW_KEK and CW_AUDIT_KEY as an environment file.

    For a new deployment: put the lines into the environment of every web, worker and
    scheduler process (e.g. /etc/certwright/certwright.env). Never replace the CW_KEK or
    CW_AUDIT_KEY of an existing installation with new ones: its CA keys are sealed with the
    one and its audit log is chained with the other.
    """
    from app.instance import generate_secrets

    click.echo("# Certwright secrets: the same values on every process of this deployment.")
    click.echo("# Keep them as safe as the CA keys; without CW_KEK they cannot be unsealed.")
    for name, value in generate_secrets().items():
        click.echo(f"{name}={value}")
    click.secho(
        "Existing installation? Keep its CW_KEK and CW_AUDIT_KEY (the instance folder's kek "
        "and audit_key files when they were generated): new ones cannot unseal its CA keys "
        "or verify its audit log.",
        err=True,
        fg="yellow",
    )


COMMANDS = (bootstrap_command, admin_cli, audit_cli, jobs_cli, scheduler_command, secrets_cli)
