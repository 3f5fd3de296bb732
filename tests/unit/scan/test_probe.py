"""Probing real servers on loopback, through both paths: probe() and the sweep engine."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import socket
import ssl
from collections.abc import Callable, Iterator

import pytest
from cryptography import x509

from app.scan.probe import (
    ErrorKind,
    ProbeResult,
    classify_errno,
    classify_handshake_error,
    make_client_context,
    probe,
)
from app.scan.shards import Target
from app.scan.sweep import SweepBatch, SweepOptions, sweep_targets
from tests.tlsbed.certs import Pki
from tests.tlsbed.farm import Endpoints

Prober = Callable[[str, int, str | None], ProbeResult]


def probe_one(ip: str, port: int, host_name: str | None) -> ProbeResult:
    return asyncio.run(probe(ip, port, host_name, connect_timeout=1, handshake_timeout=0.5))


def sweep_one(ip: str, port: int, host_name: str | None) -> ProbeResult:
    batches: list[SweepBatch] = []
    target = Target(ip, port, host_name, 6 if ":" in ip else 4)
    options = SweepOptions(connect_timeout=1, handshake_timeout=0.5, report_closed=True)
    asyncio.run(sweep_targets([target], options, on_batch=batches.append))
    [result] = [r for batch in batches for r in batch.results]
    return result


@pytest.fixture(params=[probe_one, sweep_one], ids=["probe", "sweep"])
def prober(request: pytest.FixtureRequest) -> Prober:
    return request.param  # type: ignore[no-any-return]


def subject_cn(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_rsa_leaf_with_intermediate(prober: Prober, endpoints: Endpoints, pki: Pki) -> None:
    result = prober(endpoints.rsa, endpoints.port, None)
    assert result.error is None and result.is_tls
    assert result.tls_version == "TLSv1.3"
    assert result.cipher and result.cipher.startswith("TLS_")
    assert result.chain == (pki.rsa_leaf.der, pki.intermediate.der)
    assert result.leaf == pki.rsa_leaf.der
    assert (result.ip, result.port, result.host_name) == (endpoints.rsa, endpoints.port, None)


@pytest.mark.parametrize(
    ("name", "chain"),
    [
        ("ec", ["ec_leaf", "intermediate"]),
        ("missing_intermediate", ["ec_leaf"]),
        ("self_signed", ["self_signed"]),
        ("expired", ["expired_leaf", "intermediate"]),
        ("misordered", ["ec_leaf", "root", "intermediate"]),
        ("ipv6", ["ec_leaf", "intermediate"]),
    ],
)
def test_presented_chain_is_kept_whole_and_in_order(
    prober: Prober, endpoints: Endpoints, pki: Pki, name: str, chain: list[str]
) -> None:
    result = prober(getattr(endpoints, name), endpoints.port, None)
    assert result.error is None
    assert result.chain == tuple(getattr(pki, item).der for item in chain)


def test_tls12_only_server(prober: Prober, endpoints: Endpoints) -> None:
    result = prober(endpoints.tls12_only, endpoints.port, None)
    assert result.tls_version == "TLSv1.2"
    assert result.cipher and "ECDSA" in result.cipher
    assert len(result.chain) == 2


def test_legacy_tls10_server_is_still_recorded(prober: Prober, endpoints: Endpoints) -> None:
    result = prober(endpoints.legacy, endpoints.port, None)
    assert result.error is None, result.detail
    assert result.tls_version == "TLSv1"
    assert len(result.chain) == 2


@pytest.mark.parametrize(
    ("host_name", "expected_cn"),
    [(None, "default.test"), ("alpha.test", "alpha.test"), ("beta.test", "beta.test"),
     ("other.test", "default.test")],
)  # fmt: skip
def test_sni_is_sent_only_for_host_names(
    prober: Prober, endpoints: Endpoints, host_name: str | None, expected_cn: str
) -> None:
    result = prober(endpoints.sni, endpoints.port, host_name)
    assert result.host_name == host_name
    assert subject_cn(result.chain[0]) == expected_cn


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("http", ErrorKind.NOT_TLS),
        ("ssh", ErrorKind.NOT_TLS),
        ("closing", ErrorKind.NOT_TLS),
        ("closed", ErrorKind.REFUSED),
        ("silent", ErrorKind.HANDSHAKE_TIMEOUT),
        ("resetting", ErrorKind.RESET),
    ],
)
def test_failures_have_a_kind(
    prober: Prober, endpoints: Endpoints, name: str, kind: ErrorKind
) -> None:
    result = prober(getattr(endpoints, name), endpoints.port, None)
    assert result.error is kind
    assert not result.is_tls and result.chain == () and result.tls_version is None
    if kind is ErrorKind.HANDSHAKE_TIMEOUT:
        assert 0.45 < result.elapsed < 2


@pytest.fixture
def full_backlog() -> Iterator[tuple[str, int]]:
    """A listener whose accept queue is full, so further SYNs are dropped (connect timeout)."""
    with socket.socket() as listener:
        listener.bind(("127.0.10.30", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            yield address
        finally:
            for filler in fillers:
                filler.close()


def test_connect_timeout(prober: Prober, full_backlog: tuple[str, int]) -> None:
    result = prober(*full_backlog, None)
    assert result.error is ErrorKind.TIMEOUT
    assert result.chain == ()


def test_result_round_trips_through_json(endpoints: Endpoints) -> None:
    result = probe_one(endpoints.ec, endpoints.port, "ec.test")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["error"] is None and len(data["chain"]) == 2
    again = ProbeResult.from_dict(data)
    assert again.chain == result.chain
    assert abs(again.elapsed - result.elapsed) < 1e-5
    assert dataclasses.replace(again, elapsed=result.elapsed) == result
    failed = ProbeResult("127.0.0.1", 1, error=ErrorKind.REFUSED, detail="Connection refused")
    assert ProbeResult.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


def test_client_context_collects_without_trusting() -> None:
    context = make_client_context()
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version is ssl.TLSVersion.MINIMUM_SUPPORTED
    assert context.options & ssl.OP_NO_TICKET


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ECONNREFUSED, ErrorKind.REFUSED),
        (errno.ETIMEDOUT, ErrorKind.TIMEOUT),
        (errno.ECONNRESET, ErrorKind.RESET),
        (errno.EHOSTUNREACH, ErrorKind.UNREACHABLE),
        (errno.ENETUNREACH, ErrorKind.UNREACHABLE),
        (errno.EACCES, ErrorKind.UNREACHABLE),
        (None, ErrorKind.UNREACHABLE),
    ],
)
def test_connect_errors_classify(code: int | None, kind: ErrorKind) -> None:
    assert classify_errno(code) is kind


def test_handshake_errors_classify() -> None:
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert classify_handshake_error(eof) == (ErrorKind.NOT_TLS, "closed without a TLS handshake")
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version")
    alert.reason = "TLSV1_ALERT_PROTOCOL_VERSION"
    assert classify_handshake_error(alert) == (
        ErrorKind.HANDSHAKE_FAILURE,
        "tlsv1_alert_protocol_version",
    )
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert classify_handshake_error(reset) == (ErrorKind.RESET, "Connection reset by peer")


def test_a_name_that_cannot_be_sni_fails_cleanly(prober: Prober, endpoints: Endpoints) -> None:
    result = prober(endpoints.ec, endpoints.port, "a" * 300 + ".test")
    assert result.error is ErrorKind.HANDSHAKE_FAILURE
    assert result.detail and result.detail.startswith("cannot send this host name as SNI")


def test_a_server_demanding_a_client_certificate_still_shows_its_chain(
    prober: Prober, endpoints: Endpoints, pki: Pki
) -> None:
    result = prober(endpoints.client_auth, endpoints.port, "ec.test")
    assert result.error is ErrorKind.HANDSHAKE_FAILURE
    assert result.chain == (pki.ec_leaf.der, pki.intermediate.der)
    assert result.tls_version == "TLSv1.2"
    assert not result.is_tls
