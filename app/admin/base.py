"""The secure base for every console view.

Flask-Admin's defaults are open; this closes them once for all views:
- is_accessible: signed in, with a role the view allows (anonymous -> sign-in page);
- CSRF: every form is a Flask-WTF form and CSRFProtect guards every POST;
- scope: get_query, get_count_query AND get_one (edit, details, delete, actions) are
  filtered by the admin's scope; filter choices and ajax lookups are computed per request;
- export: cells that a spreadsheet would run as formulas are neutralised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import abort, flash, has_request_context, redirect, request, url_for
from flask_admin import BaseView
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from markupsafe import Markup, escape
from sqlalchemy import false
from sqlalchemy.sql import ColumnElement
from wtforms.fields.choices import SelectChoice

from app.admin import display
from app.extensions import db
from app.models import Admin, CertType, Role
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope, scope_of

ALL_ROLES = (Role.MRAO, Role.RAO, Role.DRAO)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class AdminForm(FlaskForm):
    """Flask-WTF form (CSRF token) usable as Flask-Admin's form_base_class."""

    def __init__(
        self, formdata: Any = _Auto, obj: Any = None, prefix: str = "", **kwargs: Any
    ) -> None:
        self._obj = obj
        super().__init__(formdata=formdata, obj=obj, prefix=prefix, **kwargs)


def actor() -> Admin:
    return current_user._get_current_object()  # type: ignore[no-any-return]


def current_scope() -> Scope:
    return scope_of(actor())


def select_choices(pairs: Any) -> list[SelectChoice]:
    """(value, label) pairs as WTForms SelectChoice objects (tuples are deprecated)."""
    return [SelectChoice(value, label) for value, label in pairs]


def per_request(fn: Callable[[], list[tuple[Any, str]]]) -> Callable[[], list[tuple[Any, str]]]:
    """Filter choices computed for the admin asking (never at start-up, never cached)."""

    def options() -> list[tuple[Any, str]]:
        if not has_request_context() or not current_user.is_authenticated:
            return []
        return [(str(value), label) for value, label in fn()]

    return options


def escape_formula(value: Any) -> Any:
    """OWASP CSV injection: prefix a quote to cells a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def apply_errors(form: Any, exc: DomainError) -> None:
    """Show a service's refusal at the form field it concerns (or as a flash)."""
    errors = exc.errors if isinstance(exc, ValidationFailed) else {exc.field or "": [exc.message]}
    for field, messages in errors.items():
        target = getattr(form, field, None) if field else None
        if target is not None and hasattr(target, "errors"):
            if not isinstance(target.errors, list):
                target.errors = list(target.errors)
            target.errors.extend(messages)
        else:
            for message in messages:
                flash(message, "error")


class SecureMixin:
    """Access control shared by model views and custom pages, and the one way a console
    view calls a service (run_service)."""

    roles: Sequence[Role] = ALL_ROLES
    # Service errors name semantic fields; a view maps them to its form's field names.
    field_map: dict[str, str] = {}

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.role in self.roles)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def run_service(
        self,
        form: Any,
        fn: Callable[[], Any],
        *,
        success: str | Callable[[Any], str] | None = None,
    ) -> Any:
        """Call a service and commit once; flash `success` (a message, or one made from the
        result). On refusal roll back and show the message on the form (or flash it);
        return False. The console's one commit/rollback/flash block."""
        try:
            result = fn()
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if form is not None:
                if exc.field in self.field_map:
                    exc.field = self.field_map[exc.field]
                if isinstance(exc, ValidationFailed):
                    mapped: dict[str, list[str]] = {}
                    for field, messages in exc.errors.items():
                        mapped.setdefault(self.field_map.get(field, field), []).extend(messages)
                    exc.errors = mapped
                apply_errors(form, exc)
            else:
                flash(exc.message, "error")
            return False
        if success is not None:
            flash(success(result) if callable(success) else success, "success")
        return result if result is not None else True


class SecureView(SecureMixin, BaseView):
    """A custom console page."""


class ScopedAjaxLoader(QueryAjaxModelLoader):
    """Ajax lookups that only ever return rows inside the admin's scope."""

    def __init__(
        self,
        name: str,
        model: type,
        scope_clause: Callable[[Scope], ColumnElement[bool] | None],
        **options: Any,
    ) -> None:
        super().__init__(name, db, model, **options)
        self._scope_clause = scope_clause

    def get_query(self) -> Any:
        query = super().get_query()
        clause = self._scope_clause(current_scope())
        return query.filter(clause) if clause is not None else query

    def get_one(self, pk: Any) -> Any:
        return self.get_query().filter(self.model.id == pk).one_or_none()


class SecureModelView(SecureMixin, ModelView):
    """Every console list/edit view derives from this."""

    form_base_class = AdminForm
    column_type_formatters = display.FORMATTERS
    column_type_formatters_detail = display.DETAIL_FORMATTERS
    column_type_formatters_export = display.EXPORT_FORMATTERS
    can_view_details = True
    can_export = False
    can_set_page_size = True
    page_size = 50
    list_template = "admin/cw_list.html"

    def __init__(self, model: type, **kwargs: Any) -> None:
        super().__init__(model, db, **kwargs)

    # --- scope ---------------------------------------------------------------------
    def scope_clause(self, scope: Scope) -> ColumnElement[bool] | None:
        """Rows of this view the admin may see; None = all. Deny by default: views override."""
        return None if scope.is_master else false()

    def get_query(self) -> Any:
        query = super().get_query()
        clause = self.scope_clause(current_scope())
        return query.filter(clause) if clause is not None else query

    def get_count_query(self) -> Any:
        query = super().get_count_query()
        clause = self.scope_clause(current_scope())
        return query.filter(clause) if clause is not None else query

    def get_one(self, id: Any) -> Any:
        # Flask-Admin's own get_one is session.get(): that would ignore the scope.
        pk = self.model.id
        try:
            value = int(id)
        except (TypeError, ValueError):
            return None
        return self.get_query().filter(pk == value).one_or_none()

    def _get_filter_groups(self) -> Any:
        # Filter choices depend on who is asking: recompute them per request.
        self._refresh_filters_cache()
        return super()._get_filter_groups()

    # --- forms ---------------------------------------------------------------------
    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        """Fill per-request choices (scoped) on a form. Override where needed."""
        return form

    def create_form(self, obj: Any = None) -> Any:
        return self.prepare_form(super().create_form(obj))

    def edit_form(self, obj: Any = None) -> Any:
        return self.prepare_form(super().edit_form(obj), obj)

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, DomainError):
            flash(exc.message, "error")
            return True
        return bool(super().handle_view_exception(exc))

    # --- export --------------------------------------------------------------------
    def get_export_value(self, model: Any, name: str) -> Any:
        return escape_formula(super().get_export_value(model, name))


def link(url: str, text: Any) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url, escape(text))


class TypeAccessMixin:
    """A certificate-type tab is open to admins holding that type's privilege somewhere."""

    cert_type: CertType

    def is_accessible(self) -> bool:
        if not super().is_accessible():  # type: ignore[misc]
            return False
        scope = current_scope()
        held = [*scope.orgs.values(), *(p for _, p in scope.depts.values())]
        return scope.is_master or any(self.cert_type in p for p in held)
