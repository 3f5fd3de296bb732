"""A deliberately small ACME client for tests: it signs JWS the way RFC 8555 clients do
(written from the RFCs, independent of app.acme), and can be told to do it wrongly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def jwk_of(key: Any) -> dict[str, str]:
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return {"kty": "RSA", "n": _int(nums.n), "e": _int(nums.e)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[pub.curve.key_size]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64(nums.x.to_bytes(size, "big")),
            "y": b64(nums.y.to_bytes(size, "big")),
        }
    raw = pub.public_bytes_raw()
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def alg_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    return "EdDSA"


def thumbprint(key: Any) -> str:
    jwk = jwk_of(key)
    return b64(
        hashlib.sha256(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).digest()
    )


def raw_sign(key: Any, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        algo = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[key.curve.key_size]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algo())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign(data)


def sign(
    key: Any,
    payload: dict[str, Any] | None,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
    alg: str | None = None,
) -> dict[str, str]:
    """A flattened JWS; jwk unless kid is given; ``header`` adds or overrides members."""
    protected: dict[str, Any] = {"alg": alg or alg_of(key), "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = jwk_of(key)
    protected.update(header or {})
    protected_b64 = b64(json.dumps(protected).encode())
    payload_b64 = "" if payload is None else b64(json.dumps(payload).encode())
    signature = raw_sign(key, f"{protected_b64}.{payload_b64}".encode())
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64(signature)}


def external_binding(
    account_key: Any, *, kid: str, hmac_key: bytes, url: str, alg: str = "HS256"
) -> dict[str, str]:
    """RFC 8555 §7.3.4: the account's JWK, MACed with the EAB key."""
    protected_b64 = b64(json.dumps({"alg": alg, "kid": kid, "url": url}).encode())
    payload_b64 = b64(json.dumps(jwk_of(account_key)).encode())
    digest = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[alg]
    mac = hmac.new(hmac_key, f"{protected_b64}.{payload_b64}".encode(), digest).digest()
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64(mac)}
