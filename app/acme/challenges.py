"""Challenge values: tokens, key authorizations (RFC 8555 §8.1), and what a client must
publish for http-01 (§8.3), dns-01 (§8.4) and tls-alpn-01 (RFC 8737 §3)."""

from __future__ import annotations

import hashlib
import secrets

from app.acme import jose

HTTP01 = "http-01"
DNS01 = "dns-01"
TLSALPN01 = "tls-alpn-01"
HTTP01_PATH = "/.well-known/acme-challenge/"
# What an http-01 answer may hold: the key authorization, maybe with trailing whitespace.
MAX_HTTP01_BODY = 4096


def new_token() -> str:
    """§8.1: at least 128 bits of entropy, base64url; 256 here."""
    return jose.b64encode(secrets.token_bytes(32))


def key_authorization(token: str, thumbprint: str) -> str:
    """§8.1: token || '.' || base64url(JWK thumbprint)."""
    return f"{token}.{thumbprint}"


def http01_url(host: str, token: str, port: int = 80) -> str:
    """§8.3: where the key authorization is fetched (port 80 in production)."""
    netloc = host if port == 80 else f"{host}:{port}"
    return f"http://{netloc}{HTTP01_PATH}{token}"


def http01_matches(body: bytes, expected: str) -> bool:
    """§8.3: the body is the key authorization; trailing whitespace is tolerated, as
    Let's Encrypt's Boulder and pebble do."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return False
    return text.rstrip(" \t\r\n") == expected


def dns01_txt(key_auth: str) -> str:
    """§8.4: the TXT record value at _acme-challenge.<name>."""
    return jose.b64encode(hashlib.sha256(key_auth.encode("ascii")).digest())


def tls_alpn01_digest(key_auth: str) -> bytes:
    """RFC 8737 §3: the acmeIdentifier extension's value."""
    return hashlib.sha256(key_auth.encode("ascii")).digest()
