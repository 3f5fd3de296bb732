"""Command line for configuration as code: config export / plan / apply (docs/config.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from app.extensions import db
from app.services import audit
from app.services.configuration import changes
from app.services.configuration.document import DocumentError
from app.services.errors import DomainError
from app.services.scope import SYSTEM

config_cli = AppGroup("config", help="Configuration as code: export, plan, apply (YAML).")

# Exit codes of plan (as terraform's -detailed-exitcode): 0 nothing to change, 1 an error,
# 2 something to change.
NO_CHANGES, ERROR, CHANGES = 0, 1, 2


def _refuse(exc: DomainError) -> None:
    db.session.rollback()
    click.secho(f"error: {exc.message}", fg="red", err=True)
    for line in getattr(exc, "lines", []):
        click.secho(f"  {line}", fg="red", err=True)
    sys.exit(ERROR)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    return Path(path).read_text(encoding="utf-8")


def _report(outcome: changes.Outcome, *, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "changed": outcome.changed,
                    "changes": [c.to_dict() for c in outcome.changes],
                    "passwords": outcome.passwords,
                },
                indent=2,
            )
        )
        return
    for change in outcome.changes:
        click.echo(change.describe())
    count = len(outcome.changes)
    click.echo(
        f"{verb}: {count} change(s)." if count else "No changes: the database matches the file."
    )
    for login, password in outcome.passwords.items():
        click.secho(
            f"New administrator '{login}': password {password} (shown only this once)",
            fg="yellow",
        )


@config_cli.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="default: standard output",
)
def config_export(out: Path | None) -> None:
    """Write the whole configuration as YAML (no private key, no password)."""
    text = changes.export()
    db.session.rollback()
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@config_cli.command("plan")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the changes as JSON")
def config_plan(path: str, as_json: bool) -> None:
    """Print what `apply` would create, change or delete. Exit 0: nothing; 2: something."""
    try:
        outcome = changes.plan(actor=SYSTEM, text=_read(path))
    except (DocumentError, DomainError) as exc:
        _refuse(exc)
        return
    _report(outcome, as_json=as_json, verb="Plan")
    sys.exit(CHANGES if outcome.changed else NO_CHANGES)


@config_cli.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the changes made as JSON")
def config_apply(path: str, as_json: bool) -> None:
    """Make the database match the file, in one audited transaction (all or nothing)."""
    try:
        with audit.source(label="cli"):
            outcome = changes.apply(actor=SYSTEM, text=_read(path))
            db.session.commit()
    except (DocumentError, DomainError) as exc:
        _refuse(exc)
        return
    _report(outcome, as_json=as_json, verb="Applied")


COMMANDS = (config_cli,)
