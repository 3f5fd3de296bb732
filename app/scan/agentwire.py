"""What a scanning agent and the central workers say to each other over the broker: signed
envelopes (Ed25519 over canonical bytes), and an agent's allow-list. No I/O here.

An envelope is ``{"agent", "kind", "shard", "ts", "nonce", "body", "sig"}``. The signature
covers the canonical JSON (sorted keys, no spaces, UTF-8) of every field but ``sig``: the
agent's name, the kind of message, the shard's job id, the timestamp and the body, so a
signed result cannot be replayed for another agent, shard or moment. The central side keeps
only the public key: a copy of its database cannot sign findings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from app.scan.addresses import AddressBlock, DenyEntry, merge_blocks, parse_block

KINDS = ("heartbeat", "batch", "done", "refused")
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


class EnvelopeError(ValueError):
    """A message that is not a well-formed, correctly signed envelope (the text says why)."""


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: canonical JSON of the envelope without ``sig``."""
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_key() -> tuple[bytes, str]:
    """A fresh agent key: (private key as PKCS#8 PEM, public key as base64 of its 32 bytes)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_fingerprint(public_key: str) -> str:
    """SHA-256 of the raw public key, hex, shown in the console and by the agent at start."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Raises: EnvelopeError: not an unencrypted Ed25519 private key in PEM."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EnvelopeError("the key file does not hold an Ed25519 key")
    return key


def sign(
    key: Ed25519PrivateKey,
    *,
    agent: str,
    kind: str,
    shard: int,
    ts: float,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """A signed envelope (``shard`` 0 for heartbeats)."""
    fields: dict[str, Any] = {
        "agent": agent,
        "kind": kind,
        "shard": int(shard),
        "ts": round(float(ts), 3),
        "nonce": secrets.token_hex(8),
        "body": dict(body),
    }
    fields["sig"] = base64.b64encode(key.sign(canonical_bytes(fields))).decode("ascii")
    return fields


@dataclass(frozen=True)
class Envelope:
    agent: str
    kind: str
    shard: int
    ts: float
    body: dict[str, Any]
    digest: str  # SHA-256 of the signed bytes: a replay has the same one


def parse(message: Any) -> tuple[Envelope, bytes, bytes]:
    """(envelope, signed bytes, signature) of a message, not yet verified.

    Raises:
        EnvelopeError: the message is not shaped like an envelope.
    """
    if not isinstance(message, Mapping):
        raise EnvelopeError("the message is not an object")
    missing = [
        k for k in ("agent", "kind", "shard", "ts", "nonce", "body", "sig") if k not in message
    ]
    if missing:
        raise EnvelopeError(f"unsigned or incomplete message (no {', '.join(missing)})")
    if message["kind"] not in KINDS:
        raise EnvelopeError(f"unknown message kind {str(message['kind'])[:32]!r}")
    if not isinstance(message["body"], Mapping) or not isinstance(message["agent"], str):
        raise EnvelopeError("malformed message")
    try:
        signature = base64.b64decode(str(message["sig"]), validate=True)
        signed = canonical_bytes(message)
        envelope = Envelope(
            agent=message["agent"][:64],
            kind=str(message["kind"]),
            shard=int(message["shard"]),
            ts=float(message["ts"]),
            body=dict(message["body"]),
            digest=hashlib.sha256(signed).hexdigest(),
        )
    except (binascii.Error, TypeError, ValueError) as exc:
        raise EnvelopeError(f"malformed message ({exc})") from None
    if len(signed) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError("message too large")
    return envelope, signed, signature


def verify(public_key: str, signed: bytes, signature: bytes) -> bool:
    """Does ``signature`` over ``signed`` come from the holder of ``public_key``?"""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- allow-lists ---------------------------------------------------------------------------


def parse_allow_list(entries: Iterable[str]) -> tuple[AddressBlock, ...]:
    """Merged blocks of an agent's allow-list (addresses, CIDR blocks, ranges; IPv4/IPv6).

    Raises:
        EnvelopeError: an entry is not an address, block or range (each one named).
    """
    blocks, problems = [], []
    for entry in entries:
        for part in entry.replace(",", " ").split():
            try:
                blocks.append(parse_block(part))
            except ValueError as exc:
                problems.append(f"'{part}': {exc}")
    if problems:
        raise EnvelopeError("; ".join(problems))
    return merge_blocks(blocks)


def outside(blocks: Iterable[AddressBlock], allowed: Iterable[AddressBlock]) -> list[AddressBlock]:
    """The parts of ``blocks`` that ``allowed`` does not cover."""
    allow = merge_blocks(allowed)
    left: list[AddressBlock] = []
    for block in blocks:
        start = block.start
        for a in allow:
            if a.version != block.version or a.end < start or a.start > block.end:
                continue
            if a.start > start:
                left.append(AddressBlock(start, a.start - 1, block.version))
            start = a.end + 1
            if start > block.end:
                break
        if start <= block.end:
            left.append(AddressBlock(start, block.end, block.version))
    return left


def complement(allowed: Iterable[AddressBlock]) -> tuple[DenyEntry, ...]:
    """Every address outside ``allowed``, as deny entries for the sweep (so a host name that
    resolves outside an agent's allow-list is reported ``denied`` and never contacted)."""
    spaces = (AddressBlock(0, 2**32 - 1, 4), AddressBlock(0, 2**128 - 1, 6))
    label = "(outside this agent's allow-list)"
    return tuple(DenyEntry(block, label) for block in outside(spaces, allowed))


def describe_blocks(blocks: Iterable[AddressBlock]) -> str:
    return ", ".join(block.describe() for block in blocks)
