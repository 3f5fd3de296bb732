"""Command line (flask --app wsgi ...): one module per area, registered here. Every
command runs as the audit source "cli": what it changes is audited with that actor name
(not "system"), whichever module it comes from."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
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
        _as_cli(command)
        app.cli.add_command(command)


def _as_cli(command: click.Command) -> None:
    """Run the command (and a group's subcommands) as the audit source "cli"."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _as_cli(sub)
        return
    if command.callback is None or getattr(command.callback, "_cw_cli", False):
        return
    command.callback = _audited(command.callback)


def _audited(callback: Callable[..., Any]) -> Callable[..., Any]:
    from app.services import audit

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        with audit.source(label="cli"):
            return callback(*args, **kwargs)

    run._cw_cli = True  # type: ignore[attr-defined]
    return run
