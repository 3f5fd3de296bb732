"""Console forms for Discovery: the task form (targets, rules in order, schedule) and the
assignment rule form (conditions), with the glue between their fields and the services."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from wtforms import (
    FieldList,
    FileField,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields import FloatField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from app.admin.base import AdminForm, select_choices
from app.recurrence import WEEKDAYS, ScheduleKind
from app.scan import rules as scan_rules
from app.scan import settings

ZONES = sorted(available_timezones())
KIND_LABELS = {
    ScheduleKind.MANUAL: "Manual (only when started)",
    ScheduleKind.ONCE: "Once",
    ScheduleKind.DAILY: "Daily",
    ScheduleKind.WEEKLY: "Weekly",
    ScheduleKind.MONTHLY: "Monthly",
    ScheduleKind.QUARTERLY: "Quarterly",
    ScheduleKind.SEMIANNUALLY: "Semi-annually",
    ScheduleKind.ANNUALLY: "Annually",
}
MONTHS = [datetime(2000, m, 1).strftime("%B") for m in range(1, 13)]
CYCLE = {"quarterly": 3, "semiannually": 6, "annually": 12}
BY_DAY_OF_MONTH = ("monthly", "quarterly", "semiannually", "annually")
RULE_SLOTS = 4  # empty rule selects offered beyond the rules already attached

FIELD_LABELS = {
    scan_rules.Field.SUBJECT_CN: "Subject CN",
    scan_rules.Field.SUBJECT_O: "Subject O (organization)",
    scan_rules.Field.SUBJECT_OU: "Subject OU",
    scan_rules.Field.SAN: "Subject alternative name",
    scan_rules.Field.ISSUER: "Issuer",
    scan_rules.Field.HOST_NAME: "Host name",
    scan_rules.Field.IP: "IP address",
    scan_rules.Field.PORT: "Port",
    scan_rules.Field.KEY_TYPE: "Key type",
}
OPERATOR_LABELS = {
    scan_rules.Operator.EQUALS: "equals",
    scan_rules.Operator.CONTAINS: "contains",
    scan_rules.Operator.STARTS_WITH: "starts with",
    scan_rules.Operator.ENDS_WITH: "ends with",
    scan_rules.Operator.MATCHES: "matches (regex)",
}
CONDITION_ROWS = 6


class TaskForm(AdminForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    agent = SelectField(
        "Agent",
        default="Auto",
        description="Auto: the built-in scanner, run by Certwright's workers. A named agent "
        "scans from its own network zone; the ranges must lie in its allow-list, and its "
        "shards wait for it (never run elsewhere) while it is offline.",
    )
    ranges = TextAreaField(
        "Ranges",
        validators=[Length(max=100_000)],
        description="One per line: host names, IPv4/IPv6 addresses, CIDR blocks "
        "(10.0.0.0/24), start-end ranges (10.0.0.5-10.0.0.20).",
    )
    ports = StringField(
        "Ports",
        default=settings.PORTS,
        validators=[Length(max=512)],
        description="Comma separated; ranges allowed: 443,8443,9000-9010.",
    )
    host_overrides = TextAreaField(
        "Host overrides",
        validators=[Length(max=20_000)],
        description="Optional, one per line: host.example.com = 10.0.0.5, 2001:db8::5 "
        "(split-horizon DNS: scan the name at these addresses).",
    )
    connect_timeout = FloatField(
        "Connect timeout (seconds)", default=settings.CONNECT_TIMEOUT, validators=[InputRequired()]
    )
    handshake_timeout = FloatField(
        "Handshake timeout (seconds)",
        default=settings.HANDSHAKE_TIMEOUT,
        validators=[InputRequired()],
    )
    concurrency = IntegerField(
        "Concurrency (connections in flight)",
        default=settings.CONCURRENCY,
        validators=[InputRequired()],
    )
    rate = FloatField(
        "Rate cap (new connections a second)",
        default=settings.RATE,
        validators=[Optional()],
        description="0: no cap. Keeps a scan from flooding a WAN link; with silent "
        "addresses a scan also takes at least targets x connect timeout / concurrency.",
    )
    protocols = TextAreaField(
        "Protocols",
        validators=[Length(max=2000)],
        description="Optional, 'port = protocol' per line or comma: 2525 = smtp, * = tls. "
        "By default the port decides: 25/587 smtp, 143 imap, 110 pop3, 389 ldap, 21 ftp "
        "(STARTTLS), 5222 xmpp, 5432 postgres, 3389 rdp; 465 smtps, 993 imaps, 995 pop3s, "
        "636 ldaps, 990 ftps and every other port: TLS at once.",
    )
    owner = SelectField("Owner organization", validate_choice=False)
    rule_order = FieldList(SelectField("Rule", validate_choice=False), label="Assignment rules")
    schedule_kind = SelectField(
        "Schedule",
        choices=select_choices((k.value, label) for k, label in KIND_LABELS.items()),
        validate_choice=False,  # the schedule parser names an unknown kind
    )
    schedule_time = StringField("Time of day (HH:MM, 24-hour)", default="02:00")
    schedule_timezone = SelectField(
        "Time zone", choices=select_choices((z, z) for z in ZONES), validate_choice=False
    )
    schedule_weekday = SelectField(
        "Day of the week",
        choices=select_choices((str(i), d.title()) for i, d in enumerate(WEEKDAYS)),
        validate_choice=False,  # only some kinds use it; the schedule parser checks it
    )
    schedule_day_of_month = SelectField(
        "Day of the month",
        choices=select_choices((str(d), str(d)) for d in range(1, 32)),
        validate_choice=False,
        description="A day the month lacks runs on its last day (31 -> Feb 28/29, Apr 30).",
    )
    schedule_month = SelectField(
        "Month",
        choices=select_choices((str(i), m) for i, m in enumerate(MONTHS, start=1)),
        validate_choice=False,
        description="Annually: the month of the run. Quarterly / semi-annually: any month "
        "the runs should fall in.",
    )
    schedule_at = StringField(
        "Date and time", render_kw={"type": "datetime-local"}, description="In the time zone above."
    )


def schedule_data(values: Any) -> dict[str, Any]:
    """The service's schedule dict from form fields (a TaskForm or request.args)."""

    def get(name: str) -> str:
        field = getattr(values, name, None)
        raw = field.data if field is not None and hasattr(field, "data") else None
        if raw is None and hasattr(values, "get"):
            raw = values.get(name)
        return str(raw or "").strip()

    kind = get("schedule_kind") or "manual"
    data: dict[str, Any] = {"kind": kind, "timezone": get("schedule_timezone") or "UTC"}
    if kind not in ("manual", "once"):
        data["time"] = get("schedule_time")
    if kind == "once":
        data["at"] = get("schedule_at")
    if kind == "weekly":
        data["weekday"] = get("schedule_weekday")
    if kind in BY_DAY_OF_MONTH:
        data["day_of_month"] = get("schedule_day_of_month")
    if kind in CYCLE and get("schedule_month").isdigit():
        month = int(get("schedule_month"))
        data["month"] = (month - 1) % CYCLE[kind] + 1  # any month of the cycle names it
    return data


def fill_schedule(form: TaskForm, schedule: dict[str, Any]) -> None:
    form.schedule_kind.data = schedule.get("kind") or "manual"
    form.schedule_timezone.data = schedule.get("timezone") or "UTC"
    form.schedule_time.data = schedule.get("time") or "02:00"
    if schedule.get("weekday") is not None:
        form.schedule_weekday.data = str(schedule["weekday"])
    if schedule.get("day_of_month") is not None:
        form.schedule_day_of_month.data = str(schedule["day_of_month"])
    if schedule.get("month") is not None:
        form.schedule_month.data = str(schedule["month"])
    if schedule.get("at"):
        form.schedule_at.data = str(schedule["at"])[:16]


def format_run(at: datetime, zone_name: str, viewer_zone: ZoneInfo) -> str:
    """'Mon 2026-01-05 03:00 CET' in the schedule's zone (+ the viewer's when different)."""
    local = at.astimezone(ZoneInfo(zone_name))
    text = local.strftime("%a %Y-%m-%d %H:%M %Z")
    mine = at.astimezone(viewer_zone)
    if mine.strftime("%Y-%m-%d %H:%M %Z") != local.strftime("%Y-%m-%d %H:%M %Z"):
        text += mine.strftime(" (your time: %a %H:%M %Z)")
    return text


class CsvImportForm(AdminForm):
    file = FileField("CSV file")
    text = TextAreaField("…or paste the CSV", validators=[Length(max=1_000_000)])


class ConditionForm(Form):
    field = SelectField(
        "Field",
        choices=select_choices(
            [("", "—"), *((f.value, label) for f, label in FIELD_LABELS.items())]
        ),
        validate_choice=False,
    )
    operator = SelectField(
        "Operator",
        choices=select_choices((o.value, label) for o, label in OPERATOR_LABELS.items()),
        validate_choice=False,
    )
    value = StringField("Value", validators=[Length(max=scan_rules.MAX_CONDITION_VALUE)])


class RuleForm(AdminForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    match_mode = SelectField(
        "Match",
        choices=select_choices([("all", "All conditions (AND)"), ("any", "Any condition (OR)")]),
    )
    conditions = FieldList(FormField(ConditionForm), min_entries=CONDITION_ROWS)
    target = SelectField("Assign matching certificates to", validate_choice=False)


def rule_conditions(form: RuleForm) -> tuple[list[dict[str, str]], list[int]]:
    """The filled condition rows (blank rows ignored) and their row numbers (0-based)."""
    conditions, rows = [], []
    for index, entry in enumerate(form.conditions.entries):
        value = (entry.form.value.data or "").strip()
        if not entry.form.field.data and not value:
            continue
        conditions.append(
            {
                "field": entry.form.field.data or "",
                "operator": entry.form.operator.data,
                "value": value,
            }
        )
        rows.append(index)
    return conditions, rows


_CONDITION = re.compile(r"condition (\d+): (.*)")


def place_condition_errors(form: RuleForm, messages: list[str], rows: list[int]) -> list[str]:
    """Put 'condition N: ...' messages at the row they concern; return the others."""
    rest = []
    for message in messages:
        match = _CONDITION.fullmatch(message)
        number = int(match[1]) if match else 0
        if match and 1 <= number <= len(rows):
            entry = form.conditions.entries[rows[number - 1]]
            entry.form.value.errors = [*entry.form.value.errors, match[2]]
        else:
            rest.append(message)
    return rest


def conditions_text(mode: str, conditions: list[dict[str, str]]) -> str:
    """'Subject O (organization) equals "Example Corp" AND Port equals "443"'."""
    parts = []
    for c in conditions:
        try:
            field = FIELD_LABELS[scan_rules.Field(c.get("field", ""))]
            operator = OPERATOR_LABELS[scan_rules.Operator(c.get("operator", ""))]
        except ValueError:
            field, operator = c.get("field", ""), c.get("operator", "")
        parts.append(f'{field} {operator} "{c.get("value", "")}"')
    return (" AND " if mode == "all" else " OR ").join(parts)
