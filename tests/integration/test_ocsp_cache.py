"""The responder's per-process cache of pre-produced answers (app/services/ca/ocsp.py):
good answers are reused, yet a revocation and a newly issued serial show within
CW_OCSP_CACHE_SECONDS, without anyone clearing the cache."""

from __future__ import annotations

import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

from app.extensions import db
from app.models import Certificate
from app.services import bulk
from app.services.ca import ocsp
from app.services.certificates import revocation
from tests.integration.test_pki_http import issued  # noqa: F401  (fixture)

TTL = 0.2


def ask(issued, serial=None):  # noqa: F811
    """The no-nonce answer for the issued certificate (or another serial of its CA)."""
    leaf = x509.load_der_x509_certificate(issued["cert"].der)
    ca = x509.load_der_x509_certificate(issued["issuing"].cert_der)
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build()
    if serial is not None:
        request = (
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(
                request.issuer_name_hash, request.issuer_key_hash, serial, hashes.SHA1()
            )
            .build()
        )
    der = ocsp.answer(request.public_bytes(Encoding.DER))
    db.session.commit()
    return der, x509_ocsp.load_der_ocsp_response(der).certificate_status


def test_good_answers_outlive_the_check_interval(app, issued):  # noqa: F811
    app.config["CW_OCSP_CACHE_SECONDS"] = TTL
    first, status = ask(issued)
    assert status == x509_ocsp.OCSPCertStatus.GOOD
    # Past the check interval (the CAs' CRL numbers are read again; none moved) and into
    # the next second, so that a response signed again would carry a new producedAt.
    time.sleep(1.1)
    assert ask(issued)[0] == first  # the same pre-produced response


def test_a_revocation_shows_within_the_check_interval(app, issued):  # noqa: F811
    app.config["CW_OCSP_CACHE_SECONDS"] = TTL
    assert ask(issued)[1] == x509_ocsp.OCSPCertStatus.GOOD
    revocation.revoke(
        actor=issued["mrao"], certificate_ids=[issued["cert"].id], reason="keyCompromise"
    )
    db.session.commit()  # another process, as far as this cache knows: nothing is forgotten
    time.sleep(TTL * 1.5)
    der, status = ask(issued)
    assert status == x509_ocsp.OCSPCertStatus.REVOKED
    assert (
        x509_ocsp.load_der_ocsp_response(der).revocation_reason == x509.ReasonFlags.key_compromise
    )


def test_an_unknown_serial_becomes_good_within_the_check_interval(app, issued):  # noqa: F811
    app.config["CW_OCSP_CACHE_SECONDS"] = TTL
    serial = 0x5019
    assert ask(issued, serial)[1] == x509_ocsp.OCSPCertStatus.UNKNOWN
    known = {c.key: getattr(issued["cert"], c.key) for c in Certificate.__table__.columns}
    known.update(id=None, serial_hex=f"{serial:x}", fingerprint="f" * 64, request_id=None)
    bulk.insert_rows(Certificate.__table__, [{k: v for k, v in known.items() if k != "id"}])
    db.session.commit()
    assert ask(issued, serial)[1] == x509_ocsp.OCSPCertStatus.UNKNOWN  # still cached
    time.sleep(TTL * 1.5)
    assert ask(issued, serial)[1] == x509_ocsp.OCSPCertStatus.GOOD
