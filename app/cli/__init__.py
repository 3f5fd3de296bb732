"""Command line (flask --app wsgi ...): one module per area, registered here."""

from __future__ import annotations

from flask import Flask

from app.cli import core, discovery, pki, structure


def register(app: Flask) -> None:
    for command in (*core.COMMANDS, *pki.COMMANDS, *discovery.COMMANDS, *structure.COMMANDS):
        app.cli.add_command(command)
