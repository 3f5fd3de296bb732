"""Console form fields shared by several screens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from wtforms import Field, SelectMultipleField
from wtforms.utils import unset_value
from wtforms.widgets import CheckboxInput, ListWidget


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


@dataclass(frozen=True)
class Place:
    """A row of the scope picker: a whole organization ('o:ID') or a department ('d:ID')."""

    value: str
    label: str
    note: str
    is_department: bool


class ScopeGrantsWidget:
    """A searchable table: one row per organization and department, a checkbox for the
    scope and one per certificate type (the privileges held there). No Ctrl-click."""

    def __call__(self, field: ScopeGrantsField, **kwargs: Any) -> Markup:
        table_id = f"{field.id}-table"
        head = Markup("").join(
            Markup('<th class="text-center">{}</th>').format(label) for _, label in field.types
        )
        rows = []
        for place in field.places:
            types = field.data.get(place.value, set())
            chosen = place.value in field.data
            cells = Markup("").join(
                Markup(
                    '<td class="text-center"><input type="checkbox" name="{}-priv" value="{}:{}"'
                    ' data-cw-privilege aria-label="{} on {}"{}></td>'
                ).format(
                    field.name,
                    place.value,
                    value,
                    label,
                    place.label,
                    Markup(" checked") if value in types else "",
                )
                for value, label in field.types
            )
            rows.append(
                Markup(
                    '<tr data-cw-search="{}" data-place="{}"><td class="{}"><label class="mb-0">'
                    '<input type="checkbox" name="{}" value="{}" data-cw-scope{}> {}'
                    ' <small class="text-muted">{}</small></label></td>{}</tr>'
                ).format(
                    place.label,
                    place.value,
                    "cw-dept" if place.is_department else "",
                    field.name,
                    place.value,
                    Markup(" checked") if chosen else "",
                    place.label.rsplit(" / ", 1)[-1] if place.is_department else place.label,
                    place.note,
                    cells,
                )
            )
        body = Markup("").join(rows) or Markup(
            '<tr><td colspan="5" class="text-muted">You may not grant any scope.</td></tr>'
        )
        return Markup(
            '<input type="search" class="form-control form-control-sm mb-2" id="{}-search"'
            ' placeholder="Find an organization or department" data-cw-filter-rows="#{}">'
            '<div class="cw-scope-picker"><table class="table table-sm mb-0" id="{}">'
            "<thead><tr><th>Organization / department</th>{}</tr></thead>"
            "<tbody>{}</tbody></table></div>"
        ).format(field.id, table_id, table_id, head, body)


class ScopeGrantsField(Field):
    """{place: {certificate type values}}: the scopes granted and the privileges on each.

    Posted as `NAME=o:1` (the scope) and `NAME-priv=o:1:ssl` (a privilege on it); a row
    with a privilege ticked counts as chosen even when its scope box is not."""

    widget = ScopeGrantsWidget()

    def __init__(self, label: str | None = None, validators: Any = None, **kwargs: Any) -> None:
        super().__init__(label, validators, **kwargs)
        self.places: list[Place] = []
        self.types: list[tuple[str, str]] = []
        self.data: dict[str, set[str]] = {}

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        self.process_errors = []
        if formdata is not None and formdata:
            chosen: dict[str, set[str]] = {v: set() for v in formdata.getlist(self.name)}
            for item in formdata.getlist(f"{self.name}-priv"):
                place, _, cert_type = item.rpartition(":")
                if place:
                    chosen.setdefault(place, set()).add(cert_type)
            self.data = chosen
        else:
            self.data = dict(data) if isinstance(data, dict) else {}

    def populate_obj(self, obj: Any, name: str) -> None:
        """Scopes are saved by the accounts service, never copied onto the model."""
