"""Challenge validation from the worker (RFC 8555 §8): resolve the identifier, refuse
denied addresses (the discovery deny list: DEFAULT_DENY plus CW_SCAN_DENY), then per
address with a per-attempt timeout: fetch the key authorization over HTTP (http-01) or
look at the certificate a TLS server presents for ALPN acme-tls/1 (tls-alpn-01, RFC 8737);
or ask the resolver for the TXT records at _acme-challenge.<name> (dns-01, §8.4).

Runs on dramatiq workers (app.actors.acme), never in a web request.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.resolver
from flask import current_app

from app.acme import caa, challenges
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


def _resolver() -> dns.resolver.Resolver:
    """CW_ACME_RESOLVER when set, else the system's resolvers (/etc/resolv.conf)."""
    server = _resolver_address()
    if server is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.lifetime = LOOKUP_TIMEOUT
    return resolver


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
        resolver = _resolver()
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


def _connectable(name: str) -> list[IpAddress] | Outcome:
    """The name's addresses, or the failed Outcome: no address (dns), or one on the deny
    list (rejectedIdentifier, decided before any connection)."""
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
    return ips


def _first_answer(
    name: str, port: int, attempt: Callable[[IpAddress], Outcome], failed: str
) -> Outcome:
    """Try the addresses in turn: the first that answers decides (an OSError, a refused or
    timed-out connection or a failed handshake, moves on); none answering: ``failed``."""
    ips = _connectable(name)
    if isinstance(ips, Outcome):
        return ips
    failures = []
    for ip in ips:
        try:
            return attempt(ip)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{ip}:{port}: {exc}")
    return Outcome(False, failed, "; ".join(failures))


def validate_http01(*, name: str, token: str, key_authorization: str) -> Outcome:
    """§8.3: the first address of ``name`` that answers must serve the key authorization
    at http://<name>:<CW_ACME_HTTP01_PORT>/.well-known/acme-challenge/<token> (addresses
    that refuse or time out are skipped); redirects are not followed. A denied address
    fails the validation before any connection."""
    port = int(current_app.config["CW_ACME_HTTP01_PORT"])

    def attempt(ip: IpAddress) -> Outcome:
        body = _fetch(ip, port, name, token)
        if challenges.http01_matches(body, key_authorization):
            return Outcome(True, detail=f"{ip}:{port} served the key authorization")
        return Outcome(
            False,
            "incorrectResponse",
            f"{ip}:{port} served {body[:80]!r}, not the key authorization",
        )

    return _first_answer(name, port, attempt, "connection")


def _tls_context() -> ssl.SSLContext:
    # The validation certificate is self-signed by design (RFC 8737 §3): nothing to verify
    # but the acmeIdentifier extension and the name, which tls_alpn01_problem checks.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([challenges.TLSALPN01_PROTOCOL])
    return context


def validate_tls_alpn01(*, name: str, token: str, key_authorization: str) -> Outcome:
    """RFC 8737 §3: the first address of ``name`` that completes a TLS handshake on
    CW_ACME_TLSALPN01_PORT, offered only ALPN acme-tls/1 with SNI ``name``, must choose
    acme-tls/1 and present a certificate for exactly ``name`` whose critical acmeIdentifier
    extension holds the key authorization's SHA-256 digest. Denied addresses are refused
    before any connection."""
    port = int(current_app.config["CW_ACME_TLSALPN01_PORT"])
    context = _tls_context()

    def attempt(ip: IpAddress) -> Outcome:
        with socket.create_connection((str(ip), port), timeout=FETCH_TIMEOUT) as raw:
            try:
                tls = context.wrap_socket(raw, server_hostname=name)
            except ssl.SSLError as exc:
                return Outcome(False, "tls", f"{ip}:{port}: TLS handshake failed: {exc}")
            with tls:
                chosen = tls.selected_alpn_protocol()
                der = tls.getpeercert(binary_form=True)
        if chosen != challenges.TLSALPN01_PROTOCOL:
            return Outcome(
                False,
                "tls",
                f"{ip}:{port} did not choose ALPN {challenges.TLSALPN01_PROTOCOL} "
                f"(chose {chosen or 'none'})",
            )
        if der is None:
            return Outcome(False, "tls", f"{ip}:{port} presented no certificate")
        wrong = challenges.tls_alpn01_problem(der, name, key_authorization)
        if wrong is not None:
            return Outcome(False, "incorrectResponse", f"{ip}:{port}: {wrong}")
        return Outcome(True, detail=f"{ip}:{port} presented the acme-tls/1 certificate")

    return _first_answer(name, port, attempt, "connection")


def validate_dns01(*, name: str, token: str, key_authorization: str) -> Outcome:
    """§8.4: one of the TXT records at _acme-challenge.<name>, asked of CW_ACME_RESOLVER
    (else the system resolver; CNAMEs are followed as the resolver follows them), must be
    base64url(SHA-256(key authorization)). A wildcard's authorization names the domain
    without its "*." (§7.1.3), so its record sits at the same place. No connection is made
    to the name's addresses, so the deny list does not apply."""
    del token  # the key authorization holds it
    query = challenges.DNS01_LABEL + name
    expected = challenges.dns01_txt(key_authorization)
    try:
        answer = _resolver().resolve(query, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Outcome(False, "incorrectResponse", f"no TXT record at {query}")
    except dns.exception.DNSException as exc:
        return Outcome(False, "dns", f"DNS lookup of {query} TXT failed: {exc}")
    seen = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    if expected in seen:
        return Outcome(True, detail=f"{query} TXT holds the key authorization's digest")
    shown = ", ".join(repr(v[:64]) for v in seen[:4])
    return Outcome(
        False,
        "incorrectResponse",
        f"{query} TXT holds {shown}, not the key authorization's digest {expected!r}",
    )


CHECKS: dict[str, Callable[..., Outcome]] = {
    challenges.DNS01: validate_dns01,
    challenges.HTTP01: validate_http01,
    challenges.TLSALPN01: validate_tls_alpn01,
}


def check_caa(name: str, *, wildcard: bool, method: str, account_url: str) -> Outcome | None:
    """RFC 8659, when CW_ACME_CAA_IDENTITIES names this CA: the first non-empty CAA record
    set climbing from ``name`` (asked of the same resolver) must allow one of them, for the
    ACME account ``account_url`` validated by ``method`` when the property carries RFC 8657
    parameters (caa.forbids); None when it does (or nothing is configured). A failed lookup
    refuses (§3: a CA must not issue when it cannot tell)."""
    identities = [
        i for i in str(current_app.config["CW_ACME_CAA_IDENTITIES"]).split(",") if i.strip()
    ]
    if not identities:
        return None
    resolver = _resolver()
    records: list[caa.Record] = []
    found_at = ""
    for candidate in caa.climb(name):
        try:
            answer = resolver.resolve(candidate, "CAA")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            return Outcome(False, "dns", f"CAA lookup of {candidate} failed: {exc}")
        records = [
            caa.Record(
                int(r.flags),
                r.tag.decode("ascii", "replace"),
                r.value.decode("ascii", "replace"),
            )
            for r in answer
        ]
        if records:
            found_at = candidate
            break
    why = caa.forbids(
        records,
        identities=identities,
        wildcard=wildcard,
        account_url=account_url,
        method=method,
    )
    if why is None:
        return None
    return Outcome(False, "caa", f"{found_at}: {why}")


def validate(
    *,
    kind: str,
    name: str,
    token: str,
    key_authorization: str,
    account_url: str,
    wildcard: bool = False,
) -> Outcome:
    """The check of a challenge type (CHECKS) for one identifier, then CAA (check_caa) for
    the account ``account_url`` (as its client sees it) and the challenge type ``kind``."""
    check = CHECKS.get(kind)
    if check is None:
        return Outcome(False, "serverInternal", f"no validation for challenge type {kind}")
    outcome = check(name=name, token=token, key_authorization=key_authorization)
    if not outcome.ok:
        return outcome
    refused = check_caa(name, wildcard=wildcard, method=kind, account_url=account_url)
    return outcome if refused is None else refused
