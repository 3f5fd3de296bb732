"""Command line (flask --app wsgi ...): one module per area, registered here."""

from __future__ import annotations

from flask import Flask

from app.cli import agents, config, core, discovery, imports, pki, reports, structure


def register(app: Flask) -> None:
    for command in (
        *core.COMMANDS,
        *agents.COMMANDS,
        *pki.COMMANDS,
        *discovery.COMMANDS,
        *config.COMMANDS,
        *structure.COMMANDS,
        *imports.COMMANDS,
        *reports.COMMANDS,
    ):
        app.cli.add_command(command)
