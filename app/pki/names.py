"""Names that go into certificates: DNS names, IP addresses, email addresses, subjects.

Pure validation and normalisation; nothing here looks anything up in DNS. DNS names come
out as lower-case A-labels (IDNA 2008, RFC 5890-5893, via the ``idna`` package, which
plain LDH ASCII names, the common case, never need).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID
from iso3166 import countries_by_alpha2

from app.pki.errors import NamePolicyError
from app.pki.subject_text import refused_character

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_T = TypeVar("_T")

# RFC 1035 §2.3.4: 63 octets a label, 255 octets on the wire = 253 characters as text.
MAX_LABEL_LENGTH: Final = 63
MAX_DNS_NAME_LENGTH: Final = 253
# RFC 5321 §4.5.3.1: local part 64 octets, a path 256 octets (254 without angle brackets).
MAX_EMAIL_LOCAL_LENGTH: Final = 64
MAX_EMAIL_LENGTH: Final = 254

# RFC 952/1123 LDH label, lower case (the input is folded first).
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_L = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LDH_NAME = re.compile(rf"(\*\.(?={_L}\.))?(?:{_L}\.)*({_L})")  # maybe "*." + >= 2 labels
# RFC 3986 §3.1 scheme, then the rest without spaces: device SANs (urn:, https://, ...).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!-~]+")
MAX_URI_LENGTH: Final = 2048
# RFC 8141 §2: "urn:" NID ":" NSS (with an optional r-/q-/f-component after "?"/"#").
URN: Final = re.compile(
    r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:"
    r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]+(?:\?[+=][!-~]*)?(?:#[!-~]*)?",
    re.IGNORECASE,
)
# RFC 5322 §3.2.3 dot-atom text; certificates carry rfc822Name as IA5String (RFC 5280 §4.2.1.6).
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")

# RFC 5280 Appendix A upper bounds (ub-common-name etc.), in characters.
_SUBJECT_LIMITS: Final[tuple[tuple[str, x509.ObjectIdentifier, int], ...]] = (
    # Order is the conventional most-significant-first DN order: C, ST, L, O, OU, CN.
    ("country", NameOID.COUNTRY_NAME, 2),
    ("state", NameOID.STATE_OR_PROVINCE_NAME, 128),
    ("locality", NameOID.LOCALITY_NAME, 128),
    ("organization", NameOID.ORGANIZATION_NAME, 64),
    ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME, 64),
    ("common_name", NameOID.COMMON_NAME, 64),
)
_LABELS: Final = {
    "country": "country (C)",
    "state": "state or province (ST)",
    "locality": "locality (L)",
    "organization": "organization (O)",
    "organizational_unit": "organizational unit (OU)",
    "common_name": "common name (CN)",
}


def normalize_dns_name(name: str, *, allow_wildcard: bool = True) -> str:
    """Return ``name`` as a lower-case A-label DNS name without a trailing dot.

    A wildcard is accepted only as the whole left-most label followed by at least two
    labels (``*.example.com``), as RFC 6125 §6.4.3 and BR §7.1.2.7.12 describe.

    Raises:
        NamePolicyError: empty, over-long, bad characters, misplaced wildcard, or not
            valid IDNA 2008.
    """
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise NamePolicyError("DNS name is empty")
    # The common case first: ASCII LDH labels without any "--", checked by one regex.
    plain = text.isascii() and "--" not in text and len(text) <= MAX_DNS_NAME_LENGTH
    fast = _LDH_NAME.fullmatch(text.lower()) if plain else None
    if fast and not fast[2].isdigit() and (allow_wildcard or not fast[1]):
        return fast[0]
    labels = text.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        if not allow_wildcard:
            raise NamePolicyError(f"wildcard names are not allowed here: {name!r}")
        labels = labels[1:]
        if len(labels) < 2:
            raise NamePolicyError(
                f"a wildcard must be followed by at least two labels (*.example.com): {name!r}"
            )
    if any("*" in label for label in labels):
        raise NamePolicyError(
            f"'*' is allowed only as the whole left-most label (*.example.com): {name!r}"
        )
    rest = ".".join(labels)
    if rest.isascii() and "xn--" not in rest.lower():
        encoded = [_ldh_label(label.lower(), name) for label in labels]
    else:
        encoded = [_ldh_label(label, name) for label in _idna_encode(rest, name).split(".")]
    if encoded[-1].isdigit():
        # RFC 3696 §2: a top-level label is never all-numeric; this is an IP address typo.
        raise NamePolicyError(f"DNS name cannot end in an all-numeric label: {name!r}")
    result = ".".join(["*", *encoded] if wildcard else encoded)
    if len(result) > MAX_DNS_NAME_LENGTH:
        raise NamePolicyError(
            f"DNS name is longer than {MAX_DNS_NAME_LENGTH} characters: {result[:40]}..."
        )
    return result


def normalize_ip_address(value: str) -> IPAddress:
    """Parse an IPv4 or IPv6 address (brackets allowed around IPv6, no zone index).

    Raises:
        NamePolicyError: not a single IP address.
    """
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        raise NamePolicyError(f"an IP address with a zone index cannot be certified: {value!r}")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise NamePolicyError(f"{value!r} is not an IP address") from None


def normalize_email(value: str) -> str:
    """Return an ASCII mailbox ``local@domain`` with the domain normalised to A-labels.

    RFC 5280 §4.2.1.6 carries rfc822Name as IA5String, so the local part must be ASCII.

    Raises:
        NamePolicyError: not a mailbox, non-ASCII local part, or too long.
    """
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise NamePolicyError(f"{value!r} is not an email address (local@domain)")
    if not local.isascii() or _DOT_ATOM.fullmatch(local) is None:
        raise NamePolicyError(
            f"the local part of {value!r} must be plain ASCII dot-atom text (RFC 5322 §3.2.3)"
        )
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise NamePolicyError(
            f"the local part of {value!r} is longer than {MAX_EMAIL_LOCAL_LENGTH} characters"
        )
    address = f"{local}@{normalize_dns_name(domain, allow_wildcard=False)}"
    if len(address) > MAX_EMAIL_LENGTH:
        raise NamePolicyError(f"email address is longer than {MAX_EMAIL_LENGTH} characters")
    return address


def normalize_uri(value: str) -> str:
    """Return a URI for a subjectAltName uniformResourceIdentifier (RFC 5280 §4.2.1.6:
    IA5String, an absolute URI with a scheme; a URI with an authority names its host,
    which is normalised like a DNS name).

    Raises:
        NamePolicyError: not an ASCII absolute URI, too long, or a bad host.
    """
    text = value.strip()
    if not _is_uri(text):
        raise NamePolicyError(
            f"{value!r} is not a URN (urn:...) or an absolute URI with a host (scheme://host/...) of plain ASCII"
        )
    if len(text) > MAX_URI_LENGTH:
        raise NamePolicyError(f"a URI is longer than {MAX_URI_LENGTH} characters")
    if text[:4].lower() == "urn:" and not URN.fullmatch(text):
        raise NamePolicyError(f"{value!r} is not a URN (RFC 8141: urn:<namespace>:<name>)")
    host = uri_host(text)
    if host is not None and not _looks_like_ip(host.strip("[]")):
        normalize_dns_name(host, allow_wildcard=False)
    return text


def uri_host(uri: str) -> str | None:
    """The host of a URI with an authority ("https://host:port/..."), else None (urn:...)."""
    rest = uri.partition(":")[2]
    if not rest.startswith("//"):
        return None
    authority = rest[2:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_name_within_domain(name: str, domain: str, *, allow_wildcard: bool = False) -> bool:
    """Whether a delegated ``domain`` covers the DNS ``name``.

    ``example.com`` covers itself and every subdomain; ``*.example.com`` covers strict
    subdomains only. A wildcard name ``*.a.example.com`` stands for the children of
    ``a.example.com``: it is covered when ``allow_wildcard`` is true (the delegation allows
    wildcards) and ``a.example.com`` is the domain's base or below it.

    Raises:
        NamePolicyError: ``name`` or ``domain`` is not a valid DNS name.
    """
    wanted = normalize_dns_name(name)
    delegated = normalize_dns_name(domain)
    subdomains_only = delegated.startswith("*.")
    base = delegated[2:] if subdomains_only else delegated
    if wanted.startswith("*."):
        return allow_wildcard and _is_at_or_below(wanted[2:], base)
    if subdomains_only:
        return wanted.endswith("." + base)
    return _is_at_or_below(wanted, base)


@dataclass(frozen=True)
class AltNames:
    """The subjectAltName entries of a certificate, normalised and de-duplicated."""

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()  # device certificates

    @property
    def is_empty(self) -> bool:
        return not (self.dns_names or self.ip_addresses or self.emails or self.uris)

    def general_names(self) -> list[x509.GeneralName]:
        """The GeneralName list for x509.SubjectAlternativeName: DNS, IP, email, URI."""
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        names.extend(x509.IPAddress(ip) for ip in self.ip_addresses)
        names.extend(x509.RFC822Name(e) for e in self.emails)
        names.extend(x509.UniformResourceIdentifier(u) for u in self.uris)
        return names

    def with_common_name(self, common_name: str | None, *, single_label: bool = False) -> AltNames:
        """Add the CN when it is a DNS name or IP address not yet listed (BR §7.1.4.3).

        See common_name_host() for what counts as a host name.
        """
        return self.with_host(common_name_host(common_name, single_label=single_label))

    def with_host(self, host: str | IPAddress | None) -> AltNames:
        """Put a normalised DNS name or IP address first unless it is already listed."""
        if host is None:
            return self
        if isinstance(host, str):
            if host in self.dns_names:
                return self
            return AltNames((host, *self.dns_names), self.ip_addresses, self.emails, self.uris)
        if host in self.ip_addresses:
            return self
        return AltNames(self.dns_names, (host, *self.ip_addresses), self.emails, self.uris)


def common_name_host(
    common_name: str | None, *, single_label: bool = False
) -> str | IPAddress | None:
    """The CN as a normalised DNS name or IP address, or None when it is neither.

    A one-label CN ("printer1") counts as a DNS name only when ``single_label`` is true
    (TLS server certificates); elsewhere it is more likely a person or device name.
    """
    if not common_name:
        return None
    if _looks_like_ip(common_name.strip()):
        try:
            return normalize_ip_address(common_name)
        except NamePolicyError:
            return None
    try:
        dns = normalize_dns_name(common_name)
    except NamePolicyError:
        return None
    if "." not in dns and not single_label:
        return None
    return dns


def build_alt_names(
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str | IPAddress] = (),
    emails: Iterable[str] = (),
    uris: Iterable[str] = (),
    allow_wildcard: bool = True,
) -> AltNames:
    """Normalise and de-duplicate (keeping first-seen order) the four kinds of names.

    Raises:
        NamePolicyError: the first invalid name, with the reason.
    """
    ips = (ip if not isinstance(ip, str) else normalize_ip_address(ip) for ip in ip_addresses)
    return AltNames(
        dns_names=_unique(normalize_dns_name(n, allow_wildcard=allow_wildcard) for n in dns_names),
        ip_addresses=_unique(ips),
        emails=_unique(normalize_email(e) for e in emails),
        uris=_unique(normalize_uri(u) for u in uris),
    )


def parse_alt_names(values: Iterable[str], *, allow_wildcard: bool = True) -> AltNames:
    """Sort free-form names: an IP address is an IP, ``scheme:...`` (but not an IP) a URI,
    ``x@y`` an email, the rest DNS names.

    Raises:
        NamePolicyError: the first invalid name, with the reason.
    """
    dns: list[str] = []
    ips: list[str] = []
    emails: list[str] = []
    uris: list[str] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        if _looks_like_ip(text) and _is_ip(text):
            ips.append(text)
        elif _is_uri(text):
            uris.append(text)
        elif "@" in text:
            emails.append(text)
        elif _looks_like_ip(text):
            ips.append(text)
        else:
            dns.append(text)
    return build_alt_names(
        dns_names=dns, ip_addresses=ips, emails=emails, uris=uris, allow_wildcard=allow_wildcard
    )


def _is_uri(text: str) -> bool:
    # An opaque URN (RFC 8141) or a URI with an authority (https://, spiffe://, ...): a
    # typo such as "host:8443" is not taken for a URI with the scheme "host".
    return bool(_URI.fullmatch(text)) and (text[:4].lower() == "urn:" or "://" in text)


def _is_ip(text: str) -> bool:
    try:
        normalize_ip_address(text)
    except NamePolicyError:
        return False
    return True


@dataclass(frozen=True)
class SubjectFields:
    """The subject attributes Certwright sets; empty strings mean absent."""

    common_name: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    country: str | None = None

    def to_name(self) -> x509.Name:
        """Build the x509.Name; see build_subject()."""
        return build_subject(
            common_name=self.common_name,
            organization=self.organization,
            organizational_unit=self.organizational_unit,
            locality=self.locality,
            state=self.state,
            country=self.country,
        )


def build_subject(
    *,
    common_name: str | None = None,
    organization: str | None = None,
    organizational_unit: str | None = None,
    locality: str | None = None,
    state: str | None = None,
    country: str | None = None,
) -> x509.Name:
    """Build a subject DN in the order C, ST, L, O, OU, CN, one attribute per RDN.

    Raises:
        NamePolicyError: a value over its RFC 5280 Appendix A upper bound, a character
            subject_text refuses (controls, bidirectional and other invisible format
            characters), or a country that is not an ISO 3166-1 alpha-2 code.
    """
    given = {
        "common_name": common_name,
        "organization": organization,
        "organizational_unit": organizational_unit,
        "locality": locality,
        "state": state,
        "country": country,
    }
    attributes: list[x509.NameAttribute[str]] = []
    for field, oid, limit in _SUBJECT_LIMITS:
        value = (given[field] or "").strip()
        if not value:
            continue
        refused = refused_character(value)
        if refused is not None:
            raise NamePolicyError(f"{_LABELS[field]} contains {refused[1]}")
        if field == "country":
            value = value.upper()
            # X.520 countryName is a two-letter PrintableString from ISO 3166-1.
            if len(value) != 2 or value not in countries_by_alpha2:
                raise NamePolicyError(
                    f"country (C) must be a two-letter ISO 3166-1 code, not {value!r}"
                )
        elif len(value) > limit:
            raise NamePolicyError(f"{_LABELS[field]} is longer than {limit} characters")
        attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(attributes)


def subject_fields(name: x509.Name) -> SubjectFields:
    """Read the first value of each attribute Certwright knows; others are ignored."""
    values: dict[str, str | None] = {}
    for field, oid, _limit in _SUBJECT_LIMITS:
        found = name.get_attributes_for_oid(oid)
        value = found[0].value if found else None
        values[field] = value if isinstance(value, str) else None
    return SubjectFields(**values)


def _ldh_label(label: str, original: str) -> str:
    if not label:
        raise NamePolicyError(f"DNS name has an empty label: {original!r}")
    if len(label) > MAX_LABEL_LENGTH:
        raise NamePolicyError(
            f"DNS label is longer than {MAX_LABEL_LENGTH} characters in {original!r}"
        )
    if label.startswith("-") or label.endswith("-"):
        raise NamePolicyError(f"DNS label must not start or end with a hyphen: {original!r}")
    if _LDH_LABEL.fullmatch(label) is None:
        raise NamePolicyError(
            f"DNS labels may contain only letters, digits and hyphens: {original!r}"
        )
    # RFC 5891 §4.2.3.1: "--" in positions 3-4 is reserved for A-labels ("xn--").
    if label[2:4] == "--" and not label.startswith("xn--"):
        raise NamePolicyError(f"DNS label has reserved hyphens in positions 3-4: {original!r}")
    return label


def _idna_encode(text: str, original: str) -> str:
    # UTS #46 mapping first (case folding, full-width forms), then IDNA 2008 validation
    # (RFC 5891 §5, RFC 5892 code points, RFC 5893 bidi rule).
    try:
        encoded = idna.encode(text, uts46=True, std3_rules=True)
    except idna.IDNAError as exc:
        raise NamePolicyError(f"{original!r} is not a valid IDNA 2008 name: {exc}") from None
    return encoded.decode("ascii")


def _is_at_or_below(name: str, base: str) -> bool:
    return name == base or name.endswith("." + base)


def _looks_like_ip(text: str) -> bool:
    return ":" in text or text.replace(".", "").isdigit()


def _unique(values: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(values))
