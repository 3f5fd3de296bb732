"""Challenge values: tokens, key authorizations (RFC 8555 §8.1), and what a client must
publish for http-01 (§8.3), dns-01 (§8.4) and tls-alpn-01 (RFC 8737 §3)."""

from __future__ import annotations

import hashlib
import secrets

from cryptography import x509

from app.acme import jose

HTTP01 = "http-01"
DNS01 = "dns-01"
TLSALPN01 = "tls-alpn-01"
HTTP01_PATH = "/.well-known/acme-challenge/"
DNS01_LABEL = "_acme-challenge."
# What an http-01 answer may hold: the key authorization, maybe with trailing whitespace.
MAX_HTTP01_BODY = 4096
# RFC 8737 §6: the ALPN protocol name and the id-pe-acmeIdentifier extension.
TLSALPN01_PROTOCOL = "acme-tls/1"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
# The extension's value: the DER of Authorization ::= OCTET STRING (SIZE (32)).
_OCTET_STRING_32 = b"\x04\x20"


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


def tls_alpn01_problem(cert_der: bytes, name: str, key_auth: str) -> str | None:
    """RFC 8737 §3: what is wrong with the certificate a server presented for acme-tls/1
    (None when it proves control of ``name``): it must carry exactly one subjectAltName,
    the dNSName ``name``, and a critical acmeIdentifier extension holding the SHA-256
    digest of the key authorization as a 32-byte DER OCTET STRING."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        extensions = cert.extensions
    except ValueError as exc:
        return f"the certificate is not readable: {exc}"
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subjectAltName extension"
    dns_names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    if len(list(san)) != 1 or dns_names != [name.lower()]:
        shown = ", ".join(str(getattr(n, "value", n)) for n in san)
        return f"the certificate's subjectAltName must be exactly the dNSName {name}, not {shown}"
    try:
        ext = extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        return "the certificate has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)"
    if not ext.critical:
        return "the acmeIdentifier extension must be marked critical"
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if len(value) != 34 or not value.startswith(_OCTET_STRING_32):
        return "the acmeIdentifier extension must hold a 32-byte DER OCTET STRING"
    if not secrets.compare_digest(value[2:], tls_alpn01_digest(key_auth)):
        return "the acmeIdentifier extension does not hold the key authorization's digest"
    return None
