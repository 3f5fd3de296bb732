"""The payloads of ACME requests (RFC 8555 §7), checked into frozen dataclasses.

Each parser takes the JSON object of a verified JWS and raises AcmeProblem naming the
first thing wrong; nothing here knows about accounts, orders or the database.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from app.acme import jose
from app.acme.problems import AcmeProblem

MAX_CONTACTS = 4
MAX_IDENTIFIERS = 100
MAX_CSR_BYTES = 32 * 1024
# RFC 5280 CRLReason codes a subscriber may give (7 is unused); §7.6.
REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5, 9})
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s,;:<>()\[\]\\\"]+@[a-z0-9.-]+\.[a-z0-9-]+$", re.IGNORECASE)


class Status(enum.StrEnum):
    """Object states of §7.1.6."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


def retry_after(waited: float, *, longest: int) -> int:
    """The Retry-After of an object the server is still working on (§7.4 orders, §8.2
    challenges and authorizations), in whole seconds (HTTP's unit): 1 while the work has
    waited less than 4 s (a worker validates or issues within a second when it has room),
    then half the time waited so far, at most ``longest``: clients poll less as a queue
    grows, and soon again when the work is quick."""
    return max(1, min(longest, int(waited // 2)))


def _object(payload: dict[str, Any] | None, *, what: str) -> dict[str, Any]:
    if payload is None:
        raise AcmeProblem("malformed", f"{what} needs a JSON payload, not POST-as-GET")
    return payload


def _bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise AcmeProblem("malformed", f"{name} must be true or false")
    return value


def parse_contacts(value: object) -> tuple[str, ...]:
    """§7.3: contact URLs; only mailto: with one address each is supported."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AcmeProblem("malformed", "contact must be a list of URLs")
    if len(value) > MAX_CONTACTS:
        raise AcmeProblem("invalidContact", f"at most {MAX_CONTACTS} contacts")
    out = []
    for url in value:
        if not url.lower().startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", f"{url!r}: only mailto: contacts are supported")
        address = url[len("mailto:") :]
        if "?" in address or not _EMAIL.match(address):
            raise AcmeProblem(
                "invalidContact", f"{url!r} is not a mailto: URL with one email address"
            )
        out.append("mailto:" + address)
    return tuple(out)


@dataclass(frozen=True)
class NewAccount:
    contact: tuple[str, ...]
    terms_agreed: bool
    only_return_existing: bool
    external_binding: dict[str, Any] | None


def parse_new_account(payload: dict[str, Any] | None) -> NewAccount:
    """§7.3 newAccount."""
    payload = _object(payload, what="newAccount")
    binding = payload.get("externalAccountBinding")
    if binding is not None and not isinstance(binding, dict):
        raise AcmeProblem("malformed", "externalAccountBinding must be a flattened JWS")
    return NewAccount(
        contact=parse_contacts(payload.get("contact")),
        terms_agreed=_bool(payload, "termsOfServiceAgreed"),
        only_return_existing=_bool(payload, "onlyReturnExisting"),
        external_binding=binding,
    )


@dataclass(frozen=True)
class AccountUpdate:
    contact: tuple[str, ...] | None  # None: unchanged
    deactivate: bool


def parse_account_update(payload: dict[str, Any] | None) -> AccountUpdate | None:
    """§7.3.2/§7.3.6: None for POST-as-GET (fetch the account)."""
    if payload is None:
        return None
    status = payload.get("status")
    if status not in (None, "valid", "deactivated"):
        raise AcmeProblem("malformed", "an account's status can only become 'deactivated'")
    contact = parse_contacts(payload["contact"]) if "contact" in payload else None
    return AccountUpdate(contact=contact, deactivate=status == "deactivated")


@dataclass(frozen=True)
class Identifier:
    type: str
    value: str

    @property
    def is_wildcard(self) -> bool:
        return self.value.startswith("*.")

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


def parse_dns_identifier(value: str) -> str:
    """A DNS name as RFC 8555 §7.1.4 wants it: lower case, no trailing dot, A-labels,
    at most one wildcard label leading."""
    name = value.strip().lower()
    if name != value.lower() or not name or name.endswith(".") or len(name) > 253:
        raise AcmeProblem(
            "rejectedIdentifier",
            f"{value!r} is not a fully qualified DNS name",
            identifier={"type": "dns", "value": value},
        )
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AcmeProblem(
            "rejectedIdentifier",
            f"{value!r} is not a valid DNS name (letters, digits and hyphens; IDNs as A-labels)",
            identifier={"type": "dns", "value": value},
        )
    return name


def parse_identifier(value: object) -> Identifier:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise AcmeProblem("malformed", "an identifier is an object with a type and a value")
    if not isinstance(value.get("value"), str):
        raise AcmeProblem("malformed", "an identifier's value must be a string")
    if value["type"] != "dns":
        raise AcmeProblem(
            "unsupportedIdentifier",
            f"identifiers of type {value['type']!r} are not supported (only dns)",
            identifier={"type": value["type"], "value": value["value"]},
        )
    return Identifier("dns", parse_dns_identifier(value["value"]))


@dataclass(frozen=True)
class NewOrder:
    identifiers: tuple[Identifier, ...]
    replaces: str | None  # RFC 9773 §5: the ARI certificate identifier being replaced


def parse_new_order(payload: dict[str, Any] | None) -> NewOrder:
    """§7.4 newOrder; notBefore/notAfter are refused (the profile sets the validity)."""
    payload = _object(payload, what="newOrder")
    if "notBefore" in payload or "notAfter" in payload:
        raise AcmeProblem(
            "malformed", "notBefore and notAfter are not supported: the profile sets the validity"
        )
    raw = payload.get("identifiers")
    if not isinstance(raw, list) or not raw:
        raise AcmeProblem("malformed", "newOrder needs a non-empty list of identifiers")
    if len(raw) > MAX_IDENTIFIERS:
        raise AcmeProblem("rejectedIdentifier", f"at most {MAX_IDENTIFIERS} identifiers an order")
    seen: dict[str, Identifier] = {}
    for item in raw:
        ident = parse_identifier(item)
        seen.setdefault(ident.value, ident)
    replaces = payload.get("replaces")
    if replaces is not None and not isinstance(replaces, str):
        raise AcmeProblem("malformed", "replaces must be a certificate identifier (RFC 9773)")
    return NewOrder(tuple(sorted(seen.values(), key=lambda i: i.value)), replaces)


def parse_finalize(payload: dict[str, Any] | None) -> bytes:
    """§7.4 finalize: the CSR's DER."""
    payload = _object(payload, what="finalize")
    der = jose.b64decode(payload.get("csr"), what="csr")
    if not der or len(der) > MAX_CSR_BYTES:
        raise AcmeProblem("badCSR", f"the CSR must be 1 to {MAX_CSR_BYTES} bytes of DER")
    return der


@dataclass(frozen=True)
class Revocation:
    certificate_der: bytes
    reason: int


def parse_revocation(payload: dict[str, Any] | None) -> Revocation:
    """§7.6 revokeCert: the certificate's DER and an RFC 5280 reason code (default 0)."""
    payload = _object(payload, what="revokeCert")
    der = jose.b64decode(payload.get("certificate"), what="certificate")
    reason = payload.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in REVOCATION_REASONS:
        raise AcmeProblem(
            "badRevocationReason",
            f"reason {reason!r} is not one a subscriber may give (0, 1, 3, 4, 5 or 9)",
        )
    return Revocation(der, reason)


def parse_challenge_response(payload: dict[str, Any] | None) -> bool:
    """§7.5.1: an empty object starts validation; POST-as-GET (None) only reads."""
    if payload is None:
        return False
    if payload:
        raise AcmeProblem("malformed", "a challenge response is the empty object {}")
    return True
