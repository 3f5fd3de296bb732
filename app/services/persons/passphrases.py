"""End users' passphrases and secret ids, hashed with argon2id at OWASP's parameters for
interactive logins (19 MiB, two passes, one lane: about 20 ms a core) rather than the
administrators' RFC 9106 profile (64 MiB, three passes, four lanes): a registration hashes
on the portal's request thread, and fifty people registering at once must not stall the
portal's other pages. A passphrase has at least 12 characters (registration.py)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

_hashers: dict[bool, PasswordHasher] = {}
_DUMMY: dict[bool, str] = {}


def _hasher() -> PasswordHasher:
    fast = bool(current_app.config.get("CW_ARGON2_FAST"))  # the test suite's cheap setting
    if fast not in _hashers:
        _hashers[fast] = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            if fast
            else PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
        )
    return _hashers[fast]


def hash_passphrase(value: str) -> str:
    return _hasher().hash(value)


def verify_passphrase(stored: str, value: str) -> bool:
    try:
        return _hasher().verify(stored, value)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(value: str) -> None:
    """As long as a real check, so an unknown address answers in the same time."""
    fast = bool(current_app.config.get("CW_ARGON2_FAST"))
    if fast not in _DUMMY:
        _DUMMY[fast] = hash_passphrase("certwright-dummy-passphrase")
    verify_passphrase(_DUMMY[fast], value)
