"""Command line for network discovery: run a task (with live progress), import tasks from CSV."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.core import commit_or_fail, fail
from app.extensions import db
from app.models import DiscoveryTask, RunStatus, ScanRun
from app.services import audit
from app.services.discovery import runs, tasks
from app.services.errors import DomainError
from app.services.scope import SYSTEM

discovery_cli = AppGroup("discovery", help="Network discovery tasks.")


def _task(name_or_id: str) -> DiscoveryTask:
    query = (
        select(DiscoveryTask).where(DiscoveryTask.id == int(name_or_id))
        if name_or_id.isdigit()
        else select(DiscoveryTask).where(DiscoveryTask.name == name_or_id)
    )
    task = db.session.execute(query).scalar_one_or_none()
    if task is None:
        fail(f"no discovery task '{name_or_id}'")
    assert task is not None
    return task


@discovery_cli.command("run")
@click.argument("task")
@click.option("--timeout", default=3600, show_default=True, help="seconds to wait for the scan")
def discovery_run(task: str, timeout: int) -> None:
    """Scan TASK (name or id) now, show progress, print the run's counts.

    With a broker (BROKER_URL) the shards go to the worker processes; without one this
    command runs them itself.
    """
    chosen = _task(task)
    embedded = None
    if not current_app.config["BROKER_URL"]:
        from app.runtime.embedded import Embedded

        embedded = Embedded(current_app._get_current_object(), threads=2, scheduler=False).start()  # type: ignore[attr-defined]
    try:
        with audit.source(label="cli"):
            run = commit_or_fail(
                lambda: runs.start_run(actor=SYSTEM, task_id=chosen.id, trigger="cli")
            )
        assert isinstance(run, ScanRun)
        run_id = run.id
        click.echo(
            f"scan #{run_id} of '{chosen.name}': {run.targets_total:,} targets in {run.shards_total} shards"
        )
        deadline, last = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            db.session.expire_all()
            run = db.session.get(ScanRun, run_id)
            percent = runs.progress(run)
            left = runs.seconds_left(run)
            db.session.commit()
            if percent != last:
                click.echo(
                    f"  {percent:3d}%" + (f" (about {left} s left)" if left is not None else "")
                )
                last = percent
            if run.status != RunStatus.RUNNING:
                break
            time.sleep(0.5)
        else:
            fail(f"scan #{run_id} did not finish within {timeout} s (it goes on in the background)")
        click.echo(f"scan #{run_id} {run.status.value}: {run.message}")
        click.echo(
            f"  targets {run.targets_done:,}/{run.targets_total:,}, TLS endpoints {run.tls_endpoints}, certificates {run.certificates} ({run.new_certificates} new, {run.assigned} assigned by rules)"
        )
        for outcome, count in sorted((run.counts or {}).get("outcomes", {}).items()):
            click.echo(f"  {outcome}: {count}")
        sys.exit(0 if run.status == RunStatus.SUCCESSFUL else 1)
    finally:
        if embedded is not None:
            embedded.stop()


@discovery_cli.command("import-csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def discovery_import(path: Path) -> None:
    """Create one task per CSV row (name,ranges,ports,connect_timeout,handshake_timeout,
    concurrency,organization,description); nothing is created if any row is wrong."""
    try:
        with audit.source(label="cli"):
            created = tasks.import_csv(actor=SYSTEM, text=path.read_text(encoding="utf-8-sig"))
            db.session.commit()
    except tasks.CsvImportError as exc:
        db.session.rollback()
        for line in exc.lines:
            click.secho(line, fg="red", err=True)
        fail(exc.message)
    except DomainError as exc:
        db.session.rollback()
        fail(exc.message)
    click.echo(f"Imported {len(created)} tasks: {', '.join(t.name for t in created)}")


COMMANDS = (discovery_cli,)
