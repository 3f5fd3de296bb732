"""Digest grouping: many notices for one recipient become one message, certificates grouped
by how close they are to expiry (expired first), events by type."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    heading: str
    items: tuple[Mapping[str, Any], ...]


def threshold_heading(threshold: int) -> str:
    if threshold == 0:
        return "Expired"
    if threshold == 1:
        return "Expiring within 1 day"
    return f"Expiring within {threshold} days"


def by_threshold(items: Iterable[Mapping[str, Any]]) -> list[Group]:
    """Certificates grouped by the threshold they are notified for (most urgent first),
    soonest expiry first inside each group; items carry "threshold" and "not_after"."""
    return _grouped(
        items,
        key=lambda item: int(item["threshold"]),
        heading=threshold_heading,
        order=lambda item: (str(item["not_after"]), str(item.get("common_name", ""))),
    )


def by_type(items: Iterable[Mapping[str, Any]]) -> list[Group]:
    """Events grouped by their type label (alphabetically), oldest first inside a group."""
    return _grouped(
        items,
        key=lambda item: str(item["type_label"]),
        heading=str,
        order=lambda item: str(item["at"]),
    )


def _grouped(
    items: Iterable[Mapping[str, Any]],
    *,
    key: Callable[[Mapping[str, Any]], T],
    heading: Callable[[T], str],
    order: Callable[[Mapping[str, Any]], Any],
) -> list[Group]:
    groups: dict[T, list[Mapping[str, Any]]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [
        Group(heading(k), tuple(sorted(groups[k], key=order)))
        for k in sorted(groups, key=_sort_key)
    ]


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def summary(groups: Sequence[Group]) -> str:
    """ "3 expired, 12 expiring within 30 days" for a subject line."""
    return ", ".join(f"{len(g.items)} {g.heading[0].lower()}{g.heading[1:]}" for g in groups)
