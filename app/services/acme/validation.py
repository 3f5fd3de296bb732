"""Challenge validation from the worker (RFC 8555 §8.3): resolve the identifier, refuse
denied addresses (the discovery deny list: DEFAULT_DENY plus CW_SCAN_DENY), fetch the key
authorization over HTTP from each address with a per-attempt timeout.

Runs on dramatiq workers (app.actors.acme), never in a web request.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass

import dns.exception
import dns.resolver
from flask import current_app

from app.acme import challenges
from app.scan import addresses
from app.services.discovery import tasks as discovery_tasks

# Seconds for one attempt: the name lookup, then connect + response per address.
LOOKUP_TIMEOUT = 5.0
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True)
class Outcome:
    """A validation's verdict: ``kind`` is an RFC 8555 error type when it failed."""

    ok: bool
    kind: str = ""
    detail: str = ""


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _resolver_address() -> tuple[str, int] | None:
    text = str(current_app.config["CW_ACME_RESOLVER"]).strip()
    if not text:
        return None
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    return (host or text, int(port) if port else 53)


def resolve(name: str) -> list[IpAddress]:
    """The name's addresses, from CW_ACME_RESOLVER when set, else the system resolver.

    Raises:
        LookupError: no address (the message says why).
    """
    server = _resolver_address()
    found: list[IpAddress] = []
    if server is None:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise LookupError(f"no address for {name}: {exc.strerror}") from exc
        found = [ipaddress.ip_address(info[4][0]) for info in infos]
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
        resolver.lifetime = LOOKUP_TIMEOUT
        for rdtype in ("A", "AAAA"):
            try:
                answer = resolver.resolve(name, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise LookupError(f"DNS lookup of {name} {rdtype} failed: {exc}") from exc
            found.extend(ipaddress.ip_address(r.address) for r in answer)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise LookupError(f"no A or AAAA record for {name}")
    return unique


def _fetch(ip: IpAddress, port: int, host: str, token: str) -> bytes:
    conn = http.client.HTTPConnection(str(ip), port, timeout=FETCH_TIMEOUT)
    try:
        conn.request(
            "GET",
            challenges.HTTP01_PATH + token,
            headers={
                "Host": host if port == 80 else f"{host}:{port}",
                "User-Agent": "Certwright-ACME-VA",
            },
        )
        response = conn.getresponse()
        body = response.read(challenges.MAX_HTTP01_BODY + 1)
        if response.status != 200:
            raise ValueError(f"answered HTTP {response.status}")
        if len(body) > challenges.MAX_HTTP01_BODY:
            raise ValueError(f"answered more than {challenges.MAX_HTTP01_BODY} bytes")
        return body
    finally:
        conn.close()


def validate_http01(*, name: str, token: str, key_authorization: str) -> Outcome:
    """§8.3: the first address of ``name`` that answers must serve the key authorization
    at http://<name>:<CW_ACME_HTTP01_PORT>/.well-known/acme-challenge/<token> (addresses
    that refuse or time out are skipped); redirects are not followed. A denied address
    fails the validation before any connection."""
    port = int(current_app.config["CW_ACME_HTTP01_PORT"])
    try:
        ips = resolve(name)
    except LookupError as exc:
        return Outcome(False, "dns", str(exc))
    deny = discovery_tasks.deny_list()
    for ip in ips:
        hit = addresses.find_denied(addresses.parse_block(str(ip)), deny)
        if hit is not None:
            return Outcome(
                False,
                "rejectedIdentifier",
                f"{name} resolves to {ip}, which validation may not connect to {hit.label}",
            )
    failures = []
    for ip in ips:
        try:
            body = _fetch(ip, port, name, token)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{ip}:{port}: {exc}")
            continue
        if challenges.http01_matches(body, key_authorization):
            return Outcome(True, detail=f"{ip}:{port} served the key authorization")
        return Outcome(
            False,
            "incorrectResponse",
            f"{ip}:{port} served {body[:80]!r}, not the key authorization",
        )
    return Outcome(False, "connection", "; ".join(failures))
