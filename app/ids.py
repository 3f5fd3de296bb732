"""Record ids that arrive from outside (URL paths, query strings, forms): whole numbers from
1 to 2**63 - 1, the range of the databases' BIGINT. Anything else names no record.

Werkzeug's ``int`` converter and Python's ``int()`` accept any size: an id of 10**30 reached
SQLite as an OverflowError (a 500) and PostgreSQL as a numeric comparison. Every front door
reads ids through ``parse_id`` and every ``<int:...>`` route through ``IdConverter``.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))


def parse_id(value: Any) -> int | None:
    """The id in ``value`` (an int or a string of ASCII digits), or None when it cannot name
    a record: empty, signed, non-numeric, zero, or beyond 63 bits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip() if value is not None else ""
        if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
            return None
        number = int(text)
    return number if 1 <= number <= MAX_ID else None


class IdConverter(IntegerConverter):
    """The application's ``int`` URL converter: at most MAX_ID, so a longer number answers
    404 like any id that names nothing (create_app installs it before any route)."""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, MAX_ID if max is None else max, signed)


def parse_ids(text: str | None, *, limit: int = 1000) -> list[int]:
    """The ids in a comma-separated list ("3,5,8"), skipping what names no record; at most
    ``limit`` of them."""
    ids = (parse_id(part) for part in (text or "").split(","))
    return [i for i in ids if i is not None][:limit]
