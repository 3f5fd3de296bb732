"""CAA (RFC 8659): may a CA with these issuer domain names issue for a name, given the
relevant CAA record set (the first non-empty one climbing from the name towards the root,
which the caller looks up)?"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CRITICAL = 0x80
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail"})


@dataclass(frozen=True)
class Record:
    flags: int
    tag: str
    value: str


def issuer_of(value: str) -> str:
    """§4.2: the issuer-domain-name of an issue/issuewild value (before any ';'
    parameters), lower case; "" when the value names no one (``;`` or empty)."""
    return value.split(";", 1)[0].strip().lower().rstrip(".")


def climb(name: str) -> list[str]:
    """§3: the names whose CAA records are looked at in turn: the name, then each parent,
    the root excluded (``www.example.com`` → itself, ``example.com``, ``com``)."""
    labels = name.lower().rstrip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def forbids(records: Sequence[Record], *, identities: Iterable[str], wildcard: bool) -> str | None:
    """Why the relevant record set forbids issuance by ``identities`` (None: permitted).

    §4.1: an unknown tag flagged critical forbids. §4.2/§4.3: for a wildcard the issuewild
    properties decide when there are any, else the issue properties; with neither, anyone
    may issue; otherwise one property must name one of our issuer domain names.
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
    named = [issuer_of(r.value) for r in deciding]
    if ours & set(named):
        return None
    tag = "issuewild" if deciding is issuewild else "issue"
    shown = ", ".join(repr(n) if n else "nobody" for n in named)
    return f"CAA {tag} allows {shown}, not this CA ({', '.join(sorted(ours))})"
