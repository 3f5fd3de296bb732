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

It also replaces the framework's visible defaults once for all views: human column labels
(COMMON_LABELS, then each view's column_labels), a search placeholder naming what is
searched, an empty list that says what it holds and links to the first action, and
success messages that name the record ("Organization 'Acme Corp' created.").
"""

from __future__ import annotations

import csv
import json
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
    g,
    has_request_context,
    redirect,
    request,
    session,
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
from sqlalchemy import false, select
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

# Column labels shared by every screen; a view's own column_labels win. Flask-Admin's
# default would show the attribute name title-cased ("Crl Number", "Renewal Of Id").
COMMON_LABELS = {
    "id": "#",
    "created_at": "Created",
    "updated_at": "Updated",
    "active": "Active",
    "address1": "Address line 1",
    "address2": "Address line 2",
    "address3": "Address line 3",
    "postal_code": "Postal code",
    "state": "State / province",
    "full_name": "Full name",
    "timezone": "Time zone",
    "password_changed_at": "Password changed",
    "must_change_password": "Must change password",
    "last_login_at": "Last sign-in",
    "locked_until": "Locked until",
    "common_name": "Common name",
    "subject": "Subject",
    "subject_dn": "Subject",
    "issuer_dn": "Issuer",
    "sans": "Subject alternative names",
    "serial_hex": "Serial number",
    "fingerprint": "SHA-256 fingerprint",
    "not_before": "Valid from",
    "not_after": "Valid to",
    "key_type": "Key type",
    "signature_hash": "Signature hash",
    "cert_type": "Certificate type",
    "crl_number": "CRL number",
    "crl_this_update": "CRL published",
    "crl_next_update": "CRL next update",
    "renewal_of_id": "Renewal of",
    "replaces_id": "Replaces",
    "certificate": "Certificate",
    "decided_at": "Decided",
    "decision_message": "Decision message",
    "failure_reason": "Failure reason",
    "external_requesters": "External requesters",
    "requester_email": "Requester",
    "auto_renew": "Auto-renew",
    "renew_days_before": "Renew days before expiry",
    "term_days": "Term (days)",
    "requested_by": "Requested by",
    "four_eyes": "Four eyes",
    "actor_id": "Actor ID",
    "object_id": "Object ID",
    "object_type": "Object",
    "organization_id": "Organization ID",
    "department_id": "Department ID",
    "prev_hash": "Previous hash",
    "hash": "Hash (HMAC)",
    "finished_at": "Finished",
    "sent_at": "Sent",
    "to": "To",
    "body": "Body",
}
# Flask-Admin's stock flash messages, replaced by ones that name the record.
_STOCK_FLASHES = {
    "Record was successfully created.": "created",
    "Record was successfully saved.": "saved",
    "Record was successfully deleted.": "deleted",
}
_STOCK_FAILURES = {
    "Failed to create record.": "was not created",
    "Failed to save record.": "was not saved",
}
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
            g.cw_record = result
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

    # What one row is called in messages ("Organization 'Acme Corp' created.").
    record_noun = "Record"
    # What an empty list holds, said to someone who has never used the screen.
    empty_text = "Nothing here yet."
    # The search box says what one can search for; None: built from the labels.
    search_hint: str | None = None

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
            and not audit.is_denial_pending(object_type=self.model.__name__, object_id=value)
        ):
            audit.record_denied(
                actor=actor(),
                object_type=self.model.__name__,
                object_id=value,
                attempted=f"console {request.endpoint}",
            )
        return row

    def record_foreign_ids(self, raw_ids: Sequence[Any]) -> None:
        """Record, as denied attempts, the ids among ``raw_ids`` that name an existing row
        outside the scoped query (bulk actions and live-status polls drop them silently,
        as if missing; get_one records the same for a single id)."""
        if current_scope().is_master:
            return
        wanted = {v for v in (parse_id(i) for i in raw_ids) if v is not None}
        if not wanted:
            return
        pk = getattr(self.model, self._primary_key)
        visible = {row[0] for row in self.get_query().with_entities(pk).filter(pk.in_(wanted))}
        foreign = db.session.execute(
            select(pk).where(pk.in_(wanted - visible)).order_by(pk)
        ).scalars()
        for value in foreign:
            audit.record_denied(
                actor=actor(),
                object_type=self.model.__name__,
                object_id=value,
                attempted=f"console {request.endpoint}",
            )

    def handle_action(self, return_view: str | None = None) -> Any:
        # Flask-Admin's actions load their rows through get_query (scoped), so an id of
        # another scope is skipped: recorded here like any other reach outside the scope.
        self.record_foreign_ids(request.form.getlist("rowid"))
        return super().handle_action(return_view)

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

    # --- labels, search, empty lists, messages ----------------------------------------
    def get_column_name(self, field: str) -> str:
        if self.column_labels and field in self.column_labels:
            return str(self.column_labels[field])
        if field in COMMON_LABELS:
            return COMMON_LABELS[field]
        return str(super().get_column_name(field))

    def search_placeholder(self) -> str | None:
        if not self.column_searchable_list:
            return None
        if self.search_hint:
            return self.search_hint
        names = [
            self.get_column_name(c if isinstance(c, str) else c.key)
            for c in self.column_searchable_list
        ]
        words = [n if n.isupper() or n[:2].isupper() else n.lower() for n in names]
        head = ", ".join(words[:-1])
        return "Search by " + (f"{head} or {words[-1]}" if head else words[-1])

    def get_empty_list_message(self) -> str:
        return self.empty_text

    def empty_actions(self) -> list[tuple[str, str]]:
        """Buttons an empty list offers: (label, URL); by default the create form."""
        if self.can_create:
            return [(f"Create the first {self.record_noun.lower()}", url_for(".create_view"))]
        return []

    def menu_links(self) -> list[tuple[str, str, str]]:
        """Extra entries of the list's tab bar: (label, URL, element id)."""
        return []

    def record_label(self, model: Any) -> str:
        return str(model)

    def _name_the_record(self, label: str | None) -> None:
        """Replace Flask-Admin's 'Record was successfully ...' with a named message."""
        flashes = session.get("_flashes")
        if not flashes:
            return
        noun = self.record_noun
        named = []
        for category, message in flashes:
            if message in _STOCK_FLASHES and label:
                message = f"{noun} '{label}' {_STOCK_FLASHES[message]}."
            elif message in _STOCK_FAILURES:
                message = f"The {noun.lower()} {_STOCK_FAILURES[message]}: correct the fields marked below."
            named.append((category, message))
        session["_flashes"] = named

    def _created_label(self) -> str | None:
        record = g.pop("cw_record", None)
        return self.record_label(record) if record not in (None, True, False) else None

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        response = super().create_view()
        self._name_the_record(self._created_label())
        return response

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        response = super().edit_view()
        label = self._created_label()
        if label is None:
            model = self.get_one(request.args.get("id"))
            label = self.record_label(model) if model is not None else None
        self._name_the_record(label)
        return response

    @expose("/delete/", methods=("POST",))
    def delete_view(self) -> Any:
        model = self.get_one(request.form.get("id"))
        label = self.record_label(model) if model is not None else None
        response = super().delete_view()
        self._name_the_record(label)
        return response

    # --- export --------------------------------------------------------------------
    export_types = ["csv"]

    def export_limit(self) -> int:
        return int(current_app.config["CW_EXPORT_MAX_ROWS"])

    @expose("/export/<export_type>/")
    def export(self, export_type: str) -> Any:
        """The list as filtered, searched and sorted, streamed from the scoped query: CSV
        (formula-escaped cells), or JSON (an array of objects by column, plain values) for
        views that list "json" in export_types."""
        if not self.can_export or export_type not in self.export_types:
            flash(gettext("Permission denied."), "error")
            return redirect(get_redirect_target() or self.get_url(".index_view"))
        view_args = self._get_list_extra_args()
        limit = self.export_limit()
        if export_type == "json":
            body, mimetype = self._export_json(view_args, limit), "application/json"
        else:
            body, mimetype = self._export_lines(view_args, limit), "text/csv"
        return Response(
            stream_with_context(body),
            mimetype=mimetype,
            headers={"Content-Disposition": content_disposition(self.get_export_name(export_type))},
        )

    def _export_chunks(self, view_args: Any, limit: int) -> Iterator[list[Any] | None]:
        """The rows to export in chunks of EXPORT_CHUNK (prepared for their formatters);
        None last when the export stopped at `limit` rows and there were more."""
        # The request's session closed when the view returned; the stream runs in a fresh
        # one, so the signed-in admin (scope, formatters) is attached to it first.
        db.session.add(actor())
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
        chunk: list[Any] = []
        for taken, row in enumerate(query.yield_per(EXPORT_CHUNK)):
            if taken == limit:  # the query asked for limit + 1 rows: there are more
                if chunk:
                    self.prepare_rows(chunk)
                    yield chunk
                yield None
                return
            chunk.append(row)
            if len(chunk) == EXPORT_CHUNK:
                self.prepare_rows(chunk)
                yield chunk
                chunk = []
        if chunk:
            self.prepare_rows(chunk)
            yield chunk

    def _capped_message(self, limit: int) -> str:
        return (
            f"Export capped at {limit} rows (CW_EXPORT_MAX_ROWS): "
            "narrow the list with filters or a search to export the rest."
        )

    def _export_lines(self, view_args: Any, limit: int) -> Iterator[str]:
        writer = csv.writer(_Echo())
        columns = [name for name, _ in self._export_columns]
        yield writer.writerow([export_cell(label) for _, label in self._export_columns])
        written = 0
        try:
            for chunk in self._export_chunks(view_args, limit):
                if chunk is None:
                    yield writer.writerow([self._capped_message(limit)])
                    break
                # A chunk's lines as one piece (one write to the socket, not one per row).
                yield "".join(
                    writer.writerow(
                        [export_cell(self.get_export_value(row, name)) for name in columns]
                    )
                    for row in chunk
                )
                written += len(chunk)
        except Exception:
            log.exception("export of %s stopped after %d rows", self.endpoint, written)
            yield writer.writerow(
                [f"Export interrupted by an error after {written} rows: this file is incomplete."]
            )
            raise

    def _export_json(self, view_args: Any, limit: int) -> Iterator[str]:
        # JSON is read by programs, not spreadsheets: values stay as they are (formula
        # escaping is for CSV cells). A capped export ends with {"export_capped": message}.
        columns = [name for name, _ in self._export_columns]
        first = True
        yield "["
        for chunk in self._export_chunks(view_args, limit):
            items = (
                [{"export_capped": self._capped_message(limit)}]
                if chunk is None
                else [{name: self.get_export_value(row, name) for name in columns} for row in chunk]
            )
            text = []
            for item in items:
                text.append(("\n" if first else ",\n") + json.dumps(item, default=str))
                first = False
            yield "".join(text)
        yield "\n]\n"


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
