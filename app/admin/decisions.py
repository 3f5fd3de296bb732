"""The approve / decline form shared by requests and domain delegations."""

from __future__ import annotations

from wtforms import TextAreaField
from wtforms.validators import Length

from app.admin.base import AdminForm


class DecideForm(AdminForm):
    message = TextAreaField(
        "Message (optional, kept in the audit log)", validators=[Length(max=2000)]
    )
