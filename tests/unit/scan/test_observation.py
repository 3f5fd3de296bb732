"""Observations built from real certificates and probe results."""

from __future__ import annotations

from app.scan.observation import observe, observe_result
from app.scan.probe import ErrorKind, ProbeResult
from app.scan.rules import Observation
from tests.tlsbed.certs import Pki, issue, make_key, make_name


def test_leaf_fields(pki: Pki) -> None:
    found = observe(pki.rsa_leaf.der, ip="10.0.0.1", port=443, host_name="rsa.test")
    assert found == Observation(
        subject_cn=("rsa.test",),
        subject_o=("Example Corp",),
        subject_ou=("Web",),
        san=("rsa.test",),
        issuer=("Test Intermediate", "Certwright Test", "O=Certwright Test,CN=Test Intermediate"),
        host_name="rsa.test",
        ip="10.0.0.1",
        port=443,
        key_type=("RSA", "RSA-2048"),
    )


def test_key_types_and_san_kinds() -> None:
    ec = issue(make_name("e"), sans=["a.test"], ips=["127.0.0.1", "::1"])
    assert observe(ec.der, host_name=None).key_type == ("EC", "EC-P256")
    assert observe(ec.der, host_name=None).san == ("a.test", "127.0.0.1", "::1")
    ed = issue(make_name("e"), key=make_key("ed25519"))
    assert observe(ed.der, host_name=None).key_type == ("Ed25519",)


def test_missing_or_junk_leaf_keeps_the_endpoint() -> None:
    assert observe(b"junk", ip="10.0.0.2", port=8443, host_name=None) == Observation(
        ip="10.0.0.2", port=8443
    )
    failed = ProbeResult("10.0.0.3", 443, "x.test", error=ErrorKind.REFUSED)
    assert observe_result(failed) == Observation(host_name="x.test", ip="10.0.0.3", port=443)


def test_from_a_probe_result(pki: Pki) -> None:
    result = ProbeResult("::1", 443, None, "TLSv1.3", "X", (pki.ec_leaf.der, pki.intermediate.der))
    found = observe_result(result)
    assert found.subject_cn == ("ec.test",) and found.ip == "::1" and found.host_name is None
