"""CA creation and leaf issuance, judged by openssl and by a real TLS handshake."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from app.pki import issue, names, validity
from app.pki.errors import KeyPolicyError, LintError, NamePolicyError, ProfileError
from app.pki.issuer import Issuer, make_issuer
from app.pki.keys import PrivateKey
from app.pki.profiles import (
    LEAF_PROFILES,
    CaPurpose,
    CertKind,
    LeafProfile,
    SignatureHash,
    check_issuer_purpose,
)

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl, Pkilint, ReadyIssuer, WritePem

SSL = LEAF_PROFILES[CertKind.SSL]


def leaf_key_for(hierarchy: Hierarchy, key_cache: KeyCache) -> PrivateKey:
    return key_cache.get("RSA-2048" if hierarchy.name == "RSA" else "EC-P256")


def issue_for(
    issuer: Issuer,
    key: PrivateKey,
    kind: CertKind = CertKind.SSL,
    *,
    term_days: int = 90,
    now: dt.datetime | None = None,
    **subject: str,
) -> x509.Certificate:
    alt = (
        names.build_alt_names(dns_names=["app.certwright.test"], ip_addresses=["127.0.0.1"])
        if kind is CertKind.SSL
        else names.build_alt_names(emails=["device-7@certwright.test"])
    )
    return issue.issue_leaf(
        issuer,
        public_key=key.public_key(),
        subject=names.build_subject(**(subject or {"common_name": "app.certwright.test"})),
        alt_names=alt,
        profile=LeafProfile(kind),
        serial=issue.new_serial(),
        term_days=term_days,
        now=now,
    )


def test_ca_certificates(hierarchy: Hierarchy) -> None:
    root, issuing = hierarchy.root.certificate, hierarchy.issuing.certificate
    name = f"Certwright {hierarchy.name}"
    assert root.subject.rfc4514_string() == f"CN={name} Root CA,O={name},ST=Texas,C=US"
    assert issuing.subject.rfc4514_string() == f"CN={name} Issuing CA,O={name},C=US"
    assert root.issuer == root.subject and issuing.issuer == root.subject
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    issuing_bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
    assert root_bc.critical and root_bc.value == x509.BasicConstraints(True, None)
    assert issuing_bc.critical and issuing_bc.value == x509.BasicConstraints(True, 0)
    assert issuing.extensions.get_extension_for_class(x509.KeyUsage).critical
    issuing_aki = issuing.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert issuing_aki.key_identifier == hierarchy.root.subject_key_identifier
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert root.not_valid_after_utc - root.not_valid_before_utc >= dt.timedelta(days=20 * 365)
    years = 5 if hierarchy.name == "RSA" else 10
    start = issuing.not_valid_before_utc
    assert issuing.not_valid_after_utc == start.replace(year=start.year + years) - dt.timedelta(
        seconds=1
    )
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [
        x509.UniformResourceIdentifier(f"http://pki.certwright.test/{hierarchy.name}/root.crl")
    ]


def test_ca_signature_hashes(rsa_hierarchy: Hierarchy, ec_hierarchy: Hierarchy) -> None:
    assert rsa_hierarchy.root.certificate.signature_hash_algorithm is not None
    assert rsa_hierarchy.root.certificate.signature_hash_algorithm.name == "sha256"
    # The P-384 root signs with SHA-384, itself and its issuing CA.
    ec_root = ec_hierarchy.root.certificate
    assert ec_root.signature_hash_algorithm is not None
    assert ec_root.signature_hash_algorithm.name == "sha384"
    assert ec_hierarchy.root.signature_hash is SignatureHash.SHA384


def test_each_ca_signs_with_the_hash_of_its_own_key(
    key_cache: KeyCache, openssl: Openssl, write_pem: WritePem
) -> None:
    # A stored choice that does not fit the signing key (a P-384 root told SHA-256, a P-256
    # issuing CA told SHA-384, as an issuing CA "inheriting" its parent's hash was) must
    # not reach a signature: BR 7.1.3.2.2 ties the hash to the curve of the SIGNING key.
    root_key, issuing_key = key_cache.get("EC-P384", 1), key_cache.get("EC-P256", 2)
    root_cert = issue.create_root_ca(
        root_key, customer_name="Hash", country="US", signature_hash=SignatureHash.SHA256
    )
    root = make_issuer(
        root_cert,
        root_key,
        signature_hash=SignatureHash.SHA256,
        crl_url="http://pki.certwright.test/hash-root.crl",
        ca_issuers_url="http://pki.certwright.test/hash-root.crt",
    )
    assert root.signature_hash is SignatureHash.SHA384
    issuing_cert = issue.create_issuing_ca(
        issuing_key.public_key(), root, customer_name="Hash", country="US"
    )
    issuing = make_issuer(
        issuing_cert,
        issuing_key,
        signature_hash=SignatureHash.SHA384,
        crl_url="http://pki.certwright.test/hash.crl",
        ocsp_url="http://pki.certwright.test/ocsp",
        ca_issuers_url="http://pki.certwright.test/hash.crt",
    )
    assert issuing.signature_hash is SignatureHash.SHA256
    leaf = issue_for(issuing, key_cache.get("EC-P256"))
    signed = {"root": root_cert, "issuing": issuing_cert, "leaf": leaf}
    for name, expected in (("root", "384"), ("issuing", "384"), ("leaf", "256")):
        text = openssl(
            "x509", "-noout", "-text", "-in", str(write_pem(f"{name}.pem", [signed[name]]))
        )
        assert f"Signature Algorithm: ecdsa-with-SHA{expected}" in text.stdout, name


def test_issuing_ca_never_outlives_its_parent(
    key_cache: KeyCache, ready_issuer: ReadyIssuer
) -> None:
    parent_key = key_cache.get("EC-P256", 10)
    root_cert = issue.create_root_ca(
        parent_key, customer_name="Short", country="US", lifetime_years=8
    )
    parent = ready_issuer(root_cert, parent_key, "short")
    child = issue.create_issuing_ca(
        key_cache.get("EC-P256", 11).public_key(), parent, customer_name="Short"
    )
    assert child.not_valid_after_utc == root_cert.not_valid_after_utc
    late = root_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(ProfileError, match="the parent CA expired on"):
        issue.create_issuing_ca(
            key_cache.get("EC-P256", 11).public_key(), parent, customer_name="X", now=late
        )
    early = root_cert.not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(ProfileError, match="the parent CA is not valid before"):
        issue.create_issuing_ca(
            key_cache.get("EC-P256", 11).public_key(), parent, customer_name="X", now=early
        )


def test_ca_name_rules(key_cache: KeyCache) -> None:
    with pytest.raises(NamePolicyError, match="customer name is empty"):
        issue.create_root_ca(key_cache.get("EC-P256", 10), customer_name="  ")
    with pytest.raises(NamePolicyError, match=r"common name \(CN\) is longer than 64"):
        issue.create_root_ca(key_cache.get("EC-P256", 10), customer_name="x" * 60)


def test_make_issuer_refusals(rsa_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    leaf = issue_for(rsa_hierarchy.issuing, key_cache.get("RSA-2048"))
    with pytest.raises(ProfileError, match="not a CA certificate"):
        make_issuer(leaf, key_cache.get("RSA-2048"))
    with pytest.raises(ProfileError, match="CA private key does not match the CA certificate"):
        make_issuer(rsa_hierarchy.root.certificate, key_cache.get("RSA-2048"))
    assert "private_key" not in repr(rsa_hierarchy.issuing)
    assert "PRIVATE" not in repr(rsa_hierarchy.issuing)


@pytest.mark.parametrize(
    ("kind", "purpose"),
    [
        (CertKind.SSL, "sslserver"),
        (CertKind.CLIENT, "sslclient"),
        (CertKind.CLIENT, "smimesign"),
        (CertKind.DEVICE, "sslclient"),
        (CertKind.CODE_SIGNING, "any"),  # OpenSSL 3.0 has no codesign purpose
    ],
)
def test_openssl_verifies_issued_leaves(
    hierarchy: Hierarchy,
    key_cache: KeyCache,
    openssl: Openssl,
    write_pem: WritePem,
    kind: CertKind,
    purpose: str,
) -> None:
    subject = {"common_name": "app.certwright.test"} if kind is CertKind.SSL else {}
    if kind is CertKind.CLIENT:  # S/MIME BR mailbox-validated: the CN is the mailbox
        subject = {"common_name": "device-7@certwright.test"}
    ca = hierarchy.issuing_for(kind)
    leaf = issue_for(ca, leaf_key_for(hierarchy, key_cache), kind, **subject)
    root = write_pem("root.pem", [hierarchy.root.certificate])
    issuing = write_pem("issuing.pem", [ca.certificate])
    leaf_path = write_pem("leaf.pem", [leaf])
    result = openssl(
        "verify", "-x509_strict", "-purpose", purpose,
        "-CAfile", str(root), "-untrusted", str(issuing), str(leaf_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{leaf_path}: OK"


def test_openssl_shows_the_expected_extensions(
    hierarchy: Hierarchy, key_cache: KeyCache, openssl: Openssl, write_pem: WritePem
) -> None:
    leaf = issue_for(hierarchy.issuing, leaf_key_for(hierarchy, key_cache))
    text = openssl("x509", "-noout", "-text", "-in", str(write_pem("leaf.pem", [leaf]))).stdout
    name = hierarchy.name
    expected = [
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Key Usage: critical",
        "X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n",
        "X509v3 Subject Alternative Name: \n"
        "                DNS:app.certwright.test, IP Address:127.0.0.1\n",
        "X509v3 Subject Key Identifier:",
        "X509v3 Authority Key Identifier:",
        f"URI:http://pki.certwright.test/{name}/issuing.crl",
        "OCSP - URI:http://pki.certwright.test/ocsp",
        f"CA Issuers - URI:http://pki.certwright.test/{name}/issuing.crt",
        "Subject: CN = app.certwright.test",
    ]
    for fragment in expected:
        assert fragment in text
    usage = "Digital Signature, Key Encipherment" if name == "RSA" else "Digital Signature\n"
    assert usage in text


def test_validity_end_second_is_inclusive(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    now = ec_hierarchy.issuing.not_before + dt.timedelta(days=1, microseconds=999)
    leaf = issue_for(ec_hierarchy.issuing, key_cache.get("EC-P256"), now=now, term_days=90)
    assert leaf.not_valid_before_utc == now.replace(microsecond=0) - validity.BACKDATE
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=90, seconds=-1)


def test_validity_is_clamped_to_the_issuing_ca(
    ec_hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    ca_end = ec_hierarchy.issuing.not_after
    near_end = ca_end - dt.timedelta(days=10)
    # Ten years on, the CA/B Forum ceiling is 47 days; a 40-day term still overruns the CA.
    leaf = issue_for(ec_hierarchy.issuing, key_cache.get("EC-P256"), now=near_end, term_days=40)
    assert leaf.not_valid_after_utc == ca_end
    with pytest.raises(ProfileError, match="the issuing CA expired on"):
        issue_for(ec_hierarchy.issuing, key_cache.get("EC-P256"), now=ca_end, term_days=40)
    before = ec_hierarchy.issuing.not_before - dt.timedelta(seconds=1)
    with pytest.raises(ProfileError, match="the issuing CA is not valid before"):
        issue_for(ec_hierarchy.issuing, key_cache.get("EC-P256"), now=before)


def test_pre_encoded_extensions_are_byte_identical(
    hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    # build_leaf hands the builder DER-encoded extensions; rebuilding the same certificate
    # from parsed extension objects through the public fluent API must give the same TBS.
    leaf = issue_for(hierarchy.issuing, leaf_key_for(hierarchy, key_cache))
    fluent = (
        x509.CertificateBuilder()
        .serial_number(leaf.serial_number)
        .issuer_name(leaf.issuer)
        .subject_name(leaf.subject)
        .public_key(leaf.public_key())  # type: ignore[arg-type]
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for extension in leaf.extensions:
        assert not isinstance(extension.value, x509.UnrecognizedExtension)
        fluent = fluent.add_extension(extension.value, extension.critical)
    rebuilt = issue.sign(fluent, hierarchy.issuing)
    assert rebuilt.tbs_certificate_bytes == leaf.tbs_certificate_bytes


def test_validity_window_directly() -> None:
    signed = dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # backdated one hour
    assert issue.validity_window(1, now=signed) == (start, start + dt.timedelta(seconds=86399))


def test_cn_is_repeated_in_san_and_san_is_critical_without_subject(
    ec_hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    builder = issue.build_leaf(
        ec_hierarchy.issuing,
        public_key=key_cache.get("EC-P256").public_key(),
        subject=names.build_subject(common_name="WWW.certwright.test"),
        alt_names=names.build_alt_names(dns_names=["api.certwright.test"]),
        profile=SSL,
        serial=5,
        term_days=30,
    )
    leaf = issue.sign_linted(builder, ec_hierarchy.issuing, CertKind.SSL)
    # BR §7.1.4.3: the CN is rewritten to the exact SAN value it duplicates.
    assert leaf.subject.rfc4514_string() == "CN=www.certwright.test"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [
        "www.certwright.test",
        "api.certwright.test",
    ]
    assert not san.critical
    bare = issue.build_leaf(
        ec_hierarchy.issuing,
        public_key=key_cache.get("EC-P256").public_key(),
        subject=x509.Name([]),
        alt_names=names.build_alt_names(emails=["a@certwright.test"]),
        profile=LEAF_PROFILES[CertKind.CLIENT],
        serial=6,
        term_days=30,
    )
    signed = issue.sign_linted(bare, ec_hierarchy.issuing, CertKind.CLIENT)
    assert signed.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_name_refusals(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    common = {
        "public_key": key_cache.get("EC-P256").public_key(),
        "serial": 7,
        "term_days": 30,
    }
    with pytest.raises(NamePolicyError, match="needs at least one subject alternative name"):
        issue.issue_leaf(
            ec_hierarchy.issuing_for(CertKind.CLIENT),
            subject=names.build_subject(common_name="Jane Doe"),
            alt_names=names.AltNames(),
            profile=LEAF_PROFILES[CertKind.CLIENT],
            **common,  # type: ignore[arg-type]
        )
    with pytest.raises(NamePolicyError, match="SSL certificates carry DNS names and IP"):
        issue.issue_leaf(
            ec_hierarchy.issuing,
            subject=names.build_subject(common_name="a.certwright.test"),
            alt_names=names.build_alt_names(emails=["a@certwright.test"]),
            profile=SSL,
            **common,  # type: ignore[arg-type]
        )


def test_policy_refusals(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    with pytest.raises(ProfileError, match="exceeds the CA/Browser Forum maximum"):
        issue_for(ec_hierarchy.issuing, key_cache.get("EC-P256"), term_days=5 * 365)
    with pytest.raises(KeyPolicyError, match="EC-P384 is not allowed here"):
        issue.issue_leaf(
            ec_hierarchy.issuing,
            public_key=key_cache.get("EC-P384").public_key(),
            subject=names.build_subject(common_name="a.certwright.test"),
            alt_names=names.AltNames(),
            profile=SSL,
            serial=8,
            term_days=30,
            allowed_key_types=("EC-P256",),
        )


def test_serials() -> None:
    serials = {issue.new_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) > 150
    assert min(s.bit_length() for s in serials) > 64


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_bad_serial_is_refused(ec_hierarchy: Hierarchy, key_cache: KeyCache, serial: int) -> None:
    with pytest.raises(ProfileError, match=r"at most 20 octets \(RFC 5280 §4.1.2.2\)"):
        issue.build_leaf(
            ec_hierarchy.issuing,
            public_key=key_cache.get("EC-P256").public_key(),
            subject=names.build_subject(common_name="a.certwright.test"),
            alt_names=names.AltNames(),
            profile=SSL,
            serial=serial,
            term_days=30,
        )


def test_largest_serial_is_accepted(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    leaf = issue.issue_leaf(
        ec_hierarchy.issuing,
        public_key=key_cache.get("EC-P256").public_key(),
        subject=names.build_subject(common_name="a.certwright.test"),
        alt_names=names.AltNames(),
        profile=SSL,
        serial=2**159 - 1,
        term_days=30,
    )
    assert leaf.serial_number == 2**159 - 1


def _serve_tls(context: ssl.SSLContext, listener: socket.socket, connections: int) -> None:
    for _ in range(connections):
        try:
            conn, _addr = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                continue  # the client refused our certificate: expected in one case


def test_tls_handshake_with_issued_certificate(
    hierarchy: Hierarchy, key_cache: KeyCache, tmp_path: Path, write_pem: WritePem
) -> None:
    key = leaf_key_for(hierarchy, key_cache)
    leaf = issue_for(hierarchy.issuing, key)
    chain = write_pem("chain.pem", [leaf, hierarchy.issuing.certificate])
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, key_path)
    client = ssl.create_default_context(
        cafile=str(write_pem("root.pem", [hierarchy.root.certificate]))
    )
    assert client.check_hostname
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_tls, args=(server, listener, 3), daemon=True)
        thread.start()
        for hostname in ("app.certwright.test", "127.0.0.1"):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                assert tls.recv(2) == b"ok"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
        ):
            client.wrap_socket(raw, server_hostname="wrong.certwright.test")
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_code_signing_and_device_need_no_san_when_the_subject_names_them(
    ec_hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    for kind in (CertKind.CODE_SIGNING, CertKind.DEVICE):
        cert = issue.issue_leaf(
            ec_hierarchy.issuing_for(kind),
            public_key=key_cache.get("EC-P256").public_key(),
            subject=names.build_subject(common_name="Acme Publisher", organization="Acme"),
            alt_names=names.AltNames(),
            profile=LEAF_PROFILES[kind],
            serial=issue.new_serial(),
            term_days=365,
        )
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_a_device_urn_passes_lint_but_not_a_broken_uri(
    ec_hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    from app.pki import lint
    from app.pki.errors import LintError

    def device(uri: str) -> x509.Certificate:
        return issue.issue_leaf(
            ec_hierarchy.issuing_for(CertKind.DEVICE),
            public_key=key_cache.get("EC-P256").public_key(),
            subject=names.build_subject(common_name="SN-1", organization="Acme"),
            alt_names=names.AltNames(uris=(uri,)),
            profile=LEAF_PROFILES[CertKind.DEVICE],
            serial=issue.new_serial(),
            term_days=365,
        )

    cert = device("urn:dev:mac:0024befffe804ff1")
    assert [f.code for f in lint.lint_certificate(cert, CertKind.DEVICE) if not f.is_allowed] == []
    with pytest.raises(LintError, match=r"pkix\.invalid_uri_syntax"):
        device("foo:bar")  # AltNames built by hand: the linter is the last line


# -- CA certificates to the CA/B Forum CA profiles (TLS BR 7.1.2.1, 7.1.2.3, 7.1.2.6) -------

_DETECTED = {
    CaPurpose.TLS: "INTERNAL-UNCONSTRAINED-TLS-CA",
    CaPurpose.SMIME: "NON-TLS-CA",
    CaPurpose.CODE_SIGNING: "NON-TLS-CA",
    CaPurpose.DEVICE: "NON-TLS-CA",
}


def test_ca_certificates_pass_pkilint_as_their_ca_type(
    public_hierarchy: Hierarchy, pkilint: Pkilint, write_pem: WritePem
) -> None:
    # pkilint's own command line, typing each certificate as it would (-d): the root as a
    # BR 7.1.2.1 root, the TLS issuing CA as a 7.1.2.6 TLS subordinate CA, the others as
    # 7.1.2.3 non-TLS subordinate CAs. Nothing from NOTICE up may be reported (INFO: the
    # SKI is a method-1 key hash).
    hierarchy = public_hierarchy
    cas = {"ROOT-CA": hierarchy.root.certificate} | {
        f"{_DETECTED[purpose]} ({purpose})": issuer.certificate
        for purpose, issuer in hierarchy.by_purpose.items()
    }
    paths = [write_pem(f"ca{i}.pem", [cert]) for i, cert in enumerate(cas.values())]
    results = pkilint(
        "lint_cabf_serverauth_cert",
        *(["lint", "-d", "-o", "-s", "NOTICE", str(path)] for path in paths),
    )
    for label, result in zip(cas, results, strict=True):
        assert result.stderr.strip() == label.split(" ")[0], label
        assert result.returncode == 0, f"{label}: {result.stdout}"


def test_tls_issuing_ca_passes_pkilint_as_a_subordinate_tls_ca(
    public_hierarchy: Hierarchy, pkilint: Pkilint, write_pem: WritePem
) -> None:
    # The finding of the issue: typed explicitly as a TLS subordinate CA, the issuing CA
    # lacked certificatePolicies and extendedKeyUsage (two ERRORs, BR 7.1.2.6.1). Typed
    # as an internal one: anyPolicy is for a CA affiliated with its parent (BR
    # 7.1.2.10.5), as a Certwright issuing CA is with its root.
    path = write_pem("issuing.pem", [public_hierarchy.issuing.certificate])
    (result,) = pkilint(
        "lint_cabf_serverauth_cert",
        ["lint", "-t", "INTERNAL-UNCONSTRAINED-TLS-CA", "-s", "NOTICE", str(path)],
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("purpose", "usages"),
    [
        (CaPurpose.TLS, "TLS Web Server Authentication, TLS Web Client Authentication"),
        (CaPurpose.SMIME, "E-mail Protection, TLS Web Client Authentication"),
        (CaPurpose.CODE_SIGNING, "Code Signing"),
        (CaPurpose.DEVICE, "TLS Web Client Authentication"),
    ],
)
def test_issuing_ca_extensions_by_purpose(
    hierarchy: Hierarchy, openssl: Openssl, write_pem: WritePem, purpose: CaPurpose, usages: str
) -> None:
    ca = hierarchy.by_purpose[purpose]
    path = write_pem("ca.pem", [ca.certificate])
    text = openssl("x509", "-noout", "-text", "-in", str(path)).stdout
    assert f"X509v3 Extended Key Usage: \n                {usages}\n" in text
    assert "X509v3 Certificate Policies: \n                Policy: X509v3 Any Policy\n" in text
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert ca.purpose is purpose
    eku = ca.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    policies = ca.certificate.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert not eku.critical and not policies.critical


def test_root_has_no_extended_key_usage_or_policies(hierarchy: Hierarchy) -> None:
    # TLS BR 7.1.2.1.2: extKeyUsage MUST NOT, certificatePolicies NOT RECOMMENDED.
    root = hierarchy.root.certificate
    present = {type(extension.value) for extension in root.extensions}
    assert x509.ExtendedKeyUsage not in present
    assert x509.CertificatePolicies not in present
    assert hierarchy.root.purpose is None


def test_issuing_ca_issues_only_its_purpose(hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    key = leaf_key_for(hierarchy, key_cache)
    smime = hierarchy.issuing_for(CertKind.CLIENT)
    with pytest.raises(
        ProfileError, match="this S/MIME issuing CA issues Client certificates only"
    ):
        issue_for(smime, key, CertKind.SSL)
    with pytest.raises(ProfileError, match="this TLS issuing CA issues SSL certificates only"):
        issue_for(hierarchy.issuing, key, CertKind.CODE_SIGNING)
    # A CA built before purposes (no extendedKeyUsage) constrains nothing.
    check_issuer_purpose(None, CertKind.CODE_SIGNING)


def test_ca_certificates_need_a_country(key_cache: KeyCache, ready_issuer: ReadyIssuer) -> None:
    key = key_cache.get("EC-P256", 30)
    with pytest.raises(NamePolicyError, match=r"must name the country \(C\).*BR 7.1.2.10.2"):
        issue.create_root_ca(key, customer_name="Nowhere")
    root = ready_issuer(issue.create_root_ca(key, customer_name="Here", country="NL"), key, "nl")
    # An issuing CA given no country takes its parent's.
    child = issue.create_issuing_ca(
        key_cache.get("EC-P256", 31).public_key(), root, customer_name="Here"
    )
    assert child.subject.rfc4514_string() == "CN=Here Issuing CA,O=Here,C=NL"


@pytest.mark.parametrize("years", [7, 26])
def test_root_lifetime_is_8_to_25_years(key_cache: KeyCache, years: int) -> None:
    with pytest.raises(ProfileError, match=rf"valid 8 to 25 years .*BR 7.1.2.1.1.*not {years}"):
        issue.create_root_ca(
            key_cache.get("EC-P256", 30), customer_name="Span", country="US", lifetime_years=years
        )


def test_ca_certificate_is_linted_before_the_parent_signs_it(key_cache: KeyCache) -> None:
    # A parent that would put no CRL distribution point in its issuing CA (BR 7.1.2.6.1:
    # MUST): the lint refuses the issuing CA before the parent's key signs anything.
    key = key_cache.get("EC-P256", 30)
    bare_root = make_issuer(issue.create_root_ca(key, customer_name="Bare", country="US"), key)
    with pytest.raises(LintError, match="crl_distribution_points_extension_absent"):
        issue.create_issuing_ca(
            key_cache.get("EC-P256", 31).public_key(), bare_root, customer_name="Bare"
        )
