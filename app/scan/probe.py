"""TLS probe of one endpoint -> ProbeResult, plus the pieces the sweep engine shares.

We collect, we do not trust: certificate verification is off, the whole presented chain is
kept (leaf first), SNI is sent only for host-name targets, no ALPN is offered. The client
context accepts TLS 1.0-1.3 where the local OpenSSL permits (minimum_version at the lowest,
``@SECLEVEL=0`` ciphers, legacy renegotiation allowed) so legacy servers are still recorded
and flagged. Nothing a server presents (AIA, CRL, OCSP URLs) is ever fetched.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import socket
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.scan import settings
from app.scan.starttls import Dialogue, Protocol, UpgradeFailed

# OpenSSL 3 refuses servers without RFC 5746 secure renegotiation unless this is set;
# Python exposes the name only from 3.12.
_OP_LEGACY_SERVER_CONNECT = 0x4
_ENCODING_DER = 2  # _ssl.ENCODING_DER


class ErrorKind(StrEnum):
    """Why a probe produced no certificate chain."""

    REFUSED = "refused"  # TCP RST to our SYN: nothing listens
    TIMEOUT = "timeout"  # TCP connect did not complete in time (filtered / host down)
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # connected, but the TLS handshake stalled
    NOT_TLS = "not_tls"  # peer answered with non-TLS bytes or closed without a handshake
    HANDSHAKE_FAILURE = "handshake_failure"  # TLS alert / no common version or cipher
    UNREACHABLE = "unreachable"  # no route, host unreachable, local address trouble
    RESET = "reset"  # TCP RST after the connection was established
    UNRESOLVED = "unresolved"  # host name without any address
    DENIED = "denied"  # host name resolved only to deny-listed addresses
    STARTTLS_FAILURE = "starttls_failure"  # connected, but the service refused the TLS upgrade


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one (ip, port, host name) showed: TLS parameters and chain, or an error kind."""

    ip: str
    port: int
    host_name: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    chain: tuple[bytes, ...] = ()
    error: ErrorKind | None = None
    detail: str | None = None
    elapsed: float = 0.0
    protocol: str = "tls"  # app.scan.starttls.Protocol value the port was scanned as

    @property
    def is_tls(self) -> bool:
        return self.error is None

    @property
    def leaf(self) -> bytes | None:
        return self.chain[0] if self.chain else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; the chain is a list of base64 DER strings, leaf first."""
        return {
            "ip": self.ip,
            "port": self.port,
            "host_name": self.host_name,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "chain": [base64.b64encode(der).decode("ascii") for der in self.chain],
            "error": None if self.error is None else self.error.value,
            "detail": self.detail,
            "elapsed": round(self.elapsed, 6),
            "protocol": self.protocol,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        error = data.get("error")
        return cls(
            ip=str(data["ip"]),
            port=int(data["port"]),
            host_name=data.get("host_name"),
            tls_version=data.get("tls_version"),
            cipher=data.get("cipher"),
            chain=tuple(base64.b64decode(item) for item in data.get("chain", ())),
            error=None if error is None else ErrorKind(error),
            detail=data.get("detail"),
            elapsed=float(data.get("elapsed", 0.0)),
            protocol=str(data.get("protocol") or "tls"),
        )


def make_client_context() -> ssl.SSLContext:
    """The collecting client context: no verification, TLS 1.0-1.3, every cipher, no ALPN.

    Build it once per sweep and share it; contexts are expensive and thread-safe to use.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; recording servers that still speak them is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.options |= _OP_LEGACY_SERVER_CONNECT | ssl.OP_NO_TICKET
    return context


_REFUSED = {errno.ECONNREFUSED}
_TIMEOUT = {errno.ETIMEDOUT}
_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}

# OpenSSL reasons meaning "the bytes we got are not a TLS record" (plain HTTP, SSH banners...).
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "RECORD_LAYER_FAILURE",
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "UNEXPECTED_EOF_WHILE_READING",
    "UNEXPECTED_RECORD",
    "BAD_RECORD_TYPE",
    "RECORD_LENGTH_MISMATCH",
}


def classify_errno(number: int | None) -> ErrorKind:
    """ErrorKind for a failed TCP connect (or an OSError during the handshake)."""
    if number in _REFUSED:
        return ErrorKind.REFUSED
    if number in _TIMEOUT:
        return ErrorKind.TIMEOUT
    if number in _RESET:
        return ErrorKind.RESET
    return ErrorKind.UNREACHABLE


def classify_handshake_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """ErrorKind and a short detail for an exception raised by ``do_handshake``."""
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return ErrorKind.NOT_TLS, "closed without a TLS handshake"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or type(exc).__name__)
        if reason in _NOT_TLS_REASONS:
            return ErrorKind.NOT_TLS, reason.lower()
        return ErrorKind.HANDSHAKE_FAILURE, reason.lower()
    if isinstance(exc, OSError):
        kind = classify_errno(exc.errno)
        if kind is ErrorKind.REFUSED:
            kind = ErrorKind.RESET
        return kind, exc.strerror or type(exc).__name__
    return ErrorKind.HANDSHAKE_FAILURE, type(exc).__name__


def sni_problem(host_name: str | None) -> str | None:
    """Why ``host_name`` cannot be sent as SNI, or None.

    Checked before ``wrap_socket``: Python encodes the name only after taking over the
    socket, so a failure there would orphan the descriptor.
    """
    if host_name is None:
        return None
    try:
        host_name.encode("idna")
    except UnicodeError as exc:
        return f"cannot send this host name as SNI: {exc}"
    return None


def presented_chain(tls: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The certificates the server sent, DER, leaf first, unverified.

    Python 3.13 made ``get_unverified_chain()`` public (returning DER bytes); 3.11 and 3.12
    only have it on the private ``_sslobj`` (returning ``_ssl.Certificate`` objects).
    """
    public = getattr(tls, "get_unverified_chain", None)
    items: Any = public() if public is not None else None
    if items is None:
        private = getattr(tls, "_sslobj", None)
        items = private.get_unverified_chain() if private is not None else None
    chain = tuple(
        item if isinstance(item, bytes) else bytes(item.public_bytes(_ENCODING_DER))
        for item in items or ()
    )
    if not chain:
        try:
            leaf = tls.getpeercert(binary_form=True)
        except ValueError:  # handshake not finished
            leaf = None
        chain = (leaf,) if leaf else ()
    return chain


def tls_result(
    tls: ssl.SSLSocket,
    ip: str,
    port: int,
    host_name: str | None,
    elapsed: float,
    protocol: str = "tls",
) -> ProbeResult:
    """ProbeResult of a completed handshake."""
    cipher = tls.cipher()
    return ProbeResult(
        ip=ip,
        port=port,
        host_name=host_name,
        tls_version=tls.version(),
        cipher=cipher[0] if cipher else None,
        chain=presented_chain(tls),
        elapsed=elapsed,
        protocol=protocol,
    )


def failed_tls_result(
    tls: ssl.SSLSocket,
    exc: BaseException,
    ip: str,
    port: int,
    host_name: str | None,
    elapsed: float,
    protocol: str = "tls",
) -> ProbeResult:
    """ProbeResult of a failed handshake, keeping any chain the server sent first.

    A TLS 1.2 server that demands a client certificate sends its own chain and then hangs
    up or alerts; the chain is still worth recording, and the peer clearly speaks TLS, so
    such a failure is ``handshake_failure`` rather than ``not_tls``/``reset``.
    """
    kind, detail = classify_handshake_error(exc)
    chain = presented_chain(tls)
    cipher = tls.cipher() if chain else None
    if chain and kind in (ErrorKind.NOT_TLS, ErrorKind.RESET):
        ending = "closed" if kind is ErrorKind.NOT_TLS else "reset"
        kind, detail = ErrorKind.HANDSHAKE_FAILURE, f"{ending} after sending its certificate"
    return ProbeResult(
        ip=ip,
        port=port,
        host_name=host_name,
        tls_version=cipher[1] if cipher else None,
        cipher=cipher[0] if cipher else None,
        chain=chain,
        error=kind,
        detail=detail,
        elapsed=elapsed,
        protocol=protocol,
    )


def sockaddr_for(ip: str, port: int) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]]:
    """Address family and sockaddr for a literal IPv4/IPv6 address."""
    if ":" in ip:
        return socket.AF_INET6, (ip, port, 0, 0)
    return socket.AF_INET, (ip, port)


async def _wait_io(loop: asyncio.AbstractEventLoop, fd: int, write: bool, timeout: float) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout=max(timeout, 0.0))
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def probe(
    ip: str,
    port: int,
    host_name: str | None = None,
    *,
    connect_timeout: float = settings.CONNECT_TIMEOUT,
    handshake_timeout: float = settings.HANDSHAKE_TIMEOUT,
    context: ssl.SSLContext | None = None,
    protocol: str = Protocol.TLS,
) -> ProbeResult:
    """Connect to ``ip:port`` and run a TLS handshake (SNI = ``host_name`` when given),
    after the plaintext upgrade of ``protocol`` (app.scan.starttls) if it has one.

    Never raises for network trouble: the result's ``error`` says what happened. Use
    app.scan.sweep for many targets; this is the one-endpoint path ("re-check now").
    The handshake timeout covers the upgrade conversation and the TLS handshake.
    """
    protocol = Protocol(protocol)
    loop = asyncio.get_running_loop()
    context = context or make_client_context()
    family, sockaddr = sockaddr_for(ip, port)
    started = loop.time()

    def failed(kind: ErrorKind, detail: str | None = None) -> ProbeResult:
        elapsed = loop.time() - started
        return ProbeResult(
            ip, port, host_name, error=kind, detail=detail, elapsed=elapsed, protocol=protocol
        )

    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout=connect_timeout)
        except TimeoutError:
            return failed(ErrorKind.TIMEOUT)
        except OSError as exc:
            return failed(classify_errno(exc.errno), os.strerror(exc.errno or 0))
        deadline = loop.time() + handshake_timeout
        if Dialogue.needed(protocol):
            try:
                await asyncio.wait_for(
                    _converse(loop, sock, Dialogue(protocol, host_name or ip)),
                    timeout=handshake_timeout,
                )
            except TimeoutError:
                return failed(
                    ErrorKind.HANDSHAKE_TIMEOUT, f"no answer during the {protocol} upgrade"
                )
            except UpgradeFailed as exc:
                return failed(ErrorKind.STARTTLS_FAILURE, str(exc))
            except OSError as exc:
                kind = classify_errno(exc.errno)
                return failed(ErrorKind.RESET if kind is ErrorKind.REFUSED else kind, exc.strerror)
        problem = sni_problem(host_name)
        if problem is not None:
            return failed(ErrorKind.HANDSHAKE_FAILURE, problem)
        with context.wrap_socket(
            sock, server_hostname=host_name, do_handshake_on_connect=False
        ) as tls:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
                except (ssl.SSLError, OSError) as exc:
                    elapsed = loop.time() - started
                    return failed_tls_result(tls, exc, ip, port, host_name, elapsed, protocol)
                try:
                    await _wait_io(loop, tls.fileno(), want_write, deadline - loop.time())
                except TimeoutError:
                    return failed(ErrorKind.HANDSHAKE_TIMEOUT)
            return tls_result(tls, ip, port, host_name, loop.time() - started, protocol)


async def _converse(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, dialogue: Dialogue
) -> None:
    """Run an upgrade conversation on a connected non-blocking socket."""
    while True:
        outgoing = dialogue.take_outgoing()
        if outgoing:
            await loop.sock_sendall(sock, outgoing)
        if dialogue.done:
            return
        dialogue.receive(await loop.sock_recv(sock, 4096))
