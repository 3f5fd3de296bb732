"""The reference: how fast plain `cryptography` turns CSRs into certificates, per core.

Each worker process loads a CA (certificate + key), then for a fixed time turns one CSR
into certificates the way any careful CA script would: parse the CSR, build a leaf with
the same extensions Certwright puts in (basicConstraints, keyUsage, extKeyUsage, SAN, SKI,
AKI, CRL distribution point, AIA), sign it, encode it as DER. The lint variant adds one
pkilint run per certificate through app.pki.lint (the linter Certwright uses).

No database, no Flask: this is the ceiling the issuance pipeline is compared with.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

BASE = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Material:
    """A CA (PEM key + DER certificate) and one CSR (DER), picklable for the workers."""

    key_type: str
    ca_key_pem: bytes
    ca_cert_der: bytes
    csr_der: bytes


def new_key(key_type: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type == "RSA-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "EC-P256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(key_type)


def make_material(key_type: str) -> Material:
    """A self-signed CA of ``key_type`` and a CSR with a key of the same type."""
    ca_key = new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = new_key(key_type)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.bench.example")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("www.bench.example")]), critical=False
        )
        .sign(leaf_key, hashes.SHA256())
    )
    return Material(
        key_type=key_type,
        ca_key_pem=ca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca_cert_der=ca_cert.public_bytes(serialization.Encoding.DER),
        csr_der=csr.public_bytes(serialization.Encoding.DER),
    )


def _issue_one(
    csr_der: bytes,
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    subject: x509.Name,
) -> x509.Certificate:
    csr = x509.load_der_x509_csr(csr_der)
    public_key = csr.public_key()
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90) - dt.timedelta(seconds=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(sans, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(f"{BASE}/pki/crl/1.crl")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(f"{BASE}/pki/ocsp/1"),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(f"{BASE}/pki/ca/1.cer"),
                    ),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _worker(
    material: Material,
    lint: bool,
    seconds: float,
    ready: Any,  # a multiprocessing Barrier: everyone starts timing together
    out: Any,  # a multiprocessing Queue for (count, wall seconds, CPU seconds)
) -> None:
    ca_key = serialization.load_pem_private_key(material.ca_key_pem, None)
    ca_cert = x509.load_der_x509_certificate(material.ca_cert_der)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Berlin"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, "www.bench.example"),
        ]
    )
    check = None
    if lint:
        from app.pki import lint as pki_lint
        from app.pki.profiles import CertKind

        pki_lint.warm_up([pki_lint.LintTarget.SERVERAUTH_OV])

        def check(cert: x509.Certificate) -> None:
            pki_lint.check_certificate(cert, CertKind.SSL)

        check(_issue_one(material.csr_der, ca_cert, ca_key, subject))  # type: ignore[arg-type]
    _issue_one(material.csr_der, ca_cert, ca_key, subject)  # type: ignore[arg-type]
    ready.wait()
    count = 0
    t0, c0 = time.perf_counter(), time.process_time()
    deadline = t0 + seconds
    now = t0
    while now < deadline:
        for _ in range(8 if not lint else 1):
            cert = _issue_one(material.csr_der, ca_cert, ca_key, subject)  # type: ignore[arg-type]
            if check is not None:
                check(cert)
            cert.public_bytes(serialization.Encoding.DER)
            count += 1
        now = time.perf_counter()
    out.put((count, now - t0, time.process_time() - c0))


@dataclass(frozen=True)
class RawRate:
    rate: float  # certificates per second, all processes together (wall clock)
    cpu_rate: float  # per second of CPU, times the number of processes
    other_cpu: float  # CPU seconds the rest of the machine used meanwhile


def measure(
    material: Material,
    *,
    lint: bool,
    seconds: float,
    processes: int = 2,
    context: str = "spawn",
) -> RawRate:
    """Certificates per second over ``processes`` processes timing the same window.

    ``spawn`` (the default) starts clean interpreters, safe from a parent with threads.
    """
    from bench.harness import machine_busy_seconds

    ctx = mp.get_context(context)
    out = ctx.Queue()
    ready = ctx.Barrier(processes + 1)
    procs = [
        ctx.Process(target=_worker, args=(material, lint, seconds, ready, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    busy0 = machine_busy_seconds()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    busy = machine_busy_seconds() - busy0
    for proc in procs:
        proc.join(10)
    cpu = sum(c for _, _, c in results)
    return RawRate(
        rate=sum(count / elapsed for count, elapsed, _ in results),
        cpu_rate=sum(count for count, _, _ in results) / cpu * processes if cpu else 0.0,
        other_cpu=max(0.0, busy - cpu),
    )


class RawReference:
    """(a) for one run, measured right before and right after it: on a
    machine shared with other work, the reference then sees the same load as the run."""

    def __init__(
        self, spec: dict[str, Any], materials: dict[str, Any], seconds: float, lint_seconds: float
    ) -> None:
        self.lint = spec["lint"] == "every"
        self.seconds = lint_seconds if self.lint else seconds
        key_type = spec["key_type"]
        if self.seconds and key_type not in materials:
            materials[key_type] = make_material(key_type)
        self.material = materials.get(key_type)
        self.figures: dict[str, Any] = {}

    def measure(self, when: str) -> None:
        if self.seconds:
            rate = measure(self.material, lint=self.lint, seconds=self.seconds)
            self.figures[when] = rate.__dict__


if __name__ == "__main__":
    for key_type in ("RSA-2048", "EC-P256"):
        m = make_material(key_type)
        print(key_type, "raw", measure(m, lint=False, seconds=3))
        print(key_type, "lint", measure(m, lint=True, seconds=3))
