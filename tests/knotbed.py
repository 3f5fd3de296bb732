"""Debian's Knot DNS (knotd) as a real authoritative server on 127.0.0.1 for tests: one
zone with A records, dynamic updates (RFC 2136) allowed from 127.0.0.1 so that an ACME
client (lego's rfc2136 provider) publishes its dns-01 TXT records, and ACME validation
reads them through CW_ACME_RESOLVER."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.processes import Proc, free_port, wait_until

# knotd lives in /usr/sbin, which a non-root PATH may not hold.
KNOTD = shutil.which("knotd", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")

CONFIG = """server:
    listen: 127.0.0.1@{port}
    rundir: {dir}/run
control:
    listen: {dir}/run/knot.sock
database:
    storage: {dir}/db
log:
  - target: stderr
    any: info
acl:
  - id: local_update
    address: 127.0.0.1
    action: update
template:
  - id: default
    storage: {dir}/zones
    zonefile-sync: -1
    journal-content: changes
    semantic-checks: on
zone:
  - domain: {zone}
    acl: local_update
"""


@dataclass
class Knot:
    zone: str
    port: int
    proc: Proc

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def txt(self, name: str) -> list[str]:
        """The TXT strings at ``name`` as knot answers them now."""
        query = dns.message.make_query(name, "TXT")
        answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=2)
        return [
            b"".join(r.strings).decode()
            for rrset in answer.answer
            for r in rrset
            if hasattr(r, "strings")
        ]


def _answers(port: int, zone: str) -> bool:
    try:
        reply = dns.query.udp(
            dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=1
        )
    except (dns.exception.DNSException, OSError):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


@contextmanager
def knot_server(tmp: Path, zone: str, records: dict[str, str]) -> Iterator[Knot]:
    """knotd serving ``zone`` with A ``records`` (relative name -> address)."""
    assert KNOTD is not None
    home = tmp / "knot"
    for sub in ("run", "db", "zones"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    # free_port() is a free TCP port; knot also needs it on UDP.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 60",
        "@ SOA ns hostmaster 1 3600 600 86400 60",
        "@ NS ns",
        "ns A 127.0.0.1",
        *(f"{name} A {address}" for name, address in records.items()),
    ]
    (home / "zones" / f"{zone}.zone").write_text("\n".join(lines) + "\n")
    conf = home / "knot.conf"
    conf.write_text(CONFIG.format(port=port, dir=home, zone=zone))
    check = subprocess.run(
        [KNOTD, "--config", str(conf), "--version"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with Proc("knotd", [KNOTD, "--config", str(conf)], env=dict(os.environ), logs=tmp) as proc:
        wait_until(lambda: _answers(port, zone), timeout=20, what="knotd", why=proc.log)
        yield Knot(zone, port, proc)
