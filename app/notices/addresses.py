"""Recipient addresses: one syntactically valid mailbox each, never a header fragment.

Addresses come from data (administrators, requesters, subscribers saved on a rule); every
one is checked again before it goes into a message, so a CR or LF smuggled into any of them
is refused instead of becoming a second header or a hidden recipient.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

_FORBIDDEN = frozenset("\r\n\x00,;<>\"'")


class AddressError(ValueError):
    """Not an address a notice can go to; the message says why."""


def check_address(value: str) -> str:
    """The normalised address (domain lowercased), or AddressError.

    Raises:
        AddressError: empty, a control character or list separator, or not an address.
    """
    if not value or not value.strip():
        raise AddressError("no address")
    if any(ch in _FORBIDDEN or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        shown = value.encode("unicode_escape").decode("ascii")[:80]
        raise AddressError(f"'{shown}' contains a line break, control character or separator")
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"'{value.strip()[:80]}' is not an e-mail address: {exc}") from None
    return str(checked.normalized)


def normalize_list(values: list[str]) -> list[str]:
    """Check every address (AddressError names the first bad one); sorted, no repeats."""
    return sorted({check_address(v).lower() for v in values if v.strip()})
