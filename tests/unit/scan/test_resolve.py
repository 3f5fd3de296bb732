"""Host-name resolution: overrides win, every address kept, deny list applied, failures kept."""

from __future__ import annotations

import asyncio
import socket

from app.scan.resolve import Resolution, lookup_addresses, resolve_host_names, screen_addresses


def fake_dns(table: dict[str, list[str]], calls: list[str]):  # type: ignore[no-untyped-def]
    async def lookup(name: str) -> list[str]:
        calls.append(name)
        if name == "slow.example":
            await asyncio.sleep(10)
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[name]

    return lookup


def test_every_address_is_kept_and_overrides_win() -> None:
    calls: list[str] = []
    table = {
        "dual.example": ["127.0.0.5", "::1", "127.0.0.5"],
        "split.example": ["127.0.0.99"],
    }
    result = asyncio.run(
        resolve_host_names(
            ["dual.example", "split.example", "dual.example"],
            overrides={"split.example": ["127.0.0.7"]},
            lookup=fake_dns(table, calls),
        )
    )
    assert result == {
        "dual.example": Resolution("dual.example", ("127.0.0.5", "::1")),
        "split.example": Resolution("split.example", ("127.0.0.7",)),
    }
    assert calls == ["dual.example"]  # the override never reached DNS


def test_denied_addresses_are_kept_apart() -> None:
    calls: list[str] = []
    table = {"meta.example": ["169.254.169.254"], "mixed.example": ["fe80::1", "127.0.0.8"]}
    result = asyncio.run(
        resolve_host_names(["meta.example", "mixed.example"], lookup=fake_dns(table, calls))
    )
    assert result["meta.example"] == Resolution(
        "meta.example", (), ("169.254.169.254",), "only denied addresses"
    )
    assert result["mixed.example"] == Resolution("mixed.example", ("127.0.0.8",), ("fe80::1",))


def test_failures_and_timeouts_become_errors() -> None:
    calls: list[str] = []
    result = asyncio.run(
        resolve_host_names(
            ["gone.example", "slow.example"], lookup=fake_dns({}, calls), timeout=0.05
        )
    )
    assert result["gone.example"].addresses == ()
    assert result["gone.example"].error == "DNS lookup failed: [Errno -2] Name or service not known"
    assert result["slow.example"].error == "DNS lookup timed out"


def test_screen_addresses_normalises_and_drops_junk() -> None:
    assert screen_addresses("x", ["0:0::1", "::1", "junk", "127.000.0.1"], ()) == Resolution(
        "x", ("::1",), (), None
    )
    assert screen_addresses("x", [], ()).error == "no address"


def test_system_resolver_answers_localhost_from_the_hosts_file() -> None:
    addresses = asyncio.run(lookup_addresses("localhost"))
    assert "127.0.0.1" in addresses
    assert all(a in ("127.0.0.1", "::1") for a in addresses)
