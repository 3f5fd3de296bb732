"""The sandbox for templates administrators write (portal mails, notification templates):
Jinja's SandboxedEnvironment (no attribute access to internals, no imports) that also
bounds what a template can make a worker do: ranges of at most MAX_RANGE items, repetitions
of at most MAX_RANGE, exponents of at most 64."""

from __future__ import annotations

from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_RANGE = 1000


def bounded_range(*args: int) -> range:
    """range() for templates written by administrators: a loop never costs a worker
    minutes (jinja2's own sandbox limit is 100,000 items, a nested loop 10**10)."""
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise SecurityError(f"a range in a mail template has at most {MAX_RANGE} items")
    return items


class BoundedSandbox(SandboxedEnvironment):
    """Also bounds what * and ** can build ("x" * 10**10 would exhaust the process's memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        numbers = [v for v in (left, right) if isinstance(v, int)]
        if operator == "**" and isinstance(right, int) and right > 64:
            raise SecurityError("an exponent in a mail template is at most 64")
        if (
            operator == "*"
            and any(abs(n) > MAX_RANGE for n in numbers)
            and not all(isinstance(v, int | float) for v in (left, right))
        ):
            raise SecurityError(f"a repetition in a mail template is at most {MAX_RANGE}")
        return super().call_binop(context, operator, left, right)
