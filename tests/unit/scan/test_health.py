"""Health flags: per live endpoint, and rule by rule on generated chains."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.scan.health import (
    HealthFlag,
    assess_chain,
    assess_result,
    match_dns_pattern,
    matches_host_name,
)
from app.scan.probe import probe
from tests.tlsbed.certs import NOW, Issued, Pki, issue, make_key, make_name
from tests.tlsbed.certs import with_sha1_signature as sha1
from tests.tlsbed.farm import Endpoints

F = HealthFlag


def flags_of(
    chain: list[Issued] | list[bytes], host: str | None = None, version: str = "TLSv1.3"
) -> set[HealthFlag]:
    ders = [c if isinstance(c, bytes) else c.der for c in chain]
    return set(assess_chain(ders, host_name=host, tls_version=version, now=NOW))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("name", "host", "version", "chain_length", "flags"),
    [
        ("rsa", None, "TLSv1.3", 2, set()),
        ("ec", "ec.test", "TLSv1.3", 2, set()),
        ("missing_intermediate", "ec.test", "TLSv1.3", 1, {F.INCOMPLETE_CHAIN}),
        ("self_signed", "self.test", "TLSv1.3", 1, {F.SELF_SIGNED_LEAF}),
        ("expired", "expired.test", "TLSv1.3", 2, {F.EXPIRED}),
        ("sni", "alpha.test", "TLSv1.3", 2, set()),
        ("sni", "other.test", "TLSv1.3", 2, {F.HOSTNAME_MISMATCH}),
        ("tls12_only", None, "TLSv1.2", 2, set()),
        ("misordered", None, "TLSv1.3", 3, {F.MISORDERED_CHAIN}),
        ("legacy", "ec.test", "TLSv1", 2, {F.LEGACY_TLS}),
        ("ipv6", "wrong.test", "TLSv1.3", 2, {F.HOSTNAME_MISMATCH}),
    ],
)
def test_each_endpoint_yields_its_flags(
    endpoints: Endpoints,
    name: str,
    host: str | None,
    version: str,
    chain_length: int,
    flags: set[HealthFlag],
) -> None:
    result = asyncio.run(probe(getattr(endpoints, name), endpoints.port, host))
    assert result.error is None
    assert result.tls_version == version
    assert len(result.chain) == chain_length
    assert set(assess_result(result, now=NOW)) == flags


def test_ip_targets_never_get_a_hostname_flag(pki: Pki) -> None:
    assert flags_of([pki.alpha, pki.intermediate], host=None) == set()


def test_anchors_complete_a_leaf_whose_issuer_was_not_sent(pki: Pki) -> None:
    chain = [pki.ec_leaf.der]
    assert assess_chain(chain, host_name=None, tls_version=None, now=NOW) == {F.INCOMPLETE_CHAIN}
    anchored = assess_chain(
        chain, host_name=None, tls_version=None, now=NOW, anchors=[pki.intermediate.cert]
    )
    assert anchored == frozenset()
    unrelated = assess_chain(
        chain, host_name=None, tls_version=None, now=NOW, anchors=[pki.root.cert]
    )
    assert unrelated == {F.INCOMPLETE_CHAIN}


def test_intermediate_without_its_root_is_complete(pki: Pki) -> None:
    assert flags_of([pki.ec_leaf, pki.intermediate]) == set()
    assert flags_of([pki.ec_leaf, pki.intermediate, pki.root]) == set()


def test_misordered_and_unrelated_certificates(pki: Pki) -> None:
    assert flags_of([pki.ec_leaf, pki.root, pki.intermediate]) == {F.MISORDERED_CHAIN}
    assert flags_of([pki.intermediate, pki.ec_leaf]) == {F.INCOMPLETE_CHAIN}
    stranger = issue("Stranger CA", ca=True)
    assert flags_of([pki.ec_leaf, stranger, pki.intermediate]) == {F.MISORDERED_CHAIN}
    assert flags_of([pki.ec_leaf, pki.intermediate, stranger]) == set()  # extras after: fine


def test_validity_window(pki: Pki) -> None:
    future = issue(
        "future.test",
        issuer=pki.intermediate,
        not_before=NOW + dt.timedelta(days=2),
        not_after=NOW + dt.timedelta(days=30),
    )
    assert flags_of([future, pki.intermediate]) == {F.NOT_YET_VALID}
    assert flags_of([pki.expired_leaf, pki.intermediate]) == {F.EXPIRED}


@pytest.mark.parametrize(
    ("key", "weak"),
    [("rsa1024", True), ("rsa2048", False), ("ec192", True), ("ec256", False),
     ("ec384", False), ("ed25519", False)],
)  # fmt: skip
def test_weak_keys(pki: Pki, key: str, weak: bool) -> None:
    leaf = issue("k.test", issuer=pki.intermediate, key=make_key(key))
    assert flags_of([leaf, pki.intermediate]) == ({F.WEAK_KEY} if weak else set())


def test_a_weak_intermediate_key_is_flagged_too(pki: Pki) -> None:
    weak_ca = issue("Weak CA", ca=True, issuer=pki.root, key=make_key("rsa1024"))
    leaf = issue("w.test", issuer=weak_ca)
    assert flags_of([leaf, weak_ca]) == {F.WEAK_KEY}


def test_sha1_signatures_except_on_self_issued_roots(pki: Pki) -> None:
    leaf = sha1(issue("old.test", issuer=pki.intermediate), pki.intermediate)
    assert flags_of([der(leaf), pki.intermediate.der]) == {F.SHA1_SIGNATURE}
    rsa_root = issue("Old Root", ca=True, key=make_key("rsa2048"))
    old_root = sha1(rsa_root, rsa_root)
    assert flags_of([pki.ec_leaf.der, pki.intermediate.der, der(old_root)]) == set()
    self_signed_sha1 = sha1(pki.self_signed, pki.self_signed)
    assert flags_of([der(self_signed_sha1)]) == {F.SELF_SIGNED_LEAF}


def test_junk_and_empty_chains() -> None:
    assert flags_of([b"not a certificate"]) == {F.UNPARSEABLE_CERTIFICATE}
    assert flags_of([], version="TLSv1.1") == {F.LEGACY_TLS}


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("www.example.com", "www.example.com", True),
        ("WWW.Example.com.", "www.example.COM", True),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("w*.example.com", "www.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("www.*.com", "www.example.com", False),
        ("*", "localhost", False),
        ("", "www.example.com", False),
        ("*.example.com", ".example.com", False),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", True),
    ],
)
def test_rfc6125_dns_matching(pattern: str, host: str, expected: bool) -> None:
    assert match_dns_pattern(pattern, host) is expected


def test_common_name_only_without_dns_names() -> None:
    with_san = issue(make_name("www.cn.test"), sans=["other.test"]).cert
    assert not matches_host_name(with_san, "www.cn.test")
    assert matches_host_name(with_san, "other.test")
    without_san = issue(make_name("www.cn.test")).cert
    assert matches_host_name(without_san, "www.cn.test")
    ip_only_san = issue(make_name("www.cn.test"), ips=["127.0.0.1"]).cert
    assert matches_host_name(ip_only_san, "www.cn.test")  # RFC 6125 6.4.4: no DNS-ID
    assert matches_host_name(ip_only_san, "127.0.0.1")
    assert not matches_host_name(ip_only_san, "127.0.0.2")
    assert not matches_host_name(without_san, "127.0.0.1")  # never an IP from the CN
