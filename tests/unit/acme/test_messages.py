"""ACME request payloads (RFC 8555 §7), problem documents and challenge values."""

from __future__ import annotations

import hashlib

import pytest

from app.acme import challenges, messages
from app.acme.problems import AcmeProblem
from tests.acme_client import b64


def test_a_new_account_reads_its_contacts_terms_and_binding():
    got = messages.parse_new_account(
        {
            "contact": ["mailto:ops@example.com"],
            "termsOfServiceAgreed": True,
            "externalAccountBinding": {"protected": "", "payload": "", "signature": ""},
        }
    )
    assert got.contact == ("mailto:ops@example.com",)
    assert got.terms_agreed and not got.only_return_existing
    assert got.external_binding is not None


@pytest.mark.parametrize(
    ("contact", "kind"),
    [
        (["tel:+1555"], "unsupportedContact"),
        (["mailto:a@example.com,b@example.com"], "invalidContact"),
        (["mailto:a@example.com?subject=x"], "invalidContact"),
        (["mailto:nobody"], "invalidContact"),
        ("mailto:a@example.com", "malformed"),
        ([f"mailto:a{i}@example.com" for i in range(5)], "invalidContact"),
    ],
)
def test_bad_contacts_are_refused_with_their_rfc_type(contact, kind):
    with pytest.raises(AcmeProblem) as caught:
        messages.parse_new_account({"contact": contact})
    assert caught.value.kind == kind


def test_post_as_get_is_not_a_new_account():
    with pytest.raises(AcmeProblem, match="needs a JSON payload"):
        messages.parse_new_account(None)


def test_a_new_order_normalises_and_deduplicates_identifiers():
    order = messages.parse_new_order(
        {
            "identifiers": [
                {"type": "dns", "value": "WWW.Example.COM"},
                {"type": "dns", "value": "www.example.com"},
                {"type": "dns", "value": "*.example.com"},
            ]
        }
    )
    assert [i.value for i in order.identifiers] == ["*.example.com", "www.example.com"]
    assert order.identifiers[0].is_wildcard and order.replaces is None


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        ({"identifiers": []}, "malformed", "non-empty"),
        ({"identifiers": [{"type": "ip", "value": "10.0.0.1"}]}, "unsupportedIdentifier", "'ip'"),
        (
            {"identifiers": [{"type": "dns", "value": "example.com."}]},
            "rejectedIdentifier",
            "DNS name",
        ),
        (
            {"identifiers": [{"type": "dns", "value": "exa_mple.com"}]},
            "rejectedIdentifier",
            "DNS name",
        ),
        (
            {"identifiers": [{"type": "dns", "value": "localhost"}]},
            "rejectedIdentifier",
            "DNS name",
        ),
        (
            {"identifiers": [{"type": "dns", "value": "a.*.example.com"}]},
            "rejectedIdentifier",
            "DNS name",
        ),
        (
            {"identifiers": [{"type": "dns", "value": "-a.example.com"}]},
            "rejectedIdentifier",
            "DNS name",
        ),
        ({"identifiers": [{"type": "dns"}]}, "malformed", "value"),
        (
            {"identifiers": [{"type": "dns", "value": "a.example"}], "notAfter": "2030-01-01"},
            "malformed",
            "notAfter",
        ),
    ],
)
def test_bad_orders_are_refused(payload, kind, message):
    with pytest.raises(AcmeProblem, match=message) as caught:
        messages.parse_new_order(payload)
    assert caught.value.kind == kind


def test_a_rejected_identifier_names_itself_in_the_problem():
    with pytest.raises(AcmeProblem) as caught:
        messages.parse_new_order({"identifiers": [{"type": "dns", "value": "bad_name.example"}]})
    assert caught.value.document()["identifier"] == {"type": "dns", "value": "bad_name.example"}


def test_finalize_and_revocation_payloads():
    assert messages.parse_finalize({"csr": b64(b"\x30\x03abc")}) == b"\x30\x03abc"
    with pytest.raises(AcmeProblem, match="base64url"):
        messages.parse_finalize({"csr": "MIIB+/=="})
    got = messages.parse_revocation({"certificate": b64(b"der"), "reason": 4})
    assert got == messages.Revocation(b"der", 4)
    assert messages.parse_revocation({"certificate": b64(b"der")}).reason == 0
    for reason in (2, 6, 7, 8, 10, True, "1"):
        with pytest.raises(AcmeProblem) as caught:
            messages.parse_revocation({"certificate": b64(b"der"), "reason": reason})
        assert caught.value.kind == "badRevocationReason"


def test_a_challenge_response_is_the_empty_object():
    assert messages.parse_challenge_response({}) is True
    assert messages.parse_challenge_response(None) is False
    with pytest.raises(AcmeProblem, match="empty object"):
        messages.parse_challenge_response({"keyAuthorization": "x"})


def test_account_updates():
    assert messages.parse_account_update(None) is None
    assert messages.parse_account_update({"status": "deactivated"}).deactivate
    update = messages.parse_account_update({"contact": ["mailto:b@example.org"]})
    assert update.contact == ("mailto:b@example.org",) and not update.deactivate
    with pytest.raises(AcmeProblem, match="deactivated"):
        messages.parse_account_update({"status": "revoked"})


def test_problem_documents_carry_the_rfc_type_and_status():
    problem = AcmeProblem("badNonce", "used")
    assert problem.document() == {
        "type": "urn:ietf:params:acme:error:badNonce",
        "detail": "used",
        "status": 400,
    }
    assert AcmeProblem("rateLimited", "slow down").status == 429
    assert AcmeProblem("unauthorized", "no").status == 403
    with pytest.raises(ValueError, match="unknown ACME error type"):
        AcmeProblem("notAType", "x")


def test_key_authorizations_and_what_each_challenge_publishes():
    token = challenges.new_token()
    assert len(token) == 43 and "=" not in token and token != challenges.new_token()
    key_auth = challenges.key_authorization(token, "thumb")
    assert key_auth == f"{token}.thumb"
    digest = hashlib.sha256(key_auth.encode()).digest()
    assert challenges.dns01_txt(key_auth) == b64(digest)
    assert challenges.tls_alpn01_digest(key_auth) == digest
    assert challenges.http01_url("www.example.com", token) == (
        f"http://www.example.com/.well-known/acme-challenge/{token}"
    )
    assert challenges.http01_url("a.example", "t", 5206) == (
        "http://a.example:5206/.well-known/acme-challenge/t"
    )
    assert challenges.http01_matches(key_auth.encode() + b"\r\n", key_auth)
    assert not challenges.http01_matches(b"x" + key_auth.encode(), key_auth)
    assert not challenges.http01_matches("é".encode(), key_auth)


@pytest.mark.parametrize(
    ("waited", "longest", "seconds"),
    [
        (0.0, 10, 1),  # just sent: ask again in a second
        (3.9, 10, 1),
        (4.0, 10, 2),  # then half the time waited so far
        (13.0, 10, 6),
        (60.0, 10, 10),  # at most `longest`
        (7200.0, 60, 60),
        (-1.0, 10, 1),  # a clock a little behind never answers 0
    ],
)
def test_retry_after_grows_with_the_wait_within_bounds(waited, longest, seconds):
    assert messages.retry_after(waited, longest=longest) == seconds
