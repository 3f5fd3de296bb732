"""Validation errors raised by the pure parsers in app.scan (targets, rules)."""

from __future__ import annotations

from collections.abc import Iterable


class ScanInputError(ValueError):
    """Invalid task input; ``messages`` holds one human-readable line per problem.

    Callers map it to form errors (one per line) or an HTTP 400 body.
    """

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__("; ".join(self.messages) or "invalid input")


class TargetSpecError(ScanInputError):
    """The ranges, ports, overrides or limits of a discovery task are invalid."""


class RuleError(ScanInputError):
    """An assignment rule is invalid."""
