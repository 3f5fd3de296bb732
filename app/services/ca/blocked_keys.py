"""The blocklist of public keys never certified again (CA/B Forum BR 6.1.1.3(4)): keys of
certificates revoked for keyCompromise or cACompromise, and keys imported from lists of
compromised or weak keys. Keys are identified by app.pki.weak_keys.spki_sha256.

Every front door that takes a key (request wizard, CLI, renewals reusing a key, issuance)
passes BLOCKED, or blocked_among() for a batch, to the pure key policy.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from app.extensions import db
from app.models import BlockedKey, DebianWeakKey
from app.models.types import utcnow
from app.pki.keys import PublicKey
from app.pki.weak_keys import spki_sha256


class _BlockedKeys:
    """A Container[str] of SPKI SHA-256 values backed by the blocked_keys table (one
    indexed lookup per ``in``), for keys.check_key_policy(blocked_spki_sha256=...)."""

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        found = db.session.execute(
            select(BlockedKey.id).where(BlockedKey.spki_sha256 == value)
        ).first()
        return found is not None


BLOCKED = _BlockedKeys()


class _DebianWeakKeys:
    """A Container[str] of Debian weak key fingerprints backed by the debian_weak_keys
    table, for keys.check_key_policy(debian_weak=...)."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and bool(debian_weak_among([value]))


DEBIAN_WEAK = _DebianWeakKeys()


def blocked_among(fingerprints: Iterable[str]) -> frozenset[str]:
    """Which of these SPKI SHA-256 values are blocked, in one query (issuance batches)."""
    wanted = sorted(set(fingerprints))
    if not wanted:
        return frozenset()
    found = db.session.execute(
        select(BlockedKey.spki_sha256).where(BlockedKey.spki_sha256.in_(wanted))
    ).scalars()
    return frozenset(found)


def block_key(*, public_key: PublicKey, reason: str, source: str) -> bool:
    """Add a key to the blocklist in this transaction (the caller audits the act that
    blocked it); False when it was already there."""
    return block_fingerprint(fingerprint=spki_sha256(public_key), reason=reason, source=source)


def block_fingerprint(*, fingerprint: str, reason: str, source: str) -> bool:
    """Add an SPKI SHA-256 (64 lower-case hex digits) to the blocklist; False when known."""
    value = fingerprint.strip().lower()
    if value in BLOCKED:
        return False
    db.session.add(
        BlockedKey(spki_sha256=value, reason=reason[:32], source=source[:255], added_at=utcnow())
    )
    db.session.flush()
    return True


def debian_weak_among(fingerprints: Iterable[str]) -> frozenset[str]:
    """Which of these openssl-blacklist fingerprints (weak_keys.debian_fingerprint) are
    Debian weak keys, in one query."""
    wanted = sorted(set(fingerprints))
    if not wanted:
        return frozenset()
    found = db.session.execute(
        select(DebianWeakKey.fingerprint).where(DebianWeakKey.fingerprint.in_(wanted))
    ).scalars()
    return frozenset(found)
