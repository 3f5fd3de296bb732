"""Host-name resolution for discovery: every A and AAAA address, overrides first, deny list.

Resolution uses the running loop's ``getaddrinfo`` (the system resolver), or one DNS server
asked for A and AAAA records (``nameserver_lookup``: a scanner inside a zone with its own DNS). Addresses that fall
in the deny list are never scanned: they are returned in ``Resolution.denied`` so the sweep
can report them (a host name pointing at 169.254.169.254 must not reach cloud metadata).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from app.scan.addresses import (
    DEFAULT_DENY,
    AddressBlock,
    DenyEntry,
    address_to_int,
    find_denied,
    int_to_address,
)


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
        address = int_to_address(value, version)
        if address not in bucket:
            bucket.append(address)
    error = None if allowed else ("only denied addresses" if denied else "no address")
    return Resolution(host_name, tuple(allowed), tuple(denied), error)


Lookup = Callable[[str], Awaitable[list[str]]]


async def lookup_addresses(name: str) -> list[str]:
    """Every IPv4 and IPv6 address of ``name`` from the system resolver, in its order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0]).split("%", 1)[0]
            if address not in addresses:
                addresses.append(address)
    return addresses


def parse_nameserver(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``::1`` or ``[::1]:port`` -> (address, port).

    Raises:
        ValueError: not an IP address with an optional port.
    """
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(
            f"'{text}' is not a DNS server address (host, host:port, [v6]:port)"
        ) from None
    if not 1 <= number <= 65535:
        raise ValueError(f"'{text}' has an invalid port")
    return host, number


def nameserver_lookup(server: str, *, timeout: float = 5.0) -> Lookup:
    """A Lookup that asks the DNS server ``server`` for every A and AAAA record of a name.

    Raises:
        ValueError: ``server`` is not an address (see parse_nameserver).
    """
    host, port = parse_nameserver(server)

    async def lookup(name: str) -> list[str]:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
        resolver.lifetime = timeout
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(name, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise OSError(f"{rdtype} query to {server} failed: {exc}") from None
            addresses.extend(str(record.address) for record in answer)
        return list(dict.fromkeys(addresses))

    return lookup


async def resolve_host_names(
    names: Iterable[str],
    *,
    overrides: Mapping[str, Sequence[str]] | None = None,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
    timeout: float = 5.0,
    concurrency: int = 16,
    lookup: Lookup = lookup_addresses,
) -> dict[str, Resolution]:
    """Resolve each name to all of its addresses; ``overrides`` win over DNS.

    Never raises for a lookup failure: the Resolution carries ``error`` instead.
    ``lookup`` is the resolver (injectable for tests; default: ``loop.getaddrinfo``).
    """
    overrides = overrides or {}
    limit = asyncio.Semaphore(max(1, concurrency))

    async def resolve_one(name: str) -> Resolution:
        if name in overrides:
            return screen_addresses(name, overrides[name], deny)
        async with limit:
            try:
                found = await asyncio.wait_for(lookup(name), timeout=timeout)
            except TimeoutError:
                return Resolution(name, (), error="DNS lookup timed out")
            except (OSError, UnicodeError) as exc:
                return Resolution(name, (), error=f"DNS lookup failed: {exc}")
        return screen_addresses(name, found, deny)

    unique = list(dict.fromkeys(names))
    results = await asyncio.gather(*(resolve_one(name) for name in unique))
    return {resolution.host_name: resolution for resolution in results}
