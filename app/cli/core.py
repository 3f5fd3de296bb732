"""Command line: bootstrap, admin, audit, jobs, scheduler."""

from __future__ import annotations

import os
import sys
import time

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.models import AdminKind, CertType, Department, Job, Organization, Role
from app.services import audit
from app.services.accounts import admins, bootstrap
from app.services.errors import DomainError
from app.services.platform import jobs
from app.services.scope import SYSTEM


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


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
                login=os.environ.get("CW_ADMIN_LOGIN", "admin"),
                password=os.environ.get("CW_ADMIN_PASSWORD") or None,
                email=os.environ.get("CW_ADMIN_EMAIL", "admin@example.com"),
                org_name=os.environ.get("CW_ORG_NAME", "My Organization"),
                country=os.environ.get("CW_ORG_COUNTRY", "US"),
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
    envvar="CW_NEW_ADMIN_PASSWORD",
    default=None,
    help="or CW_NEW_ADMIN_PASSWORD; prompted when absent",
)
def admin_create(
    login: str,
    email: str,
    role: str,
    scopes: tuple[str, ...],
    full_name: str,
    kind: str,
    networks: tuple[str, ...],
    password: str | None,
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
                kind=AdminKind(kind.upper()),
                api_networks=networks,
            )
        )
    what = f"{role} API account" if kind.upper() == AdminKind.API else role
    click.echo(f"Created {what} '{admin.login}' (id {admin.id}).")  # type: ignore[union-attr]


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
def jobs_enqueue(kind: str, wait: bool, timeout: int) -> None:
    """Start a job of KIND (for example audit_verify, housekeeping)."""
    if kind not in jobs.KINDS:
        fail(f"unknown job kind '{kind}'; known: {', '.join(sorted(jobs.KINDS))}")
    with audit.source(label="cli"):
        job = jobs.create_job(kind=kind)
        db.session.commit()
    click.echo(f"job {job.id} {kind} pending")
    if wait:
        _wait(job.id, timeout)


def _wait(job_id: int, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        job = db.session.get(Job, job_id)
        assert job is not None
        if job.status.is_final:
            click.echo(f"job {job.id} {job.status.value}: {job.message}")
            sys.exit(0 if job.status.value == "done" else 1)
        db.session.commit()
        time.sleep(0.2)
    fail(f"job {job_id} did not finish within {timeout} s")


@jobs_cli.command("list")
@click.option("--limit", default=20, show_default=True)
def jobs_list(limit: int) -> None:
    for job in db.session.execute(select(Job).order_by(Job.id.desc()).limit(limit)).scalars():
        click.echo(
            f"{job.id:>6} {job.kind:<20} {job.status.value:<9} {job.progress:>3}% attempts={job.attempts} {job.message}"
        )


@jobs_cli.command("wait")
@click.argument("job_id", type=int)
@click.option("--timeout", default=120, show_default=True)
def jobs_wait(job_id: int, timeout: int) -> None:
    _wait(job_id, timeout)


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler loop (one per deployment; a second one is harmless)."""
    from flask import current_app

    from app.runtime.scheduler import run_scheduler_forever

    run_scheduler_forever(current_app._get_current_object())  # type: ignore[attr-defined]


COMMANDS = (bootstrap_command, admin_cli, audit_cli, jobs_cli, scheduler_command)
