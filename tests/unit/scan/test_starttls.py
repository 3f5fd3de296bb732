"""STARTTLS and friends: real servers on 127.0.11.x speak each upgrade, then TLS with a real
certificate; the sweep (and the one-endpoint probe) must come back with that certificate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.scan.errors import TargetSpecError
from app.scan.probe import ErrorKind, ProbeResult, probe
from app.scan.shards import split_into_shards
from app.scan.starttls import (
    ANY_PORT,
    DEFAULT_PORTS,
    Dialogue,
    Protocol,
    UpgradeFailed,
    parse_protocol_overrides,
    protocol_map,
)
from app.scan.sweep import SweepBatch, SweepOptions, sweep_shard
from app.scan.targets import parse_target_spec
from tests.tlsbed.certs import Issued, Pki, issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

UPGRADED = ["smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "postgres", "rdp"]
HOSTS = {name: f"127.0.11.{i}" for i, name in enumerate(UPGRADED, start=1)}
REFUSING = {name: f"127.0.11.{i}" for i, name in enumerate(UPGRADED, start=21)}
SILENT_SMTP = "127.0.11.40"


@dataclass
class Bed:
    port: int
    leaves: dict[str, Issued]


@pytest.fixture(scope="module")
def bed(pki: Pki) -> Iterator[Bed]:
    hosts = [*HOSTS.values(), *REFUSING.values(), SILENT_SMTP]
    port = free_port(hosts)
    leaves = {
        name: issue(
            make_name(f"{name}.test", "Example Corp"),
            issuer=pki.intermediate,
            sans=[f"{name}.test"],
        )
        for name in UPGRADED
    }
    with ServerFarm() as farm:
        for name, host in HOSTS.items():
            farm.add_starttls(host, port, name, server_context([leaves[name], pki.intermediate]))
        for name, host in REFUSING.items():
            context = server_context([leaves[name], pki.intermediate])
            farm.add_starttls(host, port, name, context, refuse=True)
        farm.add_silent(SILENT_SMTP, port)
        yield Bed(port, leaves)


def sweep(hosts: list[str], port: int, protocols: dict[str, str]) -> dict[str, ProbeResult]:
    """One sweep per protocol (each maps the shared test port to its protocol)."""
    found: dict[str, ProbeResult] = {}
    for host in hosts:
        protocol = protocols[host]
        spec = parse_target_spec(host, str(port))
        (shard,) = split_into_shards(spec)
        options = SweepOptions(
            connect_timeout=2, handshake_timeout=2, protocols=((port, protocol),)
        )
        batches: list[SweepBatch] = []
        asyncio.run(sweep_shard(shard, options, on_batch=batches.append))
        (result,) = [r for b in batches for r in b.results]
        found[host] = result
    return found


def test_every_upgrade_yields_the_servers_certificate(bed: Bed) -> None:
    results = sweep(list(HOSTS.values()), bed.port, {h: n for n, h in HOSTS.items()})
    for name, host in HOSTS.items():
        result = results[host]
        assert result.error is None, (name, result.error, result.detail)
        assert result.protocol == name
        assert result.leaf == bed.leaves[name].der, name
        assert len(result.chain) == 2
        assert result.tls_version in ("TLSv1.2", "TLSv1.3")


def test_a_refused_upgrade_is_recorded_with_the_reason(bed: Bed) -> None:
    results = sweep(list(REFUSING.values()), bed.port, {h: n for n, h in REFUSING.items()})
    details = {name: results[host].detail for name, host in REFUSING.items()}
    for name, host in REFUSING.items():
        assert results[host].error is ErrorKind.STARTTLS_FAILURE, (name, results[host])
        assert results[host].protocol == name
        assert results[host].chain == ()
    assert details == {
        "smtp": "does not offer STARTTLS",
        "imap": "STARTTLS: A1 BAD STARTTLS unavailable",
        "pop3": "STLS: -ERR no TLS here",
        "ftp": "AUTH TLS: 530 Please login first",
        "ldap": "StartTLS refused (LDAP resultCode 2)",
        "xmpp": "does not offer STARTTLS",
        "postgres": "server does not accept SSL connections",
        "rdp": "RDP negotiation failure (code 2)",
    }


def test_a_server_that_never_greets_times_out_naming_the_upgrade(bed: Bed) -> None:
    result = sweep([SILENT_SMTP], bed.port, {SILENT_SMTP: "smtp"})[SILENT_SMTP]
    assert result.error is ErrorKind.HANDSHAKE_TIMEOUT
    assert result.detail == "no answer during the smtp upgrade"
    assert 1.5 < result.elapsed < 4


def test_a_tls_server_scanned_as_tls_still_works_next_to_upgrades(bed: Bed, pki: Pki) -> None:
    # The implicit-TLS protocols are a direct handshake: an upgrade server is not TLS.
    result = sweep([HOSTS["smtp"]], bed.port, {HOSTS["smtp"]: "smtps"})[HOSTS["smtp"]]
    assert result.protocol == "smtps"
    assert result.error is ErrorKind.NOT_TLS


@pytest.mark.parametrize("name", ["smtp", "ldap", "rdp", "xmpp"])
def test_the_one_endpoint_probe_speaks_the_upgrade_too(bed: Bed, name: str) -> None:
    result = asyncio.run(probe(HOSTS[name], bed.port, protocol=name, handshake_timeout=3))
    assert result.error is None, result
    assert result.leaf == bed.leaves[name].der
    assert result.protocol == name
    refused = asyncio.run(probe(REFUSING[name], bed.port, protocol=name, handshake_timeout=3))
    assert refused.error is ErrorKind.STARTTLS_FAILURE


def test_the_port_chooses_the_protocol_unless_overridden() -> None:
    default = protocol_map()
    assert [default(p) for p in (25, 587, 465, 143, 993, 110, 995, 389, 636, 21, 990)] == [
        "smtp",
        "smtp",
        "smtps",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "ldap",
        "ldaps",
        "ftp",
        "ftps",
    ]
    assert (default(5222), default(5432), default(3389), default(443)) == (
        "xmpp",
        "postgres",
        "rdp",
        "tls",
    )
    overrides = parse_protocol_overrides("2525 = smtp\n 25=tls, *=rdp")
    assert overrides == ((ANY_PORT, "rdp"), (25, "tls"), (2525, "smtp"))
    chosen = protocol_map(overrides)
    assert (chosen(2525), chosen(25), chosen(443)) == ("smtp", "tls", "rdp")
    assert set(DEFAULT_PORTS) >= {
        25,
        587,
        465,
        143,
        993,
        110,
        995,
        389,
        636,
        21,
        990,
        5222,
        5432,
        3389,
    }


def test_bad_overrides_are_named() -> None:
    with pytest.raises(TargetSpecError) as info:
        parse_protocol_overrides("25 = smtpx\nabc = smtp\n70000=tls\n25 smtp")
    assert info.value.messages[0].startswith(
        "protocols line 1: unknown protocol 'smtpx' (one of tls, smtp"
    )
    assert info.value.messages[1:] == (
        "protocols line 2: 'abc' is not a port (1-65535 or *)",
        "protocols line 3: '70000' is not a port (1-65535 or *)",
        "protocols line 4: expected 'port = protocol', got '25 smtp'",
    )


def test_a_dialogue_never_buffers_unbounded_input() -> None:
    dialogue = Dialogue(Protocol.SMTP, "x")
    with pytest.raises(UpgradeFailed, match="more than 16384 bytes"):
        for _ in range(20):
            dialogue.receive(b"x" * 1000)  # a greeting line that never ends
    early = Dialogue(Protocol.POSTGRES, "x")
    assert early.take_outgoing() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    with pytest.raises(UpgradeFailed, match="sent data when the TLS handshake should start"):
        early.receive(b"S\x16\x03")
    with pytest.raises(UpgradeFailed, match="closed the connection"):
        Dialogue(Protocol.IMAP, "x").receive(b"")


def test_results_without_a_connection_still_name_the_ports_protocol() -> None:
    host = "127.0.11.50"
    port = free_port([host])  # nothing listens: refused
    spec = parse_target_spec(f"{host}\nnowhere.invalid", str(port))
    (shard,) = split_into_shards(spec)
    options = SweepOptions(report_closed=True, resolve_timeout=2, protocols=((port, "imap"),))
    batches: list[SweepBatch] = []

    async def nothing(name: str) -> list[str]:
        return []

    asyncio.run(sweep_shard(shard, options, on_batch=batches.append, lookup=nothing))
    found = {(r.ip, r.error, r.protocol) for b in batches for r in b.results}
    assert found == {(host, ErrorKind.REFUSED, "imap"), ("", ErrorKind.UNRESOLVED, "imap")}
