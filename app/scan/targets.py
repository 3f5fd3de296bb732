"""Discovery task range and port text -> a validated, serialisable TargetSpec. No I/O.

Range text: one entry per line and/or separated by commas or spaces; ``#`` starts a comment.
An entry is an IPv4/IPv6 address (``[::1]`` brackets allowed), a CIDR block (host bits must
be zero), a range ``10.0.0.1-10.0.0.50`` / ``2001:db8::1-2001:db8::ff``, the IPv4 short form
``10.0.0.1-50`` (the end replaces the last octet; IPv4 only, as IPv6 has no obvious "last
part"), or a host name (IDN allowed, stored as A-labels). Overlapping entries are merged so
nothing is scanned twice. Port text: ``443,8443,9000-9010``; blank means 443.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.scan.addresses import (
    DEFAULT_DENY,
    AddressBlock,
    DenyEntry,
    PortRange,
    address_to_int,
    find_denied,
    int_to_address,
    merge_blocks,
    merge_ports,
    parse_block,
)
from app.scan.errors import TargetSpecError

DEFAULT_PORT = 443
DEFAULT_MAX_ADDRESSES = 65_536
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DASH = re.compile(r"\s*-\s*")
_SEPARATORS = re.compile(r"[,;\s]+")


@dataclass(frozen=True)
class TargetSpec:
    """What one discovery task scans: merged address blocks, host names and ports.

    ``host_overrides`` maps a listed host name to the addresses to use instead of DNS
    (split-horizon DNS, tests); it takes precedence over resolution.
    """

    blocks: tuple[AddressBlock, ...]
    host_names: tuple[str, ...]
    ports: tuple[PortRange, ...]
    host_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def address_count(self) -> int:
        return sum(block.size for block in self.blocks)

    @property
    def port_count(self) -> int:
        return sum(port_range.size for port_range in self.ports)

    @property
    def target_count(self) -> int:
        """Progress units: (addresses + host names) x ports."""
        return (self.address_count + len(self.host_names)) * self.port_count

    @property
    def overrides(self) -> dict[str, tuple[str, ...]]:
        return dict(self.host_overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": [list(block) for block in self.blocks],
            "host_names": list(self.host_names),
            "ports": [list(port_range) for port_range in self.ports],
            "host_overrides": {name: list(addrs) for name, addrs in self.host_overrides},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetSpec:
        """Rebuild from ``to_dict`` output (shape-checked, not re-run through the deny list).

        Raises:
            TargetSpecError: the mapping is not a serialised TargetSpec.
        """
        try:
            blocks = tuple(blocks_from_json(data["blocks"]))
            ports = tuple(ports_from_json(data["ports"]))
            names = tuple(str(name) for name in data.get("host_names", ()))
            overrides = tuple(
                (str(name), tuple(str(a) for a in addrs))
                for name, addrs in dict(data.get("host_overrides", {})).items()
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetSpecError([f"not a serialised target spec: {exc!r}"]) from None
        return cls(blocks, names, ports, overrides)


def blocks_from_json(items: Iterable[Sequence[Any]]) -> Iterable[AddressBlock]:
    for start, end, version in items:
        block = AddressBlock(int(start), int(end), int(version))
        limit = (1 << (32 if block.version == 4 else 128)) - 1
        if block.version not in (4, 6) or not 0 <= block.start <= block.end <= limit:
            raise ValueError(f"bad address block {list(block)}")
        yield block


def ports_from_json(items: Iterable[Sequence[Any]]) -> Iterable[PortRange]:
    for first, last in items:
        port_range = PortRange(int(first), int(last))
        if not 1 <= port_range.first <= port_range.last <= 65535:
            raise ValueError(f"bad port range {list(port_range)}")
        yield port_range


def normalize_host_name(text: str) -> str | None:
    """Lower-case A-label form of a DNS host name, or None if ``text`` is not one.

    A final label made only of digits is refused (RFC 3696 section 2), so a mistyped
    address such as ``10.0.0.300`` is not taken for a host name.
    """
    name = text.strip().rstrip(".")
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.lower().split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return ".".join(labels)


def split_entries(text: str) -> Iterable[tuple[int, str]]:
    """``(line number, entry)`` pairs; comments dropped, spaces around a range dash ignored."""
    for number, line in enumerate(text.splitlines(), start=1):
        content = _DASH.sub("-", line.split("#", 1)[0]).strip()
        for entry in _SEPARATORS.split(content):
            if entry:
                yield number, entry


def _parse_range(entry: str) -> AddressBlock:
    first_text, _, last_text = entry.partition("-")
    first, version = address_to_int(first_text)
    if version == 4 and _is_number(last_text):
        octet = int(last_text)
        if octet > 255:
            raise _EntryError(f"has an invalid range end '{last_text}' (last octet 0-255)")
        last = (first & ~0xFF) | octet
    else:
        try:
            last, last_version = address_to_int(last_text)
        except ValueError:
            raise _EntryError(
                f"has an invalid range end '{last_text}' (a full address, or for IPv4 "
                "the last octet)"
            ) from None
        if last_version != version:
            raise _EntryError("mixes IPv4 and IPv6")
    if last < first:
        raise _EntryError("ends before it starts")
    return AddressBlock(first, last, version)


class _EntryError(ValueError):
    pass


def parse_entry(entry: str) -> AddressBlock | str:
    """An AddressBlock for an address, CIDR block or range; the normalised name for a host.

    Raises:
        ValueError: the message completes the sentence "'<entry>' ...".
    """
    if entry.startswith("[") and entry.endswith("]"):
        entry = entry[1:-1]
    if "%" in entry:
        raise _EntryError("has a zone index; scoped IPv6 addresses cannot be scanned")
    if "://" in entry:
        raise _EntryError("is a URL; enter the host name only")
    if entry.startswith("*."):
        raise _EntryError("is a wildcard; list the host names to scan")
    if "/" in entry:
        address_text, _, prefix = entry.partition("/")
        if _is_address(address_text):
            bits = 32 if ipaddress.ip_address(address_text).version == 4 else 128
            if not _is_number(prefix) or int(prefix) > bits:
                raise _EntryError(f"has an invalid prefix length (/0-/{bits})")
        try:
            return parse_block(entry)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                network = ipaddress.ip_network(entry, strict=False)
                raise _EntryError(f"has host bits set; did you mean {network}?") from None
            raise _EntryError(_NOT_A_TARGET) from None
    first_text = entry.partition("-")[0]
    if "-" in entry and _is_address(first_text):
        return _parse_range(entry)
    if _is_address(entry):
        return parse_block(entry)
    name = normalize_host_name(entry)
    if name is None:
        raise _EntryError(_NOT_A_TARGET)
    return name


_NOT_A_TARGET = "is not an IPv4/IPv6 address, CIDR block, range or host name"


def _is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """Port text such as ``443,8443,9000-9010`` (blank means 443).

    Raises:
        TargetSpecError: one message per bad entry.
    """
    errors: list[str] = []
    ranges: list[PortRange] = []
    for _, entry in split_entries(text):
        first_text, dash, last_text = entry.partition("-")
        if not _is_number(first_text) or (dash and not _is_number(last_text)):
            errors.append(f"ports: '{entry}' is not a port number or range (1-65535)")
            continue
        first = int(first_text)
        last = int(last_text) if dash else first
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            errors.append(f"ports: '{entry}' is outside 1-65535")
        elif last < first:
            errors.append(f"ports: '{entry}' ends before it starts")
        else:
            ranges.append(PortRange(first, last))
    if errors:
        raise TargetSpecError(errors)
    return merge_ports(ranges) or (PortRange(DEFAULT_PORT, DEFAULT_PORT),)


def parse_target_spec(
    ranges: str,
    ports: str = "443",
    *,
    host_overrides: Mapping[str, Iterable[str]] | None = None,
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
) -> TargetSpec:
    """Validate a task's range and port text into a TargetSpec.

    ``max_addresses`` caps distinct addresses plus host names; any overlap with ``deny``
    refuses the task. Counting never expands a block.

    Raises:
        TargetSpecError: every problem found, one message each, e.g.
            "line 3: '10.0.0.300' is not an IPv4/IPv6 address, CIDR block, range or host name".
    """
    errors: list[str] = []
    blocks: list[AddressBlock] = []
    names: dict[str, None] = {}
    for number, entry in split_entries(ranges):
        try:
            parsed = parse_entry(entry)
        except ValueError as exc:
            reason = str(exc) if isinstance(exc, _EntryError) else _NOT_A_TARGET
            errors.append(f"line {number}: '{entry}' {reason}")
            continue
        if isinstance(parsed, str):
            names[parsed] = None
            continue
        if parsed.size > max_addresses:
            errors.append(f"line {number}: '{entry}' {_too_large(parsed, max_addresses)}")
            continue
        denied = find_denied(parsed, deny)
        if denied is not None:
            errors.append(
                f"line {number}: '{entry}' includes denied addresses ({denied.describe()})"
            )
            continue
        blocks.append(parsed)
    try:
        port_ranges = parse_ports(ports)
    except TargetSpecError as exc:
        errors.extend(exc.messages)
        port_ranges = ()
    overrides = _check_overrides(host_overrides or {}, names, deny, errors)
    merged = merge_blocks(blocks)
    total = sum(block.size for block in merged) + len(names)
    if not merged and not names and not errors:
        errors.append("no targets: enter at least one address, CIDR block, range or host name")
    if total > max_addresses:
        errors.append(
            f"the task covers {total:,} addresses and host names; the limit is "
            f"{max_addresses:,} per task"
        )
    if errors:
        raise TargetSpecError(errors)
    return TargetSpec(merged, tuple(names), port_ranges, overrides)


def _too_large(block: AddressBlock, cap: int) -> str:
    """Why one entry alone is over the per-task cap, with the largest prefix that fits."""
    bits = 32 if block.version == 4 else 128
    longest = bits - (cap.bit_length() - 1)  # the shortest prefix length whose block fits
    size = block.size
    count = f"2^{size.bit_length() - 1}" if size & (size - 1) == 0 else f"{size:,}"
    text = f"covers {count} addresses; the limit is {cap:,} per task (CW_SCAN_MAX_ADDRESSES)"
    if block.version == 6:
        return (
            f"{text}: an IPv6 network cannot be swept; list the addresses in use, "
            f"ranges, or prefixes of /{longest} or longer"
        )
    return f"{text}: split it over several tasks, or list prefixes of /{longest} or longer"


def _check_overrides(
    overrides: Mapping[str, Iterable[str]],
    names: Mapping[str, None],
    deny: Sequence[DenyEntry],
    errors: list[str],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    checked: list[tuple[str, tuple[str, ...]]] = []
    for raw_name, raw_addresses in overrides.items():
        name = normalize_host_name(raw_name)
        if name is None or name not in names:
            errors.append(f"override '{raw_name}' is not one of the task's host names")
            continue
        addresses: list[str] = []
        for text in raw_addresses:
            try:
                value, version = address_to_int(text.strip().strip("[]"))
            except ValueError:
                errors.append(f"override '{raw_name}': '{text}' is not an IPv4/IPv6 address")
                continue
            denied = find_denied(AddressBlock(value, value, version), deny)
            if denied is not None:
                errors.append(f"override '{raw_name}': '{text}' is denied ({denied.describe()})")
                continue
            address = int_to_address(value, version)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            errors.append(f"override '{raw_name}' lists no usable address")
            continue
        checked.append((name, tuple(addresses)))
    return tuple(checked)


def parse_host_overrides(text: str) -> dict[str, list[str]]:
    """Override text, one ``host.example.com = 10.0.0.5, 2001:db8::5`` per line.

    Raises:
        TargetSpecError: a line without ``=``.
    """
    result: dict[str, list[str]] = {}
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        name, equals, addresses = content.partition("=")
        if not equals or not name.strip():
            errors.append(f"overrides line {number}: expected 'host name = address, ...'")
            continue
        result.setdefault(name.strip(), []).extend(
            a for a in _SEPARATORS.split(addresses.strip()) if a
        )
    if errors:
        raise TargetSpecError(errors)
    return result


def validate_targets(
    ranges: str,
    ports: str = "443",
    *,
    host_overrides: Mapping[str, Iterable[str]] | None = None,
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
) -> list[str]:
    """The messages parse_target_spec would raise (empty when valid), for form feedback."""
    try:
        parse_target_spec(
            ranges, ports, host_overrides=host_overrides, max_addresses=max_addresses, deny=deny
        )
    except TargetSpecError as exc:
        return list(exc.messages)
    return []
