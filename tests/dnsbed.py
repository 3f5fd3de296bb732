"""A real authoritative-style DNS server on 127.0.0.1 for tests (UDP, dnspython): it
answers A and AAAA queries from a dict, TXT and CAA queries from ``txt`` and ``caa``
(changeable while it runs) and NXDOMAIN otherwise, so ACME validation can resolve test names to loopback and
read dns-01 records through CW_ACME_RESOLVER."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.txt: dict[str, list[str]] = {}
        # CAA records as zone-file text ('0 issue "pki.example"'), by name.
        self.caa: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if rdtype == "TXT" and name in self.txt:
            values = [f'"{v}"' for v in self.txt[name]]
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *values))
            return response.to_wire()
        if rdtype == "CAA" and name in self.caa:
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", "CAA", *self.caa[name])
            )
            return response.to_wire()
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        wanted = [a for a in self.records[name] if (":" in a) == (rdtype == "AAAA")]
        if rdtype in ("A", "AAAA") and wanted:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *wanted))
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(self._answer(data), peer)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@contextmanager
def dns_server(records: dict[str, list[str]]) -> Iterator[DnsServer]:
    server = DnsServer(records).start()
    try:
        yield server
    finally:
        server.stop()
