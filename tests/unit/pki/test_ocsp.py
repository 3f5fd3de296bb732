"""OCSP responder logic, judged by cryptography and `openssl ocsp`."""

from __future__ import annotations

import base64
import datetime as dt
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

from app.pki import issue, names, ocsp, status_lint
from app.pki.errors import LintError, OcspRequestError, RevocationPolicyError
from app.pki.issuer import Issuer
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl, Pkilint, WritePem

REVOKED_AT = dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
R = x509.ReasonFlags


@pytest.fixture(scope="module")
def leaves(hierarchy: Hierarchy, key_cache: KeyCache) -> tuple[x509.Certificate, x509.Certificate]:
    def make() -> x509.Certificate:
        return issue.issue_leaf(
            hierarchy.issuing,
            public_key=key_cache.get("EC-P256").public_key(),
            subject=names.build_subject(common_name="ocsp.certwright.test"),
            alt_names=names.AltNames(),
            profile=LEAF_PROFILES[CertKind.SSL],
            serial=issue.new_serial(),
            term_days=30,
        )

    return make(), make()


def _statuses(revoked: int) -> Callable[[Issuer, int], ocsp.StatusLookup]:
    def lookup(_issuer: Issuer, serial: int) -> ocsp.StatusLookup:
        if serial == revoked:
            return ocsp.StatusLookup(
                ocsp.CertStatus.REVOKED, REVOKED_AT, x509.ReasonFlags.superseded
            )
        return ocsp.GOOD

    return lookup


def _request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    algo: hashes.HashAlgorithm,
    nonce: bytes | None = None,
) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def _verify_signature(response: x509_ocsp.OCSPResponse, issuer: Issuer) -> None:
    key = issuer.certificate.public_key()
    algo = response.signature_hash_algorithm
    assert algo is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algo)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algo))


def test_openssl_sees_good_and_revoked(
    hierarchy: Hierarchy,
    leaves: tuple[x509.Certificate, x509.Certificate],
    openssl: Openssl,
    write_pem: WritePem,
    tmp_path: Path,
) -> None:
    good, revoked = leaves
    root = str(write_pem("root.pem", [hierarchy.root.certificate]))
    issuing = str(write_pem("issuing.pem", [hierarchy.issuing.certificate]))
    issuers = [hierarchy.root, hierarchy.issuing]
    for digest in ("-sha1", "-sha256"):
        for cert, expected in ((good, ": good"), (revoked, ": revoked")):
            leaf = str(write_pem("leaf.pem", [cert]))
            request_path, response_path = tmp_path / "req.der", tmp_path / "resp.der"
            made = openssl(
                "ocsp", "-issuer", issuing, digest, "-cert", leaf, "-reqout", str(request_path)
            )
            assert made.returncode == 0, made.stderr
            answer = ocsp.respond(
                request_path.read_bytes(),
                issuers,
                _statuses(revoked.serial_number),
                valid_for=DAY,
            )
            response_path.write_bytes(answer)
            # The request's nonce must come back, and the signature chain to our root.
            echoed = openssl(
                "ocsp", "-reqin", str(request_path), "-respin", str(response_path),
                "-CAfile", root, "-verify_other", issuing,
            )  # fmt: skip
            assert echoed.returncode == 0, echoed.stdout + echoed.stderr
            assert "Response verify OK" in echoed.stderr
            assert "Nonce Verify error" not in echoed.stdout + echoed.stderr
            shown = openssl(
                "ocsp", "-issuer", issuing, digest, "-cert", leaf, "-respin", str(response_path),
                "-no_nonce", "-VAfile", issuing,
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert f"{leaf}{expected}" in shown.stdout
            if cert is revoked:
                assert "Reason: superseded" in shown.stdout
                assert "Revocation Time: Nov  1 08:30:00 2026 GMT" in shown.stdout


def test_build_response_for_cache(hierarchy: Hierarchy) -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    der = ocsp.build_response(
        hierarchy.issuing, serial=0x77, lookup=ocsp.GOOD, valid_for=DAY, now=now
    )
    response = x509_ocsp.load_der_ocsp_response(der)
    assert response.response_status is x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == 0x77
    assert response.this_update_utc == now
    assert response.next_update_utc == now + DAY
    name_hash, key_hash = hierarchy.issuing.cert_id_hashes["sha1"]
    assert (response.issuer_name_hash, response.issuer_key_hash) == (name_hash, key_hash)
    assert response.responder_key_hash == key_hash  # RFC 6960 §4.2.2.3 byKey
    assert response.certificates == []
    assert len(response.extensions) == 0
    _verify_signature(response, hierarchy.issuing)


def test_unspecified_reason_is_omitted_and_unknown_status(ec_hierarchy: Hierarchy) -> None:
    revoked = ocsp.StatusLookup(ocsp.CertStatus.REVOKED, REVOKED_AT, x509.ReasonFlags.unspecified)
    response = x509_ocsp.load_der_ocsp_response(
        ocsp.build_response(ec_hierarchy.issuing, serial=3, lookup=revoked, valid_for=DAY)
    )
    assert response.certificate_status is x509_ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None
    assert response.revocation_time_utc == REVOKED_AT
    unknown = x509_ocsp.load_der_ocsp_response(
        ocsp.build_response(ec_hierarchy.issuing, serial=4, lookup=ocsp.UNKNOWN, valid_for=DAY)
    )
    assert unknown.certificate_status is x509_ocsp.OCSPCertStatus.UNKNOWN


def test_status_lookup_validation() -> None:
    with pytest.raises(ValueError, match="revoked_at is required for, and only for"):
        ocsp.StatusLookup(ocsp.CertStatus.REVOKED)
    with pytest.raises(ValueError, match="revoked_at is required for, and only for"):
        ocsp.StatusLookup(ocsp.CertStatus.GOOD, REVOKED_AT)


def test_nonce_and_cache(
    hierarchy: Hierarchy, leaves: tuple[x509.Certificate, x509.Certificate]
) -> None:
    good = leaves[0]
    issuer = hierarchy.issuing
    served: list[tuple[int, str]] = []

    def cached(_issuer: Issuer, serial: int, hash_name: str) -> bytes | None:
        served.append((serial, hash_name))
        return b"cached-response"

    plain = _request(good, issuer.certificate, hashes.SHA256())
    answer = ocsp.respond(plain, [issuer], _statuses(0), valid_for=DAY, cached=cached)
    assert answer == b"cached-response"
    assert served == [(good.serial_number, "sha256")]
    with_nonce = _request(good, issuer.certificate, hashes.SHA1(), nonce=b"n" * 32)
    fresh = ocsp.respond(with_nonce, [issuer], _statuses(0), valid_for=DAY, cached=cached)
    assert len(served) == 1  # a nonce always gets a freshly signed response
    response = x509_ocsp.load_der_ocsp_response(fresh)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32
    assert response.certificate_status is x509_ocsp.OCSPCertStatus.GOOD


def test_malformed_and_unauthorized(
    rsa_hierarchy: Hierarchy,
    ec_hierarchy: Hierarchy,
    key_cache: KeyCache,
) -> None:
    def status(der: bytes) -> x509_ocsp.OCSPResponseStatus:
        return x509_ocsp.load_der_ocsp_response(der).response_status

    lookup = _statuses(0)
    malformed = x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert (
        status(ocsp.respond(b"junk", [rsa_hierarchy.issuing], lookup, valid_for=DAY)) is malformed
    )
    assert status(ocsp.respond(b"", [rsa_hierarchy.issuing], lookup, valid_for=DAY)) is malformed
    long_nonce = _request(
        rsa_hierarchy.root.certificate, rsa_hierarchy.root.certificate, hashes.SHA1(), b"x" * 33
    )
    assert (
        status(ocsp.respond(long_nonce, [rsa_hierarchy.root], lookup, valid_for=DAY)) is malformed
    )
    # A certificate of the EC hierarchy asked of a responder serving only the RSA CAs.
    foreign = _request(
        ec_hierarchy.issuing.certificate, ec_hierarchy.root.certificate, hashes.SHA1()
    )
    unauthorized = ocsp.respond(foreign, [rsa_hierarchy.issuing], lookup, valid_for=DAY)
    assert status(unauthorized) is x509_ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert ocsp.unauthorized_response() == unauthorized
    assert status(ocsp.malformed_response()) is malformed
    assert status(ocsp.internal_error_response()) is x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_parse_request_messages(rsa_hierarchy: Hierarchy) -> None:
    with pytest.raises(OcspRequestError, match="OCSP request could not be parsed"):
        ocsp.parse_request(b"\x30\x03abc")
    with pytest.raises(OcspRequestError, match="OCSP request is empty or too large"):
        ocsp.parse_request(b"")
    root = rsa_hierarchy.root.certificate
    with pytest.raises(OcspRequestError, match="OCSP CertID hash sha512 is not supported"):
        ocsp.parse_request(_request(root, root, hashes.SHA512()))
    with pytest.raises(OcspRequestError, match="OCSP nonce must be 1 to 32 octets"):
        ocsp.parse_request(_request(root, root, hashes.SHA1(), b"z" * 40))
    query = ocsp.parse_request(_request(root, root, hashes.SHA1(), b"ok"))
    assert query.nonce == b"ok"
    assert query.serial == root.serial_number
    assert (
        ocsp.find_issuer(query, [rsa_hierarchy.issuing, rsa_hierarchy.root]) is rsa_hierarchy.root
    )
    assert not ocsp.is_for_issuer(query, rsa_hierarchy.issuing)


def test_multi_certificate_request_is_malformed(
    hierarchy: Hierarchy,
    leaves: tuple[x509.Certificate, x509.Certificate],
    openssl: Openssl,
    write_pem: WritePem,
    tmp_path: Path,
) -> None:
    issuing = str(write_pem("issuing.pem", [hierarchy.issuing.certificate]))
    first, second = (str(write_pem(f"leaf{i}.pem", [c])) for i, c in enumerate(leaves))
    request_path = tmp_path / "two.der"
    made = openssl(
        "ocsp", "-issuer", issuing, "-cert", first, "-cert", second, "-reqout", str(request_path)
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(OcspRequestError, match="contains more than one request"):
        ocsp.parse_request(request_path.read_bytes())
    answer = ocsp.respond(
        request_path.read_bytes(), [hierarchy.issuing], _statuses(0), valid_for=DAY
    )
    assert answer == ocsp.malformed_response()


def test_unknown_cert_id_hash(rsa_hierarchy: Hierarchy) -> None:
    root = rsa_hierarchy.root.certificate
    sha1_oid = bytes.fromhex("06052b0e03021a")
    request = _request(root, root, hashes.SHA1())
    assert request.count(sha1_oid) == 1
    unknown = request.replace(sha1_oid, bytes.fromhex("06052b0e03027f"))
    with pytest.raises(OcspRequestError, match="OCSP CertID uses an unknown hash algorithm"):
        ocsp.parse_request(unknown)
    with pytest.raises(OcspRequestError, match="OCSP CertID hash md5 is not supported"):
        ocsp.build_response(
            rsa_hierarchy.root, serial=1, lookup=ocsp.GOOD, valid_for=DAY, hash_name="md5"
        )


def test_get_path_decoding(rsa_hierarchy: Hierarchy) -> None:
    root = rsa_hierarchy.root.certificate
    der = _request(root, root, hashes.SHA1(), b"nonce-value")
    segment = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    assert ocsp.decode_get_path(segment) == der
    assert ocsp.decode_get_path(base64.urlsafe_b64encode(der).decode().rstrip("=")) == der
    with pytest.raises(OcspRequestError, match="OCSP GET path is not base64-encoded DER"):
        ocsp.decode_get_path("not base64!")
    answer = ocsp.respond(
        ocsp.decode_get_path(segment), [rsa_hierarchy.root], _statuses(0), valid_for=DAY
    )
    assert (
        x509_ocsp.load_der_ocsp_response(answer).certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    )


# -- every response linted before it is sent (RFC 6960; TLS BR 4.9.9, 7.3) -------------------


def test_responses_pass_pkilint(
    public_hierarchy: Hierarchy, pkilint: Pkilint, tmp_path: Path
) -> None:
    issuing = public_hierarchy.issuing
    responses = {
        "good": ocsp.build_response(issuing, serial=0x21, lookup=ocsp.GOOD, valid_for=DAY),
        "unknown": ocsp.build_response(issuing, serial=0x22, lookup=ocsp.UNKNOWN, valid_for=DAY),
        "revoked": ocsp.build_response(
            issuing,
            serial=0x23,
            lookup=ocsp.StatusLookup(ocsp.CertStatus.REVOKED, REVOKED_AT, R.key_compromise),
            valid_for=DAY,
            nonce=b"0123456789abcdef",
            hash_name="sha256",
        ),
        "revoked CA": ocsp.build_response(
            public_hierarchy.root,
            serial=issuing.certificate.serial_number,
            lookup=ocsp.StatusLookup(
                ocsp.CertStatus.REVOKED, REVOKED_AT, R.ca_compromise, is_ca=True
            ),
            valid_for=DAY,
        ),
    }
    runs = []
    for index, der in enumerate(responses.values()):
        path = tmp_path / f"response{index}.der"
        path.write_bytes(der)
        runs.append(["lint", "-s", "INFO", str(path)])
    results = pkilint("lint_ocsp_response", *runs)
    for label, result in zip(responses, results, strict=True):
        assert result.returncode == 0, f"{label}: {result.stdout}"


def test_certificate_hold_response_is_refused(hierarchy: Hierarchy) -> None:
    # BR 7.3: an OCSP response carries only a reason a CRL may carry (BR 7.2.2).
    held = ocsp.StatusLookup(ocsp.CertStatus.REVOKED, REVOKED_AT, R.certificate_hold)
    with pytest.raises(RevocationPolicyError, match="certificateHold cannot be published"):
        ocsp.build_response(hierarchy.issuing, serial=0x31, lookup=held, valid_for=DAY)


def test_response_outside_the_brs_is_refused_by_lint(hierarchy: Hierarchy) -> None:
    # BR 4.9.9: at most ten days, thisUpdate..nextUpdate inclusive.
    with pytest.raises(
        LintError,
        match=r"^OCSP response refused by lint: certwright.ocsp_validity_interval_exceeds_10_days",
    ):
        ocsp.build_response(
            hierarchy.issuing, serial=0x32, lookup=ocsp.GOOD, valid_for=dt.timedelta(days=10)
        )
    ocsp.build_response(
        hierarchy.issuing,
        serial=0x32,
        lookup=ocsp.GOOD,
        valid_for=dt.timedelta(days=10, seconds=-1),
    )


def test_one_hour_responses_are_allow_listed(hierarchy: Hierarchy) -> None:
    # What the responder sends today: valid one hour, below BR 4.9.9's eight, allowed by a
    # reviewed entry (see OCSP_LINT_ALLOW_LIST).
    der = ocsp.build_response(
        hierarchy.issuing, serial=0x33, lookup=ocsp.GOOD, valid_for=dt.timedelta(hours=1)
    )
    findings = status_lint.lint_ocsp_response(der)
    assert [f.code for f in findings] == ["certwright.ocsp_validity_interval_below_8_hours"]
    assert status_lint.check_ocsp_response(der) == findings
    for code, reason in status_lint.OCSP_LINT_ALLOW_LIST.items():
        assert code.startswith("certwright.ocsp_") and len(reason) > 40


def test_lint_sees_a_ca_revocation_without_reason(hierarchy: Hierarchy) -> None:
    # Made around build_response (straight from cryptography): BR 7.3 wants the reason.
    name_hash, key_hash = hierarchy.root.cert_id_hashes["sha1"]
    raw = (
        x509_ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=hierarchy.issuing.certificate.serial_number,
            algorithm=hashes.SHA1(),
            cert_status=x509_ocsp.OCSPCertStatus.REVOKED,
            this_update=REVOKED_AT,
            next_update=REVOKED_AT + DAY,
            revocation_time=REVOKED_AT,
            revocation_reason=None,
        )
        .responder_id(x509_ocsp.OCSPResponderEncoding.HASH, hierarchy.root.certificate)
        .sign(hierarchy.root.private_key, hierarchy.root.hash_algorithm)
        .public_bytes(Encoding.DER)
    )
    codes = [f.code for f in status_lint.lint_ocsp_response(raw, for_ca_certificate=True)]
    assert codes == ["certwright.ocsp_ca_revocation_reason_absent"]
    assert status_lint.lint_ocsp_response(raw) == ()  # for a leaf, no reason is "unspecified"


# -- a CA answers for the CA certificates it signed (RFC 6960) -------------------------------


def test_root_answers_for_its_issuing_ca(
    hierarchy: Hierarchy, openssl: Openssl, write_pem: WritePem, tmp_path: Path
) -> None:
    root = str(write_pem("root.pem", [hierarchy.root.certificate]))
    issuing = str(write_pem("issuing.pem", [hierarchy.issuing.certificate]))
    request_path, response_path = tmp_path / "req.der", tmp_path / "resp.der"
    made = openssl(
        "ocsp", "-issuer", root, "-cert", issuing, "-no_nonce", "-reqout", str(request_path)
    )
    assert made.returncode == 0, made.stderr
    asked: list[tuple[Issuer, int]] = []

    def lookup(revoked: bool) -> Callable[[Issuer, int], ocsp.StatusLookup]:
        def answer(issuer: Issuer, serial: int) -> ocsp.StatusLookup:
            asked.append((issuer, serial))
            if revoked:
                return ocsp.StatusLookup(
                    ocsp.CertStatus.REVOKED, REVOKED_AT, R.ca_compromise, is_ca=True
                )
            return ocsp.StatusLookup(ocsp.CertStatus.GOOD, is_ca=True)

        return answer

    for revoked, expected in ((False, ": good"), (True, ": revoked")):
        response_path.write_bytes(
            ocsp.respond(
                request_path.read_bytes(),
                [hierarchy.issuing, hierarchy.root],
                lookup(revoked),
                valid_for=DAY,
            )
        )
        shown = openssl(
            "ocsp", "-issuer", root, "-cert", issuing, "-respin", str(response_path),
            "-CAfile", root, "-no_nonce",
        )  # fmt: skip
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "Response verify OK" in shown.stderr
        assert f"{issuing}{expected}" in shown.stdout
        if revoked:
            assert "Reason: cACompromise" in shown.stdout
    # The root's responder was asked, about the issuing CA's serial.
    assert {(i.name, s) for i, s in asked} == {
        (hierarchy.root.name, hierarchy.issuing.certificate.serial_number)
    }


def test_a_revoked_ca_certificate_needs_its_reason(hierarchy: Hierarchy) -> None:
    # BR 7.3: "revocationReason ... MUST be present" for a CA certificate.
    unspecified = ocsp.StatusLookup(ocsp.CertStatus.REVOKED, REVOKED_AT, None, is_ca=True)
    with pytest.raises(RevocationPolicyError, match="must be published with its reason"):
        ocsp.build_response(hierarchy.root, serial=0x41, lookup=unspecified, valid_for=DAY)
