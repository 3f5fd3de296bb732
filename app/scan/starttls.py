"""Services and their TLS upgrades (STARTTLS and friends) as sans-I/O dialogues. Pure.

A port is scanned as a *protocol*: ``tls`` (the TLS handshake starts at once), an implicit
TLS service (``smtps``, ``imaps``, ``pop3s``, ``ldaps``, ``ftps``: also at once, but the
endpoint records what it is), or a service whose plaintext conversation asks for TLS first:

========  =====  ==========================================================================
protocol  port   upgrade
========  =====  ==========================================================================
smtp      25,    220 greeting, ``EHLO``, 250 lines must list STARTTLS, ``STARTTLS``, 220
          587
imap      143    ``* OK`` greeting, ``A1 STARTTLS``, ``A1 OK``
pop3      110    ``+OK`` greeting, ``STLS``, ``+OK``
ldap      389    StartTLS extended operation (OID 1.3.6.1.4.1.1466.20037), resultCode 0
ftp       21     220 greeting, ``AUTH TLS``, 234
xmpp      5222   stream header, features must offer ``<starttls>``, ``<starttls/>``, ``<proceed/>``
postgres  5432   SSLRequest (80877103), ``S``
rdp       3389   X.224 Connection Request with RDP_NEG_REQ (PROTOCOL_SSL | PROTOCOL_HYBRID),
                 Connection Confirm whose RDP_NEG_RSP selects SSL, HYBRID or HYBRID_EX
========  =====  ==========================================================================

The protocol of a port comes from ``DEFAULT_PORTS`` unless a task's overrides say otherwise
(``parse_protocol_overrides``: ``2525 = smtp``, ``* = tls``). A ``Dialogue`` is fed the
bytes the server sent and hands back what to send; the socket code (app.scan.engine for
sweeps, app.scan.probe for one endpoint) moves the bytes. A refusal raises UpgradeFailed
with a short reason, recorded as the endpoint's ``starttls_failure`` detail.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Generator, Mapping
from enum import StrEnum

from app.scan.errors import TargetSpecError


class Protocol(StrEnum):
    TLS = "tls"
    SMTP = "smtp"
    SMTPS = "smtps"
    IMAP = "imap"
    IMAPS = "imaps"
    POP3 = "pop3"
    POP3S = "pop3s"
    LDAP = "ldap"
    LDAPS = "ldaps"
    FTP = "ftp"
    FTPS = "ftps"
    XMPP = "xmpp"
    POSTGRES = "postgres"
    RDP = "rdp"


DEFAULT_PORTS: Mapping[int, Protocol] = {
    21: Protocol.FTP,
    25: Protocol.SMTP,
    110: Protocol.POP3,
    143: Protocol.IMAP,
    389: Protocol.LDAP,
    465: Protocol.SMTPS,
    587: Protocol.SMTP,
    636: Protocol.LDAPS,
    990: Protocol.FTPS,
    993: Protocol.IMAPS,
    995: Protocol.POP3S,
    3389: Protocol.RDP,
    5222: Protocol.XMPP,
    5432: Protocol.POSTGRES,
}

ANY_PORT = 0  # the key of a ``* = protocol`` override: every port not listed
MAX_REPLY = 16_384  # bytes a server may send before the upgrade (a banner is a few hundred)


class UpgradeFailed(Exception):
    """The service did not upgrade to TLS; ``str()`` is the reason shown on the endpoint."""


Overrides = tuple[tuple[int, str], ...]


def parse_protocol_overrides(text: str) -> Overrides:
    """``port = protocol`` entries (lines or commas; ``*`` for every other port).

    Raises:
        TargetSpecError: one message per bad entry, naming the known protocols.
    """
    errors: list[str] = []
    result: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in line.split("#", 1)[0].split(","):
            entry = entry.strip()
            if not entry:
                continue
            port_text, equals, name = (part.strip() for part in entry.partition("="))
            if not equals:
                errors.append(f"protocols line {number}: expected 'port = protocol', got '{entry}'")
                continue
            if port_text == "*":
                port = ANY_PORT
            elif port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535:
                port = int(port_text)
            else:
                errors.append(
                    f"protocols line {number}: '{port_text}' is not a port (1-65535 or *)"
                )
                continue
            try:
                protocol = Protocol(name.lower())
            except ValueError:
                known = ", ".join(p.value for p in Protocol)
                errors.append(
                    f"protocols line {number}: unknown protocol '{name}' (one of {known})"
                )
                continue
            result[port] = protocol.value
    if errors:
        raise TargetSpecError(errors)
    return tuple(sorted(result.items()))


def protocol_map(overrides: Overrides = ()) -> Callable[[int], Protocol]:
    """port -> Protocol: the overrides, then ``*``, then DEFAULT_PORTS, then plain TLS."""
    explicit = {int(port): Protocol(name) for port, name in overrides}
    fallback = explicit.pop(ANY_PORT, None)
    cache: dict[int, Protocol] = {}

    def lookup(port: int) -> Protocol:
        protocol = cache.get(port)
        if protocol is None:
            protocol = explicit.get(port) or fallback or DEFAULT_PORTS.get(port, Protocol.TLS)
            cache[port] = protocol
        return protocol

    return lookup


# --- the dialogue driver --------------------------------------------------------------

Reader = Callable[[bytearray], int]  # bytes of the buffer to take now (0: need more)
Step = bytes | Reader  # bytes to send, or how much of the reply to read next
Script = Generator[Step, bytes | None, None]


class Dialogue:
    """One upgrade conversation, sans I/O.

    After construction and after every ``receive``, send ``take_outgoing()``; when ``done``
    the TLS handshake starts on the same connection. Raises UpgradeFailed on refusal.
    """

    def __init__(self, protocol: Protocol, server_name: str) -> None:
        script = _SCRIPTS.get(protocol)
        if script is None:
            raise ValueError(f"{protocol} has no plaintext upgrade")
        self._script = script(server_name)
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._reader: Reader | None = None
        self.done = False
        self._advance(None)

    @staticmethod
    def needed(protocol: Protocol) -> bool:
        return protocol in _SCRIPTS

    def take_outgoing(self) -> bytes:
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def receive(self, data: bytes) -> None:
        if not data:
            raise UpgradeFailed("closed the connection before the TLS upgrade")
        if self.done:
            raise UpgradeFailed("sent data when the TLS handshake should start")
        self._buffer += data
        if len(self._buffer) > MAX_REPLY:
            raise UpgradeFailed(f"sent more than {MAX_REPLY} bytes without upgrading")
        self._advance(None)

    def _advance(self, value: bytes | None) -> None:
        while True:
            if self._reader is not None:
                count = self._reader(self._buffer)
                if not count:
                    return
                value = bytes(self._buffer[:count])
                del self._buffer[:count]
                self._reader = None
            try:
                step = self._script.send(value)
            except StopIteration:
                self.done = True
                if self._buffer:
                    raise UpgradeFailed("sent data when the TLS handshake should start") from None
                return
            value = None
            if isinstance(step, bytes):
                self._outgoing += step
            else:
                self._reader = step


def _line(buffer: bytearray) -> int:
    return buffer.find(b"\n") + 1


def _exactly(count: int) -> Reader:
    return lambda buffer: count if len(buffer) >= count else 0


def _until(*markers: bytes) -> Reader:
    """Everything up to the ``>`` closing the first of ``markers`` (XMPP elements)."""

    def read(buffer: bytearray) -> int:
        found = [i for i in (buffer.find(m) for m in markers) if i >= 0]
        if not found:
            return 0
        end = buffer.find(b">", min(found))
        return end + 1 if end >= 0 else 0

    return read


def _printable(data: bytes, limit: int = 80) -> str:
    text = data.decode("ascii", "replace").strip()
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def _numeric_reply(expected: int, what: str) -> Generator[Step, bytes | None, bytes]:
    """An SMTP/FTP style reply (``250-...`` lines then ``250 ...``) that must be ``expected``."""
    lines: list[bytes] = []
    while True:
        line = yield _line
        assert line is not None
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    code = lines[-1][:3]
    if not code.isdigit():
        raise UpgradeFailed(f"{what}: not a {expected} reply ('{_printable(lines[-1])}')")
    if int(code) != expected:
        raise UpgradeFailed(f"{what}: {_printable(lines[-1])}")
    return b"".join(lines)


def _smtp(_: str) -> Script:
    yield from _numeric_reply(220, "greeting")
    yield b"EHLO certwright.invalid\r\n"
    capabilities = yield from _numeric_reply(250, "EHLO")
    if not re.search(rb"^250[- ]STARTTLS\b", capabilities, re.MULTILINE | re.IGNORECASE):
        raise UpgradeFailed("does not offer STARTTLS")
    yield b"STARTTLS\r\n"
    yield from _numeric_reply(220, "STARTTLS")


def _ftp(_: str) -> Script:
    yield from _numeric_reply(220, "greeting")
    yield b"AUTH TLS\r\n"
    yield from _numeric_reply(234, "AUTH TLS")


def _imap(_: str) -> Script:
    greeting = yield _line
    assert greeting is not None
    if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
        raise UpgradeFailed(f"greeting: {_printable(greeting)}")
    yield b"A1 STARTTLS\r\n"
    while True:
        line = yield _line
        assert line is not None
        if line.startswith(b"A1 "):
            if line[3:5].upper() != b"OK":
                raise UpgradeFailed(f"STARTTLS: {_printable(line)}")
            return


def _pop3(_: str) -> Script:
    greeting = yield _line
    assert greeting is not None
    if not greeting.startswith(b"+OK"):
        raise UpgradeFailed(f"greeting: {_printable(greeting)}")
    yield b"STLS\r\n"
    answer = yield _line
    assert answer is not None
    if not answer.startswith(b"+OK"):
        raise UpgradeFailed(f"STLS: {_printable(answer)}")


_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _ber(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _ber_header(data: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the element at ``pos``; None if incomplete."""
    if len(data) < pos + 2:
        return None
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        start, size = pos + 2, first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise UpgradeFailed("not an LDAP reply (bad BER length)")
        if len(data) < pos + 2 + count:
            return None
        start, size = pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, start, start + size


def _ber_element(buffer: bytearray) -> int:
    if buffer and buffer[0] != 0x30:
        raise UpgradeFailed(f"not an LDAP reply (first byte {buffer[0]:#04x})")
    header = _ber_header(buffer, 0)
    if header is None:
        return 0
    if header[2] > MAX_REPLY:
        raise UpgradeFailed("LDAP reply too long")
    return header[2] if len(buffer) >= header[2] else 0


def _ldap(_: str) -> Script:
    request = _ber(0x77, _ber(0x80, _STARTTLS_OID))  # [APPLICATION 23] ExtendedRequest
    yield _ber(0x30, _ber(0x02, b"\x01") + request)  # LDAPMessage, messageID 1
    message = yield _ber_element
    assert message is not None
    pos = _ber_header(message, 0)[1]  # type: ignore[index]  # complete by _ber_element
    while pos < len(message):
        header = _ber_header(message, pos)
        if header is None:
            break
        tag, start, end = header
        if tag == 0x78:  # [APPLICATION 24] ExtendedResponse: resultCode ENUMERATED first
            result = _ber_header(message, start)
            if result is None or result[0] != 0x0A:
                break
            code = int.from_bytes(message[result[1] : result[2]], "big")
            if code != 0:
                raise UpgradeFailed(f"StartTLS refused (LDAP resultCode {code})")
            return
        pos = end
    raise UpgradeFailed("not an LDAP StartTLS response")


def _xmpp(server_name: str) -> Script:
    yield (
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".format(
            server_name.replace("'", "")
        ).encode()
    )
    features = yield _until(b"</stream:features", b"<stream:features/", b"<stream:error")
    assert features is not None
    if b"<stream:error" in features:
        raise UpgradeFailed(
            f"stream error: {_printable(features[features.find(b'<stream:error') :])}"
        )
    if b"<starttls" not in features:
        raise UpgradeFailed("does not offer STARTTLS")
    yield b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    answer = yield _until(b"<proceed", b"<failure")
    assert answer is not None
    if b"<proceed" not in answer:
        raise UpgradeFailed("STARTTLS refused (<failure/>)")
    # The closing tag (if <proceed></proceed>) would be read here; servers send <proceed/>.


def _postgres(_: str) -> Script:
    yield struct.pack("!II", 8, 80877103)  # SSLRequest
    answer = yield _exactly(1)
    if answer == b"N":
        raise UpgradeFailed("server does not accept SSL connections")
    if answer != b"S":
        raise UpgradeFailed(f"not a PostgreSQL SSLRequest answer ({answer!r})")


_RDP_SELECTED = {1: "SSL", 2: "HYBRID", 8: "HYBRID_EX"}


def _rdp(_: str) -> Script:
    # TPKT (RFC 1006) + X.224 Connection Request + RDP_NEG_REQ(PROTOCOL_SSL | PROTOCOL_HYBRID)
    negotiation = struct.pack("<BBHI", 0x01, 0x00, 8, 0x00000003)
    x224 = bytes([6 + len(negotiation), 0xE0, 0, 0, 0, 0, 0]) + negotiation
    yield struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224
    header = yield _exactly(4)
    assert header is not None
    if header[0] != 3:
        raise UpgradeFailed("not an RDP (TPKT) reply")
    size = struct.unpack("!H", header[2:4])[0]
    if not 11 <= size <= 512:
        raise UpgradeFailed(f"not an RDP reply (TPKT length {size})")
    body = yield _exactly(size - 4)
    assert body is not None
    if body[1] & 0xF0 != 0xD0:
        raise UpgradeFailed("not an X.224 Connection Confirm")
    negotiation = body[7:]
    if len(negotiation) < 8:
        raise UpgradeFailed("standard RDP security only (no TLS offered)")
    kind, _, _, value = struct.unpack("<BBHI", negotiation[:8])
    if kind == 0x03:
        raise UpgradeFailed(f"RDP negotiation failure (code {value})")
    if kind != 0x02 or value not in _RDP_SELECTED:
        raise UpgradeFailed(f"RDP selected protocol {value} (no TLS)")


_SCRIPTS: Mapping[Protocol, Callable[[str], Script]] = {
    Protocol.SMTP: _smtp,
    Protocol.IMAP: _imap,
    Protocol.POP3: _pop3,
    Protocol.LDAP: _ldap,
    Protocol.FTP: _ftp,
    Protocol.XMPP: _xmpp,
    Protocol.POSTGRES: _postgres,
    Protocol.RDP: _rdp,
}
