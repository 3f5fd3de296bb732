"""Address arithmetic for discovery: integer address blocks, port ranges and the deny list.

Pure: no sockets are opened here. Blocks are ``(start, end, version)`` integer ranges so a
/16 (or a /8) is three integers, never a list.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from typing import NamedTuple

IPV4_MAX = (1 << 32) - 1
IPV6_MAX = (1 << 128) - 1


class AddressBlock(NamedTuple):
    """An inclusive range of IPv4 (version 4) or IPv6 (version 6) addresses as integers."""

    start: int
    end: int
    version: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def overlaps(self, other: AddressBlock) -> bool:
        return self.version == other.version and self.start <= other.end and other.start <= self.end

    def contains(self, value: int, version: int) -> bool:
        return version == self.version and self.start <= value <= self.end

    def describe(self) -> str:
        """Shortest text form: ``10.0.0.1``, ``10.0.0.0/24`` or ``10.0.0.1-10.0.0.50``."""
        if self.start == self.end:
            return int_to_address(self.start, self.version)
        size = self.size
        if size & (size - 1) == 0 and self.start % size == 0:
            bits = 32 if self.version == 4 else 128
            prefix = bits - (size.bit_length() - 1)
            return f"{int_to_address(self.start, self.version)}/{prefix}"
        first = int_to_address(self.start, self.version)
        return f"{first}-{int_to_address(self.end, self.version)}"


class PortRange(NamedTuple):
    """An inclusive range of TCP ports."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class DenyEntry(NamedTuple):
    """A block that a discovery task may never include, with the reason shown to the admin."""

    block: AddressBlock
    label: str

    def describe(self) -> str:
        return f"{self.block.describe()} {self.label}"


def int_to_address(value: int, version: int) -> str:
    """Text form of an address integer (inet_ntop: fast, canonical, compressed IPv6)."""
    if version == 4:
        return socket.inet_ntoa(value.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def address_to_int(text: str) -> tuple[int, int]:
    """``(integer, version)`` of an IPv4/IPv6 address.

    Raises:
        ValueError: not an address, or an IPv6 address with a zone index.
    """
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ValueError("scoped IPv6 addresses cannot be scanned")
    return int(address), address.version


def parse_block(text: str) -> AddressBlock:
    """A single address, CIDR block or full ``first-last`` range as an AddressBlock.

    Raises:
        ValueError: the text is none of those (the message says why).
    """
    text = text.strip()
    if "/" in text:
        network = ipaddress.ip_network(text, strict=True)
        return AddressBlock(
            int(network.network_address), int(network.broadcast_address), network.version
        )
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        first, version = address_to_int(first_text)
        last, last_version = address_to_int(last_text)
        if version != last_version or last < first:
            raise ValueError(f"'{text}' is not an ascending range of one address family")
        return AddressBlock(first, last, version)
    value, version = address_to_int(text)
    return AddressBlock(value, value, version)


def merge_blocks(blocks: Iterable[AddressBlock]) -> tuple[AddressBlock, ...]:
    """Sorted blocks with overlapping and adjacent ones joined (IPv4 before IPv6)."""
    merged: list[AddressBlock] = []
    for block in sorted(blocks, key=lambda b: (b.version, b.start, b.end)):
        if merged and merged[-1].version == block.version and block.start <= merged[-1].end + 1:
            last = merged[-1]
            merged[-1] = AddressBlock(last.start, max(last.end, block.end), last.version)
        else:
            merged.append(block)
    return tuple(merged)


def merge_ports(ports: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted port ranges with overlapping and adjacent ones joined."""
    merged: list[PortRange] = []
    for port_range in sorted(ports):
        if merged and port_range.first <= merged[-1].last + 1:
            merged[-1] = PortRange(merged[-1].first, max(merged[-1].last, port_range.last))
        else:
            merged.append(port_range)
    return tuple(merged)


def iter_ports(ports: Iterable[PortRange]) -> Iterator[int]:
    for port_range in ports:
        yield from range(port_range.first, port_range.last + 1)


def _deny(text: str, label: str) -> DenyEntry:
    return DenyEntry(parse_block(text), label)


# Addresses no discovery task may include. Loopback (127.0.0.0/8, ::1) is deliberately
# allowed: tests and benchmarks scan it. 240.0.0.0/4 holds the limited broadcast address
# 255.255.255.255; IPv4-mapped IPv6 is refused so it cannot smuggle in a denied IPv4 address.
DEFAULT_DENY: tuple[DenyEntry, ...] = (
    _deny("0.0.0.0/8", "('this network', unspecified)"),
    _deny("169.254.0.0/16", "(link-local, cloud metadata)"),
    _deny("224.0.0.0/4", "(multicast)"),
    _deny("240.0.0.0/4", "(reserved, limited broadcast)"),
    _deny("::/128", "(unspecified)"),
    _deny("::ffff:0:0/96", "(IPv4-mapped IPv6; write the IPv4 address)"),
    _deny("fe80::/10", "(link-local)"),
    _deny("ff00::/8", "(multicast)"),
)


def parse_deny_list(entries: Iterable[str]) -> tuple[DenyEntry, ...]:
    """Deny entries from config lines ``"<address|CIDR|first-last> [label]"``.

    Raises:
        ValueError: an entry is not an address, CIDR block or range.
    """
    parsed: list[DenyEntry] = []
    for entry in entries:
        block_text, _, label = entry.strip().partition(" ")
        try:
            block = parse_block(block_text)
        except ValueError as exc:
            raise ValueError(f"deny list entry '{entry}' is not an address block: {exc}") from None
        parsed.append(DenyEntry(block, f"({label.strip()})" if label.strip() else "(denied)"))
    return tuple(parsed)


def find_denied(block: AddressBlock, deny: Iterable[DenyEntry]) -> DenyEntry | None:
    """The first deny entry overlapping ``block``, or None."""
    for entry in deny:
        if entry.block.overlaps(block):
            return entry
    return None
