"""S/MIME subscriber certificates (CA/Browser Forum S/MIME Baseline Requirements): which
validation profile, which subject, which term; no I/O.

Client certificates are Multipurpose-generation certificates (BR 7.1.2.3: extKeyUsage
emailProtection, and clientAuth which the Strict generation forbids) in one of two
validation profiles, chosen by the person's validation type:

- **mailbox-validated** (Standard): only control of the mailbox was shown, so the subject
  is the mailbox address as commonName and nothing else (BR 7.1.4.2.2: O, OU, personal
  names and address attributes SHALL NOT be present);
- **individual-validated** (High): an administrator checked who the person is, so the
  subject carries givenName, surname and the personal name as commonName (BR 7.1.4.2.5);
  O and OU are prohibited there too. The person's organization stays in the inventory.

Organization- and sponsor-validated profiles need an organizationIdentifier (a registration
reference, BR 7.1.4.2.2(d)) that a private CA has no source for, so Certwright uses neither.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from app.pki.errors import NamePolicyError, ProfileError
from app.pki.subject_text import refused_character

# BR 6.3.2: Multipurpose and Strict subscriber certificates are valid at most 825 days.
MAX_VALIDITY_DAYS: Final = 825
# RFC 5280 Appendix A ub-common-name; the same bound for the name parts we write.
MAX_NAME_LENGTH: Final = 64


class ValidationLevel(enum.StrEnum):
    MAILBOX = "mailbox"
    INDIVIDUAL = "individual"


# Keys of the subject dict stored with a request: commonName, givenName, surname.
SUBJECT_KEYS: Final = ("GN", "SN", "CN")
# RFC 4514 names the three attributes it knows; these two are spelled out for display
# (without them rfc4514_string() writes "2.5.4.42=Jane").
DN_NAMES: Final[dict[x509.ObjectIdentifier, str]] = {
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
}


def subject_values(
    level: ValidationLevel,
    *,
    email: str,
    given_name: str = "",
    surname: str = "",
    full_name: str = "",
) -> dict[str, str]:
    """The subject of a person's certificate as the request stores it.

    Raises:
        NamePolicyError: an individual-validated subject without a given name or surname,
            or a value over 64 characters or holding control/bidi characters.
    """
    if level is ValidationLevel.MAILBOX:
        values = {"CN": email.strip()}
    else:
        given, sur = given_name.strip(), surname.strip()
        if not given or not sur:
            raise NamePolicyError(
                "an individual-validated S/MIME subject needs the given name and the surname"
            )
        common = full_name.strip() or f"{given} {sur}"
        values = {"GN": given, "SN": sur, "CN": common}
    for key, value in values.items():
        _check_value(key, value)
    return values


def build_subject(values: Mapping[str, str]) -> x509.Name:
    """The x509.Name of stored subject values: givenName, surname, commonName (in that
    order, one attribute per RDN); absent keys are left out.

    Raises:
        NamePolicyError: a value over 64 characters or holding control characters.
    """
    oids = {"GN": NameOID.GIVEN_NAME, "SN": NameOID.SURNAME, "CN": NameOID.COMMON_NAME}
    attributes = []
    for key in SUBJECT_KEYS:
        value = (values.get(key) or "").strip()
        if value:
            _check_value(key, value)
            attributes.append(x509.NameAttribute(oids[key], value))
    return x509.Name(attributes)


def validation_level_of(subject: x509.Name) -> ValidationLevel:
    """Individual-validated when the subject names a person, mailbox-validated otherwise."""
    if subject.get_attributes_for_oid(NameOID.GIVEN_NAME) or subject.get_attributes_for_oid(
        NameOID.SURNAME
    ):
        return ValidationLevel.INDIVIDUAL
    return ValidationLevel.MAILBOX


def check_term(term_days: int) -> None:
    """Refuse a client certificate term beyond the S/MIME BR maximum (825 days).

    Raises:
        ProfileError: e.g. "S/MIME term of 900 days exceeds the maximum of 825 days".
    """
    if term_days < 1:
        raise ProfileError(f"certificate term must be at least 1 day, not {term_days}")
    if term_days > MAX_VALIDITY_DAYS:
        raise ProfileError(
            f"S/MIME term of {term_days} days exceeds the maximum of {MAX_VALIDITY_DAYS} days "
            "(S/MIME Baseline Requirements 6.3.2)"
        )


_LABELS: Final = {"GN": "given name", "SN": "surname", "CN": "common name"}


def _check_value(key: str, value: str) -> None:
    refused = refused_character(value)
    if refused is not None:
        raise NamePolicyError(f"the {_LABELS[key]} contains {refused[1]}")
    if len(value) > MAX_NAME_LENGTH:
        raise NamePolicyError(f"the {_LABELS[key]} is longer than {MAX_NAME_LENGTH} characters")
