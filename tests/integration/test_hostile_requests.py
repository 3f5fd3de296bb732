"""No 5xx from any route, whatever the parameters: every console, portal and public route
(taken from app.url_map, so routes added later are covered too) is requested with hostile
values (huge, negative, non-numeric, unknown enum, CR/LF, quotes) in its path, in every
query/form argument the code reads and in every list filter, as an anonymous visitor, an
MRAO, an RAO and a DRAO. A crash inside a request raises here (the test app propagates
exceptions), so it is reported with the route and the values that caused it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask

from tests.conftest import CSRF_RE, ROOT
from tests.integration.rbac_world import as_, build_world

HUGE = "9" * 30  # beyond 64 bits
HOSTILE = (HUGE, "-1", "0", "²", "abc", "NoSuchValue", "a\r\nX-Injected: 1", "'\";<b>", "\x00", "")

# Arguments Flask-Admin itself reads (lists, filters, ajax lookups, actions, return URLs).
FRAMEWORK_ARGS = {"page", "page_size", "sort", "desc", "search", "url", "name", "query"}
FRAMEWORK_ARGS |= {"rowid", "action", "id", "ids", "format", "next"}

# What app/downloads.py writes: a quoted ASCII fallback, and filename* (RFC 8187) if needed.
RFC6266 = re.compile(
    r'attachment; filename="[ -!#-\[\]-~]+"(; filename\*=UTF-8\'\'[A-Za-z0-9%._~-]+)?'
)

READS = re.compile(
    r"request\.(?:args|values|form|files)(?:\.get|\.getlist)?\(\s*[\"']([A-Za-z0-9_]+)[\"']"
)


def argument_names() -> set[str]:
    """Every argument name the application reads from a request (grepped, so new code's
    arguments are covered without editing this test)."""
    names = set(FRAMEWORK_ARGS)
    for path in (ROOT / "app").rglob("*.py"):
        names.update(READS.findall(Path(path).read_text()))
    return names


def console_views(app: Flask) -> dict[str, object]:
    return {view.endpoint: view for admin in app.extensions["admin"] for view in admin._views}


def filter_args(view: object) -> list[str]:
    count = len(getattr(view, "_filters", None) or [])
    return [f"flt{pos}_{idx}" for idx in range(count) for pos in (0, 1)]


def build_path(rule: str, value: str) -> str:
    def segment(match: re.Match[str]) -> str:
        converter = match.group(1) or "string"
        if converter.startswith("int"):
            return HUGE if value.lstrip("-").isdigit() else "1"
        return quote(value or "x", safe="")

    return re.sub(r"<(?:([a-z]+(?:\([^)]*\))?):)?[a-z_]+>", segment, rule)


def sweep(app: Flask, client, who: str) -> list[str]:
    views = console_views(app)
    common = sorted(argument_names())
    failures = []
    token = csrf_token(client)
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    assert len(rules) > 100, "the sweep must see the whole url_map"
    for rule in rules:
        if rule.endpoint in ("static", "auth.logout"):
            continue
        view = views.get(rule.endpoint.split(".")[0])
        names = common + filter_args(view)
        for offset, _ in enumerate(HOSTILE):
            # Every argument gets every hostile value across the requests of this route.
            args = {n: HOSTILE[(i + offset) % len(HOSTILE)] for i, n in enumerate(names)}
            path = build_path(rule.rule, HOSTILE[offset])
            for method in sorted(rule.methods & {"GET", "POST"}):
                data = None
                if method == "POST":
                    data = {**args, "csrf_token": token} if token else args
                try:
                    response = client.open(
                        path,
                        method=method,
                        query_string=args if method == "GET" else None,
                        data=data,
                    )
                    status = response.status_code
                    disposition = response.headers.get("Content-Disposition")
                    if disposition and not RFC6266.fullmatch(disposition):
                        failures.append(
                            f"{who} {method} {path}: Content-Disposition {disposition!r}"
                        )
                except Exception as exc:  # reported with the route below
                    status = f"{type(exc).__name__}: {exc}"[:300]
                if not isinstance(status, int) or status >= 500:
                    failures.append(f"{who} {method} {path} {args.get('id')!r}: {status}")
    return failures


def csrf_token(client) -> str:
    html = client.get("/admin/profile/").get_data(as_text=True)
    match = CSRF_RE.search(html)
    return (match.group(1) or match.group(2)) if match else ""


@pytest.mark.parametrize("who", ["anonymous", "mrao", "alpha-rao", "ops-drao"])
def test_no_route_answers_5xx_to_hostile_parameters(app, client, who):
    build_world()
    if who != "anonymous":
        as_(client, who)
    failures = sweep(app, client, who)
    assert not failures, f"{len(failures)} requests crashed:\n" + "\n".join(failures[:60])
