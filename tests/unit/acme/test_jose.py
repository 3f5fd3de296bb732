"""JWS verification and JWK thumbprints (RFC 8555 §6.2, RFC 7638), hostile input included."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app.acme import jose
from app.acme.problems import AcmeProblem
from tests.acme_client import b64, external_binding, jwk_of, sign

URL = "https://ca.example/acme/p/new-account"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEYS = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


def verified(body):
    jws = jose.parse_jws(json.dumps(body).encode())
    header = jose.check_request_header(jws, url=URL)
    jose.verify_jws(jws, header.jwk)
    return jws, header


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_each_algorithm_verifies_and_its_payload_reads(alg):
    key = KEYS[alg]()
    jws, header = verified(sign(key, {"contact": []}, url=URL, nonce=b64(b"n1")))
    assert header.alg == alg and header.nonce == b64(b"n1") and header.kid is None
    assert jws.payload_json() == {"contact": []}


def test_rfc7638_thumbprint_of_the_rfcs_example():
    # RFC 7638 §3.1: this key's thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qv"
        "zqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    jwk = jose.parse_jwk({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})
    assert jwk.thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_thumbprint_ignores_member_order_and_extra_members():
    key = ec.generate_private_key(ec.SECP256R1())
    plain = jwk_of(key)
    shuffled = dict(reversed(list({**plain, "use": "sig"}.items())))
    assert jose.parse_jwk(plain).thumbprint() == jose.parse_jwk(shuffled).thumbprint()


def test_a_bad_signature_is_malformed(rsa_key):
    body = sign(rsa_key, {"a": 1}, url=URL, nonce="bm9uY2U")
    body["payload"] = b64(b'{"a": 2}')
    with pytest.raises(AcmeProblem) as caught:
        verified(body)
    assert caught.value.kind == "malformed" and "signature" in caught.value.detail


def test_another_keys_signature_does_not_verify():
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    body = sign(key, {}, url=URL, nonce="bm9uY2U", header={"jwk": jwk_of(other)})
    with pytest.raises(AcmeProblem, match="does not verify"):
        verified(body)


@pytest.mark.parametrize("alg", ["none", "HS256", "PS256", "ES512", "", None])
def test_none_mac_and_unknown_algorithms_are_refused(rsa_key, alg):
    body = sign(rsa_key, {}, url=URL, nonce="bm9uY2U", header={"alg": alg})
    if alg == "none":
        body["signature"] = ""
    with pytest.raises(AcmeProblem) as caught:
        verified(body)
    assert caught.value.kind == "badSignatureAlgorithm"
    assert caught.value.document()["algorithms"] == ["RS256", "ES256", "ES384", "EdDSA"]


def test_an_algorithm_that_does_not_fit_the_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    body = sign(key, {}, url=URL, nonce="bm9uY2U", header={"alg": "ES384"})
    with pytest.raises(AcmeProblem) as caught:
        verified(body)
    assert caught.value.kind == "badSignatureAlgorithm" and "ES256" in caught.value.detail


def test_a_mismatched_url_is_unauthorized(rsa_key):
    body = sign(rsa_key, {}, url="https://ca.example/acme/p/new-order", nonce="bm9uY2U")
    with pytest.raises(AcmeProblem) as caught:
        verified(body)
    assert caught.value.kind == "unauthorized" and "new-order" in caught.value.detail


@pytest.mark.parametrize("nonce", [None, "", "not base64!", 7])
def test_a_missing_or_unreadable_nonce_is_bad_nonce(rsa_key, nonce):
    body = sign(rsa_key, {}, url=URL, nonce=None, header={} if nonce is None else {"nonce": nonce})
    with pytest.raises(AcmeProblem) as caught:
        verified(body)
    assert caught.value.kind in ("badNonce", "malformed")
    if nonce is None or nonce == "" or nonce == 7:
        assert caught.value.kind == "badNonce"


def test_both_jwk_and_kid_or_neither_is_malformed(rsa_key):
    both = sign(rsa_key, {}, url=URL, nonce="bm9uY2U", header={"kid": "https://ca/acct/1"})
    with pytest.raises(AcmeProblem, match="exactly one of jwk and kid"):
        verified(both)
    neither = sign(rsa_key, {}, url=URL, nonce="bm9uY2U", kid="x", header={"kid": None})
    protected = json.loads(jose.b64decode(neither["protected"], what="p"))
    del protected["kid"]
    neither["protected"] = b64(json.dumps(protected).encode())
    with pytest.raises(AcmeProblem, match="exactly one of jwk and kid"):
        verified(neither)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"header": {"alg": "RS256"}}, "unprotected headers"),
        ({"signatures": []}, "multiple signatures"),
        ({"extra": 1}, "exactly protected, payload and signature"),
        ({"payload": "eyJhIjoxfQ=="}, "base64url"),
        ({"protected": "!!"}, "base64url"),
        ({"protected": b64(b"[1, 2]")}, "not a JSON object"),
    ],
)
def test_shapes_other_than_a_flattened_jws_are_malformed(rsa_key, change, message):
    body = {**sign(rsa_key, {}, url=URL, nonce="bm9uY2U"), **change}
    with pytest.raises(AcmeProblem, match=message) as caught:
        verified(body)
    assert caught.value.kind == "malformed"


def test_crit_headers_are_refused(rsa_key):
    body = sign(rsa_key, {}, url=URL, nonce="bm9uY2U", header={"crit": ["b64"], "b64": False})
    with pytest.raises(AcmeProblem, match="critical"):
        verified(body)


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        (lambda k: {**jwk_of(k), "d": "AAAA"}, "private"),
        (lambda k: {"kty": "oct", "k": "AAAA"}, "private or symmetric"),
        (lambda k: {**jwk_of(k), "crv": "P-521"}, "P-256 or P-384"),
        (lambda k: {**jwk_of(k), "y": jwk_of(k)["x"]}, "not on P-256"),
        (lambda k: {**jwk_of(k), "x": b64(b"\x01" * 31)}, "32 bytes"),
        (lambda k: {"kty": "OKP", "crv": "X25519", "x": b64(b"\x01" * 32)}, "Ed25519"),
        (lambda k: {"kty": "XYZ"}, "unsupported key type"),
    ],
)
def test_hostile_or_unsupported_keys_are_bad_public_keys(jwk, message):
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AcmeProblem, match=message) as caught:
        jose.parse_jwk(jwk(key))
    assert caught.value.kind == "badPublicKey"


def test_small_rsa_keys_are_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(AcmeProblem, match="2048 to 8192 bits, not 1024"):
        jose.parse_jwk(jwk_of(small))


def test_an_external_binding_names_its_key_and_its_mac_is_checked(rsa_key):
    account = jose.parse_jwk(jwk_of(rsa_key))
    binding = external_binding(rsa_key, kid="kid-1", hmac_key=b"k" * 32, url=URL)
    assert jose.verify_external_binding(binding, account_jwk=account, url=URL) == "kid-1"
    assert jose.check_binding_mac(binding, b"k" * 32)
    assert not jose.check_binding_mac(binding, b"x" * 32)


def test_an_external_binding_for_another_key_or_url_is_refused(rsa_key):
    other = ec.generate_private_key(ec.SECP256R1())
    account = jose.parse_jwk(jwk_of(rsa_key))
    binding = external_binding(other, kid="kid-1", hmac_key=b"k" * 32, url=URL)
    with pytest.raises(AcmeProblem, match="different account key") as caught:
        jose.verify_external_binding(binding, account_jwk=account, url=URL)
    assert caught.value.kind == "unauthorized"
    elsewhere = external_binding(rsa_key, kid="kid-1", hmac_key=b"k" * 32, url=URL + "x")
    with pytest.raises(AcmeProblem, match="url"):
        jose.verify_external_binding(elsewhere, account_jwk=account, url=URL)


def test_an_external_binding_signed_with_an_account_key_is_refused(rsa_key):
    account = jose.parse_jwk(jwk_of(rsa_key))
    binding = sign(rsa_key, jwk_of(rsa_key), url=URL, nonce=None, kid="kid-1")
    with pytest.raises(AcmeProblem, match="HS256, HS384 or HS512, not 'RS256'"):
        jose.verify_external_binding(binding, account_jwk=account, url=URL)
