"""What the portal's pages share: a refusal shown at its field, the client's address,
and the answer to throttled attempts (429 with Retry-After)."""

from __future__ import annotations

from typing import Any

from flask import make_response, render_template, request
from flask_wtf import FlaskForm

from app.extensions import db
from app.services.errors import DomainError, ValidationFailed
from app.services.persons.throttle import Throttled


def client_ip() -> str:
    return request.remote_addr or ""


def show_refusal(form: FlaskForm, exc: DomainError) -> list[str]:
    """Put each message on its field; return those that belong to no field."""
    errors = exc.errors if isinstance(exc, ValidationFailed) else {exc.field or "": [exc.message]}
    general: list[str] = []
    for field, messages in errors.items():
        target = getattr(form, field, None) if field else None
        if target is not None and hasattr(target, "errors"):
            target.errors = [*target.errors, *messages]
        else:
            general.extend(messages)
    return general


def refused(form: FlaskForm, exc: DomainError, template: str, **context: Any) -> Any:
    """Roll back, then render the form again with the refusal (429 when throttled)."""
    db.session.rollback()
    general = show_refusal(form, exc)
    status = exc.status if isinstance(exc, Throttled) else 200
    response = make_response(
        render_template(template, form=form, general=general, **context), status
    )
    if isinstance(exc, Throttled):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
