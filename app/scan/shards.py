"""Splitting a TargetSpec into small serialisable shards and lazily walking a shard's targets.

A shard is the unit of work a worker process receives as a message. It is deterministic and
self-contained (blocks, ports, host names and their overrides), so a shard whose worker died
is simply sent again and yields exactly the same targets. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from app.scan.addresses import AddressBlock, PortRange, int_to_address, iter_ports
from app.scan.errors import TargetSpecError
from app.scan.targets import TargetSpec, blocks_from_json, ports_from_json

DEFAULT_SHARD_SIZE = 4096
# A small task is still cut into MIN_SHARDS messages (of at least MIN_SHARD_SIZE targets):
# a dramatiq worker process takes two messages at a time (prefetch = 2 x threads), so one
# or two shards would all land on one process while the others idle.
MIN_SHARDS = 4
MIN_SHARD_SIZE = 256


class Target(NamedTuple):
    """One endpoint to probe. ``host_name`` is set (and sent as SNI) for host-name targets."""

    ip: str
    port: int
    host_name: str | None
    version: int


@dataclass(frozen=True)
class Shard:
    """A slice of a task: address blocks plus host names, all probed on ``ports``."""

    index: int
    blocks: tuple[AddressBlock, ...]
    host_names: tuple[str, ...]
    ports: tuple[PortRange, ...]
    host_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def address_count(self) -> int:
        return sum(block.size for block in self.blocks)

    @property
    def target_count(self) -> int:
        """Progress units: (addresses + host names) x ports."""
        return (self.address_count + len(self.host_names)) * sum(p.size for p in self.ports)

    def describe(self) -> str:
        """Short text for a shard row, e.g. ``10.0.0.0/24, 10.0.1.0-10.0.1.9 + 2 host names``."""
        parts = [block.describe() for block in self.blocks[:3]]
        if len(self.blocks) > 3:
            parts.append(f"... ({len(self.blocks)} blocks)")
        text = ", ".join(parts)
        if self.host_names:
            count = len(self.host_names)
            text += f"{' + ' if text else ''}{count} host name{'s' if count > 1 else ''}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "blocks": [list(block) for block in self.blocks],
            "host_names": list(self.host_names),
            "ports": [list(port_range) for port_range in self.ports],
            "host_overrides": {name: list(addrs) for name, addrs in self.host_overrides},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shard:
        """Rebuild from ``to_dict`` output (e.g. a job message).

        Raises:
            TargetSpecError: the mapping is not a serialised shard.
        """
        try:
            return cls(
                index=int(data["index"]),
                blocks=tuple(blocks_from_json(data["blocks"])),
                host_names=tuple(str(name) for name in data.get("host_names", ())),
                ports=tuple(ports_from_json(data["ports"])),
                host_overrides=tuple(
                    (str(name), tuple(str(a) for a in addrs))
                    for name, addrs in dict(data.get("host_overrides", {})).items()
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetSpecError([f"not a serialised shard: {exc!r}"]) from None


def pick_shard_size(target_count: int, largest: int = DEFAULT_SHARD_SIZE) -> int:
    """Targets per shard for a task of ``target_count``: ``largest`` for big tasks; below
    MIN_SHARDS x ``largest`` targets, a quarter of the task (at least MIN_SHARD_SIZE), so
    that a few thousand TLS endpoints are shared by several worker processes."""
    if largest < 1:
        raise ValueError("largest must be at least 1")
    quarter = -(-target_count // MIN_SHARDS)
    return min(largest, max(MIN_SHARD_SIZE, quarter))


def _addresses_per_shard(spec: TargetSpec, shard_size: int) -> int:
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    return max(1, shard_size // max(1, spec.port_count))


def split_into_shards(spec: TargetSpec, shard_size: int = DEFAULT_SHARD_SIZE) -> Iterator[Shard]:
    """Lazily cut ``spec`` into shards of at most ``shard_size`` targets.

    Addresses (and then host names) are packed in order; a shard holds at least one address
    or host name, with all ports, so ``shard_size`` below the port count still makes progress.
    Nothing is expanded: a /8 cut into 4,096-target shards yields 4,096 small descriptors.
    """
    per_shard = _addresses_per_shard(spec, shard_size)
    overrides = spec.overrides
    index = 0
    blocks: list[AddressBlock] = []
    names: list[str] = []
    room = per_shard

    def emit() -> Shard:
        shard_overrides = tuple((n, overrides[n]) for n in names if n in overrides)
        return Shard(index, tuple(blocks), tuple(names), spec.ports, shard_overrides)

    for block in spec.blocks:
        start = block.start
        while start <= block.end:
            take = min(room, block.end - start + 1)
            blocks.append(AddressBlock(start, start + take - 1, block.version))
            start += take
            room -= take
            if room == 0:
                yield emit()
                index, blocks, names, room = index + 1, [], [], per_shard
    for name in spec.host_names:
        names.append(name)
        room -= 1
        if room == 0:
            yield emit()
            index, blocks, names, room = index + 1, [], [], per_shard
    if blocks or names:
        yield emit()


def count_shards(spec: TargetSpec, shard_size: int = DEFAULT_SHARD_SIZE) -> int:
    """How many shards split_into_shards will yield, without building them."""
    per_shard = _addresses_per_shard(spec, shard_size)
    units = spec.address_count + len(spec.host_names)
    return -(-units // per_shard)


def iter_targets(
    shard: Shard, resolved: Mapping[str, Sequence[str]] | None = None
) -> Iterator[Target]:
    """Lazily yield every (ip, port, host_name) of a shard.

    Address blocks are yielded as IPs without SNI. A host name yields one target per address
    per port, taking addresses from ``resolved`` (see app.scan.resolve), else from the shard's
    overrides; a name with neither yields nothing (the sweep reports it as unresolved).
    """
    ports = list(iter_ports(shard.ports))
    for block in shard.blocks:
        version = block.version
        for value in range(block.start, block.end + 1):
            ip = int_to_address(value, version)
            for port in ports:
                yield Target(ip, port, None, version)
    overrides = dict(shard.host_overrides)
    for name in shard.host_names:
        addresses = (resolved or {}).get(name) or overrides.get(name, ())
        for address in addresses:
            version = 6 if ":" in address else 4
            for port in ports:
                yield Target(address, port, name, version)
