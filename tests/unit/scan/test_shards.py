"""Shards: lazy, bounded, serialisable, deterministic, covering exactly the task."""

from __future__ import annotations

import itertools
import json
import time
import tracemalloc

import pytest

from app.scan.addresses import AddressBlock
from app.scan.errors import TargetSpecError
from app.scan.shards import (
    Shard,
    Target,
    count_shards,
    iter_targets,
    pick_shard_size,
    split_into_shards,
)
from app.scan.targets import parse_target_spec


def all_targets(shards: list[Shard]) -> list[Target]:
    return [t for shard in shards for t in iter_targets(shard)]


def test_shards_cover_the_spec_exactly_once() -> None:
    spec = parse_target_spec("10.0.0.0/29, 10.0.1.1-10.0.1.3, 2001:db8::/126", "443,8443")
    shards = list(split_into_shards(spec, shard_size=6))
    targets = all_targets(shards)
    assert len(targets) == len(set(targets)) == spec.target_count == (8 + 3 + 4) * 2
    assert all(shard.target_count <= 6 for shard in shards)
    assert [shard.index for shard in shards] == list(range(len(shards)))
    assert count_shards(spec, 6) == len(shards) == 5
    assert targets[:3] == [
        Target("10.0.0.0", 443, None, 4),
        Target("10.0.0.0", 8443, None, 4),
        Target("10.0.0.1", 443, None, 4),
    ]
    assert targets[-1] == Target("2001:db8::3", 8443, None, 6)


def test_a_shard_packs_pieces_of_several_blocks() -> None:
    spec = parse_target_spec("10.0.0.1, 10.0.0.3, 10.0.0.5-10.0.0.9")
    first = next(split_into_shards(spec, shard_size=4))
    assert [b.describe() for b in first.blocks] == ["10.0.0.1", "10.0.0.3", "10.0.0.5-10.0.0.6"]
    assert first.describe() == "10.0.0.1, 10.0.0.3, 10.0.0.5-10.0.0.6"


def test_host_names_travel_with_their_overrides() -> None:
    spec = parse_target_spec(
        "10.0.0.1, a.example, b.example, c.example",
        "443",
        host_overrides={"b.example": ["10.0.0.20", "10.0.0.21"]},
    )
    shards = list(split_into_shards(spec, shard_size=2))
    assert [s.host_names for s in shards] == [("a.example",), ("b.example", "c.example")]
    assert shards[0].host_overrides == ()
    assert shards[1].host_overrides == (("b.example", ("10.0.0.20", "10.0.0.21")),)
    assert shards[1].describe() == "2 host names"
    assert shards[0].describe() == "10.0.0.1 + 1 host name"
    assert list(iter_targets(shards[1])) == [
        Target("10.0.0.20", 443, "b.example", 4),
        Target("10.0.0.21", 443, "b.example", 4),
    ]
    resolved = {"b.example": ("::1",), "c.example": ("127.0.0.1",)}
    assert list(iter_targets(shards[1], resolved)) == [
        Target("::1", 443, "b.example", 6),
        Target("127.0.0.1", 443, "c.example", 4),
    ]


def test_shard_size_below_the_port_count_still_progresses() -> None:
    spec = parse_target_spec("10.0.0.0/30", "1-100")
    shards = list(split_into_shards(spec, shard_size=10))
    assert len(shards) == 4 == count_shards(spec, 10)
    assert all(shard.address_count == 1 and shard.target_count == 100 for shard in shards)
    with pytest.raises(ValueError, match="shard_size"):
        next(split_into_shards(spec, 0))


def test_shard_round_trips_through_json() -> None:
    spec = parse_target_spec("10.0.0.0/24, 2001:db8::/120, x.example", "443,8000-8010",
                             host_overrides={"x.example": ["10.1.1.1"]})  # fmt: skip
    for shard in split_into_shards(spec, 300):
        again = Shard.from_dict(json.loads(json.dumps(shard.to_dict())))
        assert again == shard
        assert list(iter_targets(again)) == list(iter_targets(shard))
    with pytest.raises(TargetSpecError, match="not a serialised shard"):
        Shard.from_dict({"index": 1, "blocks": [[9, 1, 4]], "ports": [[443, 443]]})


def test_a_slash_8_is_split_and_walked_lazily() -> None:
    spec = parse_target_spec("10.0.0.0/8", max_addresses=1 << 24)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        shards = split_into_shards(spec, shard_size=4096)
        first_three = list(itertools.islice(shards, 3))
        first_ten = list(itertools.islice(iter_targets(first_three[0]), 10))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.05
    assert peak < 200_000  # bytes: nothing proportional to 16.7M addresses exists
    assert first_three[2].blocks == (AddressBlock(0x0A002000, 0x0A002FFF, 4),)
    assert first_ten[-1] == Target("10.0.0.9", 443, None, 4)
    assert count_shards(spec, 4096) == 4096


def test_a_slash_16_of_targets_streams_without_a_list() -> None:
    spec = parse_target_spec("10.20.0.0/16")
    shard = next(split_into_shards(spec, 1 << 20))
    targets = iter_targets(shard)
    assert not isinstance(targets, list | tuple)
    assert sum(1 for _ in targets) == 65_536


def test_small_tasks_are_cut_in_four_so_several_workers_share_them() -> None:
    assert pick_shard_size(65_536) == 4096  # big tasks: full shards
    assert pick_shard_size(16_384) == 4096
    assert pick_shard_size(1100) == 275  # 1,000 addresses + 100 names: four messages
    spec = parse_target_spec("10.0.0.0-10.0.4.75", "443")
    assert count_shards(spec, pick_shard_size(spec.target_count)) == 4
    assert pick_shard_size(600) == 256  # never below 256 targets a shard
    assert pick_shard_size(5) == 256  # a handful of endpoints stays one message
    assert pick_shard_size(1100, largest=100) == 100
