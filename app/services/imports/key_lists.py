"""Lists of weak and compromised keys an MRAO loads (`flask --app wsgi ca weak-keys load`):
Debian's openssl-blacklist files (the Debian weak keys of CVE-2008-0166, BR §6.1.1.3(5.1)),
and lists of SPKI SHA-256 values of keys reported compromised (BR §6.1.1.3(4)). From then
on the CA refuses those keys (app.services.ca.blocked_keys), and every certificate in the
inventory that has one carries the finding at once (sweep.flag_listed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import BlockedKey, DebianWeakKey
from app.models.types import utcnow
from app.pki import weak_keys
from app.services import audit
from app.services.errors import DomainError, Forbidden
from app.services.imports import sweep
from app.services.scope import Actor, require_actor

# What `ca weak-keys load` reads: Debian's openssl-blacklist files (blacklist.RSA-2048 ...)
# or a list of SPKI SHA-256 values of compromised keys, one a line.
LIST_FORMATS: Final = {"debian": weak_keys.DEBIAN_FINGERPRINT_HEX, "spki-sha256": 64}
_BLOCKLIST_REASON: Final = "listed"


@dataclass(frozen=True)
class ListLoad:
    read: int
    added: int
    total: int
    flagged: int


def load_key_list(*, actor: Actor, lines: Iterable[str], list_format: str, source: str) -> ListLoad:
    """Add every fingerprint of a key list to its table in this transaction, audited; all
    or nothing: a malformed line refuses the file. MRAO only (the lists are account-wide).

    Raises:
        Forbidden: the actor is not an MRAO.
        DomainError: an unknown format or a malformed line (its number is in the message).
    """
    if not require_actor(actor).is_master:
        raise Forbidden("Only an MRAO may load lists of weak or compromised keys.")
    if list_format not in LIST_FORMATS:
        raise DomainError(
            f"Unknown key list format {list_format!r}: use one of {', '.join(sorted(LIST_FORMATS))}."
        )
    try:
        values = sorted(weak_keys.parse_key_list(lines, digits=LIST_FORMATS[list_format]))
    except weak_keys.KeyListError as exc:
        raise DomainError(f"The key list {source!r} is refused: {exc}.") from exc
    now = utcnow()
    if list_format == "debian":
        table, column = DebianWeakKey.__table__, "fingerprint"
        rows = [{"fingerprint": v, "source": source[:255], "added_at": now} for v in values]
    else:
        table, column = BlockedKey.__table__, "spki_sha256"
        rows = [
            {"spki_sha256": v, "reason": _BLOCKLIST_REASON, "source": source[:255], "added_at": now}
            for v in values
        ]
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    added = 0
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        result = db.session.execute(
            insert(table).on_conflict_do_nothing(index_elements=[column]), chunk
        )
        added += int(getattr(result, "rowcount", 0) or 0)
    model = DebianWeakKey if list_format == "debian" else BlockedKey
    total = int(db.session.execute(select(func.count(model.id))).scalar_one())
    flagged = sweep.flag_listed(list_format)
    audit.record(
        action="weak_keys.loaded",
        actor=actor,
        object_type=model.__tablename__,
        label=source[:255],
        after={
            "source": source[:255],
            "format": list_format,
            "read": len(values),
            "added": added,
            "total": total,
            "certificates_flagged": flagged,
        },
        message=f"{added} of {len(values)} {list_format} fingerprints were new",
    )
    return ListLoad(read=len(values), added=added, total=total, flagged=flagged)
