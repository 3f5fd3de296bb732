"""Domain exceptions that every front door maps to a flash, a field error or an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation, with a message meant for the person who asked."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    """Several field errors at once: {field: [messages]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1][0]}", field=first[0])


class NotFound(DomainError):
    """Missing, or outside the caller's scope: the two are indistinguishable on purpose."""

    status = 404


class Forbidden(DomainError):
    status = 403


class Conflict(DomainError):
    """The state changed under us (already approved, already revoked, ...)."""

    status = 409
