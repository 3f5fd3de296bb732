"""Command line for the organization structure: org check-names."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.services.structure import orgs

org_cli = AppGroup("org", help="Organizations and departments.")


@org_cli.command("check-names")
def org_check_names() -> None:
    """List organization and department names that hold characters the subject-text rules
    refuse (saved before the rules); exit 1 when there are any. Rename them in Settings:
    no certificate can be issued for them until then."""
    problems = orgs.names_needing_attention()
    for item in problems:
        click.echo(f"{item.kind} #{item.id} {item.name!r}: {item.problem}")
    if problems:
        click.secho(f"{len(problems)} name(s) to rename.", fg="yellow", err=True)
        sys.exit(1)
    click.echo("Every organization and department name can appear in a certificate.")


COMMANDS = (org_cli,)
