"""Command line (flask --app wsgi ...): one module per area, registered here."""

from __future__ import annotations

from flask import Flask

from app.cli import agents, ca, certificates, config, core, discovery, imports, reports, structure


def register(app: Flask) -> None:
    for command in (
        *core.COMMANDS,
        *agents.COMMANDS,
        *ca.COMMANDS,
        *certificates.COMMANDS,
        *discovery.COMMANDS,
        *config.COMMANDS,
        *structure.COMMANDS,
        *imports.COMMANDS,
        *reports.COMMANDS,
    ):
        app.cli.add_command(command)
