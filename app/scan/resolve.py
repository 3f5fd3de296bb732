"""Host-name resolution for discovery: every A and AAAA address, overrides first, deny list.

Resolution uses the running loop's ``getaddrinfo`` (the system resolver). Addresses that fall
in the deny list are never scanned: they are returned in ``Resolution.denied`` so the sweep
can report them (a host name pointing at 169.254.169.254 must not reach cloud metadata).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.scan.addresses import DEFAULT_DENY, AddressBlock, DenyEntry, address_to_int, find_denied


@dataclass(frozen=True)
class Resolution:
    """The addresses one host name is probed on, and why any were left out."""

    host_name: str
    addresses: tuple[str, ...]
    denied: tuple[str, ...] = ()
    error: str | None = None


def screen_addresses(
    host_name: str, candidates: Iterable[str], deny: Sequence[DenyEntry]
) -> Resolution:
    """Split candidate addresses into allowed and denied (duplicates and junk dropped)."""
    allowed: list[str] = []
    denied: list[str] = []
    for candidate in candidates:
        try:
            value, version = address_to_int(candidate)
        except ValueError:
            continue
        bucket = denied if find_denied(AddressBlock(value, value, version), deny) else allowed
        if candidate not in bucket:
            bucket.append(candidate)
    error = None if allowed else ("only denied addresses" if denied else "no address")
    return Resolution(host_name, tuple(allowed), tuple(denied), error)


async def _lookup(name: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout=timeout
    )
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0]).split("%", 1)[0]
            if address not in addresses:
                addresses.append(address)
    return addresses


async def resolve_host_names(
    names: Iterable[str],
    *,
    overrides: Mapping[str, Sequence[str]] | None = None,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
    timeout: float = 5.0,
    concurrency: int = 16,
) -> dict[str, Resolution]:
    """Resolve each name to all of its addresses; ``overrides`` win over DNS.

    Never raises for a lookup failure: the Resolution carries ``error`` instead.
    """
    overrides = overrides or {}
    limit = asyncio.Semaphore(max(1, concurrency))

    async def resolve_one(name: str) -> Resolution:
        if name in overrides:
            return screen_addresses(name, overrides[name], deny)
        async with limit:
            try:
                found = await _lookup(name, timeout)
            except TimeoutError:
                return Resolution(name, (), error="DNS lookup timed out")
            except (OSError, UnicodeError) as exc:
                return Resolution(name, (), error=f"DNS lookup failed: {exc}")
        return screen_addresses(name, found, deny)

    unique = list(dict.fromkeys(names))
    results = await asyncio.gather(*(resolve_one(name) for name in unique))
    return {resolution.host_name: resolution for resolution in results}
