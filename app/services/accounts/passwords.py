"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from app.services.errors import DomainError

MIN_LENGTH = 12

_hashers: dict[bool, PasswordHasher] = {}


def _hasher() -> PasswordHasher:
    # The test suite uses cheap parameters; production uses argon2-cffi's RFC 9106
    # low-memory profile (argon2id, t=3, m=64 MiB, p=4).
    fast = bool(current_app.config.get("CW_ARGON2_FAST"))
    if fast not in _hashers:
        _hashers[fast] = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            if fast
            else PasswordHasher()
        )
    return _hashers[fast]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


_DUMMY: dict[bool, str] = {}


def dummy_hash() -> str:
    """A hash with the current parameters of a password nobody has: verifying against it
    costs as much as verifying a real account's, so unknown logins are not faster."""
    fast = bool(current_app.config.get("CW_ARGON2_FAST"))
    if fast not in _DUMMY:
        _DUMMY[fast] = hash_password(secrets.token_urlsafe(32))
    return _DUMMY[fast]


def check_policy(password: str, *, login: str = "", field: str = "password") -> None:
    """Raise DomainError naming the first rule the password breaks."""
    if len(password) < MIN_LENGTH:
        raise DomainError(
            f"The password must be at least {MIN_LENGTH} characters long.", field=field
        )
    if len(password) > 1024:
        raise DomainError("The password must be at most 1024 characters long.", field=field)
    if login and login.lower() in password.lower():
        raise DomainError("The password must not contain the login name.", field=field)
    if len(set(password)) < 5:
        raise DomainError("The password must use at least 5 different characters.", field=field)
