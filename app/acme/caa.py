"""CAA (RFC 8659): may a CA with these issuer domain names issue for a name, given the
relevant CAA record set (the first non-empty one climbing from the name towards the root,
which the caller looks up), for this ACME account and validation method (the parameters
``accounturi`` and ``validationmethods`` of RFC 8657)?"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CRITICAL = 0x80
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail"})

# RFC 8659 §4.2: label = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT)), a parameter's tag too;
# value = *(%x21-3A / %x3C-7E) (printable ASCII but ';', no whitespace); WSP = SP / HTAB.
WSP = " \t"
_LABEL = r"[A-Za-z0-9](?:-*[A-Za-z0-9])*"
# A trailing dot on the issuer domain name is tolerated (it names the same domain).
_ISSUER = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PARAMETER = re.compile(rf"({_LABEL})[{WSP}]*=[{WSP}]*([\x21-\x3a\x3c-\x7e]*)")
# RFC 8657 §3: accounturi's value is a URI (RFC 3986: scheme ":" ...).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+")
# RFC 8657 §4: validationmethods = [*(label ",") label].
_METHODS = re.compile(rf"(?:{_LABEL}(?:,{_LABEL})*)?")

ACCOUNT_URI = "accounturi"
VALIDATION_METHODS = "validationmethods"


@dataclass(frozen=True)
class Record:
    flags: int
    tag: str
    value: str


@dataclass(frozen=True)
class IssueValue:
    """An issue/issuewild property value (§4.2): the issuer domain name, lower case without
    a trailing dot ("" names nobody), and its parameters as written, in order."""

    issuer: str
    parameters: tuple[tuple[str, str], ...] = ()

    def parameter(self, tag: str) -> str | None:
        """The value of the parameter ``tag`` (tags compared ignoring case), None if absent."""
        for name, value in self.parameters:
            if name.lower() == tag:
                return value
        return None


def issuer_of(value: str) -> str:
    """§4.2: the issuer-domain-name of an issue/issuewild value (before any ';'
    parameters), lower case; "" when the value names no one (``;`` or empty)."""
    return value.split(";", 1)[0].strip(WSP).lower().rstrip(".")


def parse_issue_value(value: str) -> IssueValue:
    """§4.2: ``issue-value = *WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]``,
    parameters ``tag *WSP "=" *WSP value`` separated by ``*WSP ";" *WSP``.

    Raises:
        ValueError: the value does not follow the grammar (the message says where), or it
            gives a parameter twice (which of the two would hold is not said anywhere).
    """
    head, _, tail = value.partition(";")
    issuer = head.strip(WSP)
    if issuer and not _ISSUER.fullmatch(issuer):
        raise ValueError(f"{issuer!r} is not an issuer domain name")
    parameters: list[tuple[str, str]] = []
    tail = tail.strip(WSP)
    if tail:
        for text in tail.split(";"):
            found = _PARAMETER.fullmatch(text.strip(WSP))
            if found is None and not text.strip(WSP):
                raise ValueError("a ';' with no parameter after it")
            if found is None:
                raise ValueError(f"{text.strip(WSP)!r} is not a parameter (tag=value)")
            tag, given = found.group(1), found.group(2)
            if any(tag.lower() == seen.lower() for seen, _ in parameters):
                raise ValueError(f"the parameter {tag} is given twice")
            parameters.append((tag, given))
    return IssueValue(issuer.lower().rstrip("."), tuple(parameters))


def restrictions(parsed: IssueValue, *, account_url: str, method: str) -> list[str]:
    """RFC 8657: why a value naming this CA does not authorize this request (empty: it
    does). ``accounturi`` (§3) must equal the requesting account's URL exactly;
    ``validationmethods`` (§4) must list the challenge type used. Other parameters are
    ignored.

    Raises:
        ValueError: a malformed accounturi or validationmethods value.
    """
    why = []
    uri = parsed.parameter(ACCOUNT_URI)
    if uri is not None:
        if not _URI.fullmatch(uri):
            raise ValueError(f"{ACCOUNT_URI} {uri!r} is not a URI")
        if uri != account_url:
            why.append(f"for account {uri} ({ACCOUNT_URI})")
    methods = parsed.parameter(VALIDATION_METHODS)
    if methods is not None:
        if not _METHODS.fullmatch(methods):
            raise ValueError(
                f"{VALIDATION_METHODS} {methods!r} is not a comma separated list of method names"
            )
        listed = methods.split(",") if methods else []
        if method not in listed:
            why.append(f"by {', '.join(listed) or 'no method'} ({VALIDATION_METHODS})")
    return why


def climb(name: str) -> list[str]:
    """§3: the names whose CAA records are looked at in turn: the name, then each parent,
    the root excluded (``www.example.com`` → itself, ``example.com``, ``com``)."""
    labels = name.lower().rstrip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def forbids(
    records: Sequence[Record],
    *,
    identities: Iterable[str],
    wildcard: bool,
    account_url: str,
    method: str,
) -> str | None:
    """Why the relevant record set forbids issuance by ``identities`` to the ACME account
    ``account_url`` validated by ``method`` (None: permitted).

    RFC 8659 §4.1: an unknown tag flagged critical forbids. §4.2/§4.3: for a wildcard the
    issuewild properties decide when there are any, else the issue properties; with
    neither, anyone may issue; otherwise one property must name one of our issuer domain
    names and, with its RFC 8657 parameters (``restrictions``), admit this request. A
    property naming us whose value is malformed admits nothing.
    """
    ours = {i.strip().lower().rstrip(".") for i in identities if i.strip()}
    for record in records:
        if record.flags & CRITICAL and record.tag.lower() not in KNOWN_TAGS:
            return f"the CAA record {record.tag!r} is flagged critical and not understood"
    issue = [r for r in records if r.tag.lower() == "issue"]
    issuewild = [r for r in records if r.tag.lower() == "issuewild"]
    deciding = issuewild if wildcard and issuewild else issue
    if not deciding:
        return None
    tag = "issuewild" if deciding is issuewild else "issue"
    shown: list[str] = []
    names_us = False
    for record in deciding:
        name = issuer_of(record.value)
        if name not in ours:
            shown.append(repr(name) if name else "nobody")
            continue
        names_us = True
        try:
            why = restrictions(
                parse_issue_value(record.value), account_url=account_url, method=method
            )
        except ValueError as exc:
            shown.append(f"nothing by the malformed {record.value!r} ({exc})")
            continue
        if not why:
            return None
        shown.append(f"{name!r} only {' and '.join(why)}")
    if not names_us:
        return f"CAA {tag} allows {', '.join(shown)}, not this CA ({', '.join(sorted(ours))})"
    return (
        f"CAA {tag} allows {'; '.join(shown)}; this request is account "
        f"{account_url or '(URL unknown)'} by {method}"
    )
