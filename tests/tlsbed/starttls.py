"""Server sides of the TLS upgrades app.scan.starttls speaks, for a ServerFarm.

Each handler runs the plaintext part of its protocol as a real server would, then
``writer.start_tls`` with a real certificate and waits for the client to hang up.
``refuse=True`` makes the server decline the upgrade the way that protocol declines.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _ber(tag: int, content: bytes) -> bytes:
    assert len(content) < 0x80
    return bytes([tag, len(content)]) + content


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    writer.write(b"220-mail.test ESMTP\r\n220 ready\r\n")
    line = await reader.readline()
    assert line.upper().startswith(b"EHLO "), line
    offers = (
        b"250-PIPELINING\r\n250 SIZE 1000\r\n" if refuse else b"250-SIZE 1000\r\n250 STARTTLS\r\n"
    )
    writer.write(b"250-mail.test\r\n" + offers)
    if refuse:
        return False
    assert (await reader.readline()).upper() == b"STARTTLS\r\n"
    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
    return True


async def _imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] imap.test ready\r\n")
    tag, command = (await reader.readline()).split()[:2]
    assert command.upper() == b"STARTTLS"
    if refuse:
        writer.write(tag + b" BAD STARTTLS unavailable\r\n")
        return False
    writer.write(b"* NOTE untagged noise first\r\n" + tag + b" OK Begin TLS negotiation now\r\n")
    return True


async def _pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    writer.write(b"+OK POP3 ready\r\n")
    assert (await reader.readline()).upper() == b"STLS\r\n"
    writer.write(b"-ERR no TLS here\r\n" if refuse else b"+OK Begin TLS\r\n")
    return not refuse


async def _ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    writer.write(b"220-Welcome to ftp.test\r\n220-Second line\r\n220 ready\r\n")
    assert (await reader.readline()).upper() == b"AUTH TLS\r\n"
    writer.write(b"530 Please login first\r\n" if refuse else b"234 AUTH TLS successful\r\n")
    return not refuse


async def _ldap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    header = await reader.readexactly(2)
    assert header[0] == 0x30 and header[1] < 0x80
    body = await reader.readexactly(header[1])
    assert b"1.3.6.1.4.1.1466.20037" in body and b"\x77" in body
    code = 2 if refuse else 0  # protocolError / success
    response = _ber(0x0A, bytes([code])) + _ber(0x04, b"") + _ber(0x04, b"")
    if not refuse:
        response += _ber(0x8A, b"1.3.6.1.4.1.1466.20037")
    writer.write(_ber(0x30, _ber(0x02, b"\x01") + _ber(0x78, response)))
    return not refuse


async def _xmpp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    opening = await reader.readuntil(b"?>")
    assert opening.startswith(b"<?xml")
    stream = await reader.readuntil(b">")
    assert b"<stream:stream" in stream and b"to='" in stream
    writer.write(
        b"<?xml version='1.0'?><stream:stream from='xmpp.test' id='c2s1' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
    await writer.drain()
    features = b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    if not refuse:
        features = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    writer.write(b"<stream:features>" + features + b"</stream:features>")
    if refuse:
        return False
    assert b"<starttls" in await reader.readuntil(b"/>")
    writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    return True


async def _postgres(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool
) -> bool:
    assert await reader.readexactly(8) == struct.pack("!II", 8, 80877103)
    writer.write(b"N" if refuse else b"S")
    return not refuse


async def _rdp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: bool) -> bool:
    version, _, size = struct.unpack("!BBH", await reader.readexactly(4))
    assert version == 3
    request = await reader.readexactly(size - 4)
    assert request[1] == 0xE0  # X.224 Connection Request
    kind, _, _, requested = struct.unpack("<BBHI", request[7:15])
    assert kind == 0x01 and requested & 0x1  # RDP_NEG_REQ offering PROTOCOL_SSL
    # RDP_NEG_FAILURE (SSL_NOT_ALLOWED_BY_SERVER) or RDP_NEG_RSP selecting PROTOCOL_SSL
    negotiation = (
        struct.pack("<BBHI", 0x03, 0, 8, 2) if refuse else struct.pack("<BBHI", 2, 0, 8, 1)
    )
    x224 = bytes([6 + len(negotiation), 0xD0, 0, 0, 0x12, 0x34, 0]) + negotiation
    writer.write(struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224)
    return not refuse


UPGRADES: dict[
    str, Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool], Awaitable[bool]]
] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "ldap": _ldap,
    "xmpp": _xmpp,
    "postgres": _postgres,
    "rdp": _rdp,
}


def upgrade_handler(protocol: str, context: ssl.SSLContext, *, refuse: bool = False) -> Handler:
    """A stream handler: the ``protocol`` conversation, then TLS with ``context``."""
    upgrade = UPGRADES[protocol]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(10):
            if await upgrade(reader, writer, refuse):
                await writer.drain()
                await writer.start_tls(context)
            else:
                await writer.drain()
            await reader.read(1024)  # until the client hangs up

    return handle
