"""End users' passphrases and secret ids, hashed with argon2id at OWASP's parameters for
interactive logins (19 MiB, two passes, one lane: about 20 ms a core) rather than the
administrators' RFC 9106 profile (64 MiB, three passes, four lanes): a registration hashes
on the portal's request thread, and fifty people registering at once must not stall the
portal's other pages. A passphrase has at least 12 characters (registration.py).

The hashing itself runs on a small pool of threads at a lower CPU priority (nice +10, as
docs/portal.md recommends for the keygen workers; Linux sets it per thread): a wave of
registrations then waits for the hashes while the portal's other pages, on the request
threads, are answered first. The parameters are the same; only the queue changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

T = TypeVar("T")
# Two hashes at once per process (the memory of two, 38 MiB); the rest queue without CPU.
POOL_THREADS = 2
NICE = 10
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _lower_priority() -> None:
    """This pool thread only (a Linux thread has its own nice value); elsewhere a no-op."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))
    except (AttributeError, OSError):
        pass


def _on_pool(fn: Callable[..., T], *args: str) -> T:
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid():  # none yet, or made before a fork
        with _pool_lock:
            if _pool is None or _pool[0] != os.getpid():
                _pool = (
                    os.getpid(),
                    ThreadPoolExecutor(
                        POOL_THREADS, thread_name_prefix="cw-argon2", initializer=_lower_priority
                    ),
                )
            pool = _pool
    return pool[1].submit(fn, *args).result()


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
    return _on_pool(_hasher().hash, value)


def verify_passphrase(stored: str, value: str) -> bool:
    try:
        return _on_pool(_hasher().verify, stored, value)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(value: str) -> None:
    """As long as a real check, so an unknown address answers in the same time."""
    fast = bool(current_app.config.get("CW_ARGON2_FAST"))
    if fast not in _DUMMY:
        _DUMMY[fast] = hash_passphrase("certwright-dummy-passphrase")
    verify_passphrase(_DUMMY[fast], value)
