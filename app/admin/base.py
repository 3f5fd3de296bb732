"""The secure base for every console view.

Flask-Admin's defaults are open; this closes them once for all views:
- is_accessible: signed in, with a role the view allows (anonymous -> sign-in page);
- CSRF: every form is a Flask-WTF form and CSRFProtect guards every POST;
- scope: get_query, get_count_query AND get_one (edit, details, delete, actions) are
  filtered by the admin's scope; filter choices and ajax lookups are computed per request;
- input: ids beyond 63 bits, unknown filter values and page numbers out of range name
  nothing (never a 500); arguments that collide with URL building are dropped;
- export: streamed from the scoped query in constant memory, capped at CW_EXPORT_MAX_ROWS
  (the last line says so), every text cell (related names too) formula-escaped, with an
  RFC 6266 file name (app/downloads.py).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import quote, urlencode

from flask import (
    Response,
    abort,
    current_app,
    flash,
    has_request_context,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import BaseView, expose
from flask_admin.babel import gettext
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from markupsafe import Markup, escape
from sqlalchemy import false
from sqlalchemy.sql import ColumnElement
from wtforms.fields.choices import SelectChoice

from app.admin import display
from app.downloads import content_disposition
from app.extensions import db
from app.ids import parse_id
from app.models import Admin, CertType, Role
from app.services import audit
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope, scope_of

log = logging.getLogger(__name__)

ALL_ROLES = (Role.MRAO, Role.RAO, Role.DRAO)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Query arguments that Flask-Admin's templates pass on to url_for(**request.args) next to
# their own: "?export_type=x" made every list page with an export link a 500.
RESERVED_ARGS = frozenset({"export_type", "endpoint", "_external", "_anchor", "_method", "_scheme"})
SAFE_INT = re.compile(r"-?[0-9]{1,18}")  # inside a 64-bit column, however it is signed
RETURN_ARGS = ("url", "next")  # return addresses: a control character would split Location
MAX_PAGE = 10_000_000  # page x page size stays far inside a 64-bit OFFSET
EXPORT_CHUNK = 500  # rows fetched per round trip while streaming an export


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


def export_cell(value: Any) -> str:
    """One CSV cell: numbers as they are; everything else (text, related objects such as an
    organization or department, enums, dates) as text, formula-escaped."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return str(escape_formula(str(value)))


def is_dropped_arg(name: str, value: str) -> bool:
    """A query argument the console drops (redirecting without it) before any view runs."""
    return name in RESERVED_ARGS or (name in RETURN_ARGS and not value.isprintable())


class _Echo:
    """A file-like object whose write() returns the line (csv.writer for streaming)."""

    def write(self, value: str) -> str:
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

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        args = list(request.args.items(multi=True))
        kept = [(k, v) for k, v in args if not is_dropped_arg(k, v)]
        if len(kept) != len(args):
            query = "?" + urlencode(kept) if kept else ""
            return redirect(quote(request.path) + query)
        return super()._handle_view(name, **kwargs)  # type: ignore[misc]

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
        value = parse_id(id)
        if value is None:
            return None
        pk = getattr(self.model, self._primary_key)
        row = self.get_query().filter(pk == value).one_or_none()
        if (
            row is None
            and not current_scope().is_master
            and db.session.get(self.model, value) is not None
        ):
            audit.record_denied(
                actor=actor(),
                object_type=self.model.__name__,
                object_id=value,
                attempted=f"console {request.endpoint}",
            )
        return row

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        count, data = super().get_list(*args, **kwargs)
        if isinstance(data, list):
            self.prepare_rows(data)
        return count, data

    def prepare_rows(self, rows: list[Any]) -> None:
        """Before a list page or an export chunk is formatted: load in one query what the
        view's formatters would otherwise ask row by row (kept on flask.g)."""

    def _get_filter_groups(self) -> Any:
        # Filter choices depend on who is asking: recompute them per request.
        self._refresh_filters_cache()
        return super()._get_filter_groups()

    # --- list arguments ------------------------------------------------------------
    def _get_list_extra_args(self) -> Any:
        args = super()._get_list_extra_args()
        args.page = min(max(args.page or 0, 0), MAX_PAGE)
        return args

    def _get_list_filter_args(self) -> Any:
        """Flask-Admin's filters, minus values that name nothing: not among a filter's
        choices (?flt0_0=3 on a status), not a 63-bit id on an integer column, not a member
        of an enum column. They are flashed as invalid, like a malformed date."""
        filters = super()._get_list_filter_args()
        if not filters:
            return filters
        kept = []
        for idx, name, value in filters:
            flt = self._filters[idx]  # type: ignore[index]
            if self.is_valid_filter_value(flt, value):
                kept.append((idx, name, value))
            else:
                flash(self.get_invalid_value_msg(value, flt), "error")
        return kept

    def is_valid_filter_value(self, flt: Any, value: str) -> bool:
        options = flt.get_options(self)
        if options:
            return value in {str(key) for key, _ in options}
        column = getattr(flt, "column", None)
        try:
            python_type = column.type.python_type if column is not None else None
        except (AttributeError, NotImplementedError):
            python_type = None
        if python_type is int:
            return SAFE_INT.fullmatch(value) is not None
        if isinstance(python_type, type) and issubclass(python_type, Enum):
            return value in {member.value for member in python_type}
        return True

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
    export_types = ["csv"]

    def export_limit(self) -> int:
        return int(current_app.config["CW_EXPORT_MAX_ROWS"])

    @expose("/export/<export_type>/")
    def export(self, export_type: str) -> Any:
        """CSV of the list as filtered, searched and sorted, streamed from the scoped query."""
        if not self.can_export or export_type not in self.export_types or export_type != "csv":
            flash(gettext("Permission denied."), "error")
            return redirect(get_redirect_target() or self.get_url(".index_view"))
        view_args = self._get_list_extra_args()
        return Response(
            stream_with_context(self._export_lines(view_args, self.export_limit())),
            mimetype="text/csv",
            headers={"Content-Disposition": content_disposition(self.get_export_name("csv"))},
        )

    def _export_lines(self, view_args: Any, limit: int) -> Iterator[str]:
        # The request's session closed when the view returned; the stream runs in a fresh
        # one, so the signed-in admin (scope, formatters) is attached to it first.
        db.session.add(actor())
        writer = csv.writer(_Echo())
        columns = [name for name, _ in self._export_columns]
        yield writer.writerow([export_cell(label) for _, label in self._export_columns])
        sort = self._get_column_by_idx(view_args.sort)
        _, query = self.get_list(
            None,
            sort[0] if sort else None,
            view_args.sort_desc,
            view_args.search,
            view_args.filters,
            execute=False,
            page_size=limit + 1,
        )
        written = 0

        def lines(chunk: list[Any]) -> Iterator[str]:
            """A chunk's lines as one piece (one write to the socket, not one per row)."""
            nonlocal written
            self.prepare_rows(chunk)
            text = []
            for row in chunk:
                text.append(
                    writer.writerow(
                        [export_cell(self.get_export_value(row, name)) for name in columns]
                    )
                )
                written += 1
            if text:
                yield "".join(text)

        try:
            chunk: list[Any] = []
            capped = False
            for row in query.yield_per(EXPORT_CHUNK):
                if written + len(chunk) == limit:
                    capped = True  # the query asked for limit + 1 rows: there are more
                    break
                chunk.append(row)
                if len(chunk) == EXPORT_CHUNK:
                    yield from lines(chunk)
                    chunk = []
            yield from lines(chunk)
            if capped:
                yield writer.writerow(
                    [
                        f"Export capped at {limit} rows (CW_EXPORT_MAX_ROWS): "
                        "narrow the list with filters or a search to export the rest."
                    ]
                )
        except Exception:
            log.exception("export of %s stopped after %d rows", self.endpoint, written)
            yield writer.writerow(
                [f"Export interrupted by an error after {written} rows: this file is incomplete."]
            )
            raise


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
