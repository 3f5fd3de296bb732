"""Test certificates for app.scan tests, generated with cryptography (no app.pki)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def make_key(kind: str = "ec256") -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1(), "ec192": ec.SECP192R1()}[kind]
    return ec.generate_private_key(curve)


def make_name(cn: str, org: str | None = None, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def issue(
    subject: x509.Name | str,
    *,
    key: PrivateKey | None = None,
    issuer: Issued | None = None,
    ca: bool = False,
    sans: Sequence[str] = (),
    ips: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    with_san: bool = True,
) -> Issued:
    """A certificate for ``subject``; self-signed when ``issuer`` is None."""
    key = key or make_key()
    name = make_name(subject) if isinstance(subject, str) else subject
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    general: list[x509.GeneralName] = [x509.DNSName(s) for s in sans]
    general += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if general and with_san:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    algorithm = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer_key, algorithm), key)


@dataclass(frozen=True)
class ExternalSet:
    """Certificates of a CA that is not ours, as the discovery tests find them deployed:
    a leaf with its intermediate (subject O "Example Corp"), an expired one ("Other Inc")
    and a self-signed one."""

    inter: Issued
    ext: Issued
    expired: Issued
    selfsigned: Issued


def external_set() -> ExternalSet:
    root = issue(make_name("Ext Root", "Example Corp"), ca=True)
    inter = issue(make_name("Ext Intermediate", "Example Corp"), ca=True, issuer=root)
    return ExternalSet(
        inter=inter,
        ext=issue(make_name("www.ext.test", "Example Corp"), issuer=inter, sans=["www.ext.test"]),
        expired=issue(
            make_name("old.ext.test", "Other Inc"),
            issuer=inter,
            sans=["old.ext.test"],
            not_before=NOW - dt.timedelta(days=90),
            not_after=NOW - dt.timedelta(days=1),
        ),
        selfsigned=issue(make_name("self.test"), sans=["self.test"]),
    )


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _read_tlv(data: bytes, pos: int) -> tuple[bytes, int]:
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return data[start : start + length], start + length


def with_sha1_signature(issued: Issued, signer: Issued) -> x509.Certificate:
    """``issued`` re-signed by ``signer`` with SHA-1 (cryptography's builder refuses SHA-1)."""
    body, _ = _read_tlv(issued.der, 0)
    tbs, _ = _read_tlv(body, 0)
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        old = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # ecdsa-with-SHA256
        new = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d0401")))  # ecdsa-with-SHA1
    else:
        old = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01010b")) + b"\x05\x00")
        new = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d010105")) + b"\x05\x00")
    assert old in tbs
    new_tbs = _tlv(0x30, tbs.replace(old, new, 1))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA1()))
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())
    der = _tlv(0x30, new_tbs + new + _tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


@dataclass(frozen=True)
class Pki:
    root: Issued
    intermediate: Issued
    rsa_leaf: Issued
    ec_leaf: Issued
    expired_leaf: Issued
    self_signed: Issued
    alpha: Issued
    beta: Issued
    default: Issued
