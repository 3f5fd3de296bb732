"""How a notice reads: sandboxed Jinja templates with a subject, a plain-text part and an
HTML part, built in per kind of notice and replaceable per organization and type.

Templates run in Jinja's SandboxedEnvironment (no attribute access to internals, no
imports), the HTML part with autoescaping on, so a certificate whose common name is
``<script>`` shows as text. The subject becomes one header line: control characters and
line breaks are folded to spaces and it is cut to SUBJECT_MAX characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError
from markupsafe import escape

from app.notices.sandbox import BoundedSandbox

SUBJECT_MAX = 200
MAX_OUTPUT = 2_000_000  # a digest of 5,000 certificates is about 1 MB of HTML
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_URL = re.compile(r"https?://[^\s<>\"'&]+(?:&amp;[^\s<>\"'&]+)*")

# Built-in templates: a missing value renders empty. An organization's own templates: a
# value the notice does not have is an error (refused when saved; at send time the built-in
# template is used instead).
_TEXT = BoundedSandbox(autoescape=False, undefined=ChainableUndefined, trim_blocks=True)
_HTML = BoundedSandbox(autoescape=True, undefined=ChainableUndefined, trim_blocks=True)
_STRICT_TEXT = BoundedSandbox(autoescape=False, undefined=StrictUndefined, trim_blocks=True)
_STRICT_HTML = BoundedSandbox(autoescape=True, undefined=StrictUndefined, trim_blocks=True)


class NoticeTemplateError(ValueError):
    """A template that does not compile or fails to render; the message says where."""


@dataclass(frozen=True)
class TemplateSet:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def one_line(value: str, limit: int = SUBJECT_MAX) -> str:
    """A header-safe single line: control characters and line breaks become one space."""
    line = " ".join(_CONTROL.sub(" ", value).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check(templates: TemplateSet) -> None:
    """Compile each part.

    Raises:
        NoticeTemplateError: names the part and the line.
    """
    for part, env in (("subject", _TEXT), ("text", _TEXT), ("html", _HTML)):
        try:
            env.from_string(getattr(templates, part))
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            raise NoticeTemplateError(f"the {part} template{where}: {exc}") from None


def render(templates: TemplateSet, context: Mapping[str, Any], *, strict: bool = False) -> Rendered:
    """Render the three parts with the same values; an empty HTML template makes the HTML
    part from the plain text (escaped, links made clickable).

    Raises:
        NoticeTemplateError: a part failed (a sandbox refusal or, when strict, a value the
            notice does not have, included).
    """
    text_env, html_env = (_STRICT_TEXT, _STRICT_HTML) if strict else (_TEXT, _HTML)
    try:
        subject = text_env.from_string(templates.subject).render(context)
        text = text_env.from_string(templates.text).render(context)
        if templates.html.strip():
            html = html_env.from_string(templates.html).render(context)
        else:
            html = html_from_text(text)
    except TemplateError as exc:
        raise NoticeTemplateError(f"template failed: {exc}") from None
    if len(text) + len(html) > MAX_OUTPUT:
        raise NoticeTemplateError(f"a rendered notice is at most {MAX_OUTPUT} characters")
    return Rendered(subject=one_line(subject), text=text.strip() + "\n", html=html.strip() + "\n")


def html_from_text(text: str) -> str:
    """The HTML part of a notice written as plain text only: every character escaped, the
    lines kept, http(s) links clickable."""
    escaped = str(escape(text.strip()))
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    return f'<div style="white-space:pre-wrap;font-family:monospace">{linked}</div>'


# --- the built-in templates --------------------------------------------------------------

_FOOTER_TEXT = """
--
{{ rule.name }} ({{ rule.type_label }}), a notification rule of Certwright at {{ base_url }}.
{% if preference_url %}Receive this rule's notices {{ 'one by one' if digest else 'as one daily digest' }}: {{ preference_url }}
{% endif %}"""

_FOOTER_HTML = """
<hr><p style="color:#666;font-size:small">{{ rule.name }} ({{ rule.type_label }}), a notification rule of
<a href="{{ base_url }}">Certwright</a>.{% if preference_url %} <a href="{{ preference_url }}">Receive this rule's notices {{ 'one by one' if digest else 'as one daily digest' }}</a>.{% endif %}</p>"""

_CERT_TEXT = """{{ c.type_label }} certificate {{ c.common_name }}
  Expires:      {{ c.not_after }} ({{ c.when }})
  Serial:       {{ c.serial }}
  Issuer:       {{ c.issuer }}
  Organization: {{ c.organization }}{% if c.department %} / {{ c.department }}{% endif %}

  Details:      {{ c.url }}
{% if c.ack_url %}  Acknowledge or snooze: {{ c.ack_url }}
{% endif %}"""

_CERT_HTML = """<tr><td><a href="{{ c.url }}">{{ c.common_name }}</a></td><td>{{ c.type_label }}</td>
<td>{{ c.not_after }}<br><small>{{ c.when }}</small></td><td>{{ c.organization }}{% if c.department %} / {{ c.department }}{% endif %}</td>
<td><small>{{ c.serial }}<br>{{ c.issuer }}</small></td>
<td>{% if c.ack_url %}<a href="{{ c.ack_url }}">Acknowledge or snooze</a>{% endif %}</td></tr>"""

_TABLE_HEAD = (
    '<table cellpadding="4" border="1" style="border-collapse:collapse"><tr><th>Common name</th>'
    "<th>Type</th><th>Expires</th><th>Organization</th><th>Serial / issuer</th><th></th></tr>"
)

EXPIRY = TemplateSet(
    subject="{% if escalation %}ESCALATION: {% endif %}{{ c.type_label }} certificate {{ c.common_name }} {{ c.when }}",
    text=(
        "{% if escalation %}ESCALATION: nobody acknowledged this alert within {{ escalation_hours }} hours.\n\n{% endif %}"
        "{{ 'This certificate has expired.' if c.threshold == 0 else 'This certificate expires soon.' }}\n\n"
        + _CERT_TEXT
        + _FOOTER_TEXT
    ),
    html=(
        "{% if escalation %}<p><strong>ESCALATION:</strong> nobody acknowledged this alert within {{ escalation_hours }} hours.</p>{% endif %}"
        "<p>{{ 'This certificate has expired.' if c.threshold == 0 else 'This certificate expires soon.' }}</p>"
        + _TABLE_HEAD
        + _CERT_HTML
        + "</table>"
        + _FOOTER_HTML
    ),
)

EXPIRY_DIGEST = TemplateSet(
    subject="{% if escalation %}ESCALATION: {% endif %}Certificate expiry digest: {{ summary }}",
    text=(
        "{% if escalation %}ESCALATION: nobody acknowledged these alerts within {{ escalation_hours }} hours.\n\n{% endif %}"
        "{{ count }} certificate{{ 's' if count != 1 }} need{{ 's' if count == 1 }} attention.\n"
        "{% for g in groups %}\n== {{ g.heading }} ({{ g.items|length }}) ==\n\n"
        "{% for c in g.items %}" + _CERT_TEXT + "\n{% endfor %}{% endfor %}" + _FOOTER_TEXT
    ),
    html=(
        "{% if escalation %}<p><strong>ESCALATION:</strong> nobody acknowledged these alerts within {{ escalation_hours }} hours.</p>{% endif %}"
        "<p>{{ count }} certificate{{ 's' if count != 1 }} need{{ 's' if count == 1 }} attention.</p>"
        "{% for g in groups %}<h3>{{ g.heading }} ({{ g.items|length }})</h3>"
        + _TABLE_HEAD
        + "{% for c in g.items %}"
        + _CERT_HTML
        + "{% endfor %}</table>{% endfor %}"
        + _FOOTER_HTML
    ),
)

_EVENT_TEXT = """{{ e.type_label }}: {{ e.label }}
  When:  {{ e.at }}{% if e.actor %} (by {{ e.actor }}){% endif %}

{% for line in e.lines %}  {{ line }}
{% endfor %}{% if e.url %}  Details: {{ e.url }}
{% endif %}"""

_EVENT_HTML = """<tr><td>{{ e.type_label }}</td><td>{% if e.url %}<a href="{{ e.url }}">{{ e.label }}</a>{% else %}{{ e.label }}{% endif %}</td>
<td>{{ e.at }}{% if e.actor %}<br><small>by {{ e.actor }}</small>{% endif %}</td>
<td>{% for line in e.lines %}{{ line }}<br>{% endfor %}</td></tr>"""

_EVENT_HEAD = (
    '<table cellpadding="4" border="1" style="border-collapse:collapse"><tr><th>What</th>'
    "<th>About</th><th>When</th><th>Details</th></tr>"
)

EVENT = TemplateSet(
    subject="{{ e.type_label }}: {{ e.label }}",
    text=_EVENT_TEXT + _FOOTER_TEXT,
    html=_EVENT_HEAD + _EVENT_HTML + "</table>" + _FOOTER_HTML,
)

EVENT_DIGEST = TemplateSet(
    subject="Certwright digest: {{ count }} notice{{ 's' if count != 1 }} ({{ rule.type_label }})",
    text=(
        "{% for g in groups %}== {{ g.heading }} ({{ g.items|length }}) ==\n\n"
        "{% for e in g.items %}" + _EVENT_TEXT + "\n{% endfor %}{% endfor %}" + _FOOTER_TEXT
    ),
    html=(
        "{% for g in groups %}<h3>{{ g.heading }} ({{ g.items|length }})</h3>"
        + _EVENT_HEAD
        + "{% for e in g.items %}"
        + _EVENT_HTML
        + "{% endfor %}</table>{% endfor %}"
        + _FOOTER_HTML
    ),
)

BUILT_IN: dict[str, TemplateSet] = {
    "expiry": EXPIRY,
    "expiry_digest": EXPIRY_DIGEST,
    "event": EVENT,
    "event_digest": EVENT_DIGEST,
}


def slack_text(rendered: Rendered) -> str:
    """The text field of a webhook body (Slack and Teams show it): subject, then body."""
    return f"*{rendered.subject}*\n{rendered.text}"
