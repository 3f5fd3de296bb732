"""JWS and JWK as ACME uses them (RFC 8555 §6.2, RFC 7515, RFC 7517, RFC 7638, RFC 8037).

Only the flattened JSON serialization, only a protected header, only the asymmetric
algorithms RS256, ES256, ES384 and EdDSA (Ed25519) for requests, HS256/384/512 for the
external account binding (§7.3.4). Written on `cryptography` directly: josepy 2.2 has no
EdDSA (no OKP keys), which RFC 8555 §6.2 asks servers to accept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from app.acme.problems import AcmeProblem

# RFC 8555 §6.2: MUST support ES256, SHOULD support EdDSA; RS256 is what certbot uses.
SIGNING_ALGORITHMS = ("RS256", "ES256", "ES384", "EdDSA")
MAC_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
# A JWS body bigger than this is refused before parsing (a CSR is the largest payload).
MAX_JWS_BYTES = 64 * 1024

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    "P-256": (ec.SECP256R1, 32, "ES256"),
    "P-384": (ec.SECP384R1, 48, "ES384"),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_EC_HASH = {"ES256": hashes.SHA256, "ES384": hashes.SHA384}


def b64decode(value: object, *, what: str) -> bytes:
    """base64url without padding (RFC 7515 §2); padding or other alphabets are refused."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise AcmeProblem("malformed", f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AcmeProblem("malformed", f"{what} is not unpadded base64url") from exc


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int(value: object, *, what: str) -> int:
    raw = b64decode(value, what=what)
    if not raw:
        raise AcmeProblem("badPublicKey", f"{what} is empty")
    return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class Jwk:
    """A public key as a JWK: the members RFC 7638 hashes, and the key itself."""

    members: tuple[tuple[str, str], ...]  # the required members, sorted (RFC 7638 §3.2)
    key: PublicKey

    @property
    def kty(self) -> str:
        return dict(self.members)["kty"]

    def as_dict(self) -> dict[str, str]:
        return dict(self.members)

    def thumbprint(self) -> str:
        """RFC 7638 SHA-256 thumbprint, base64url: the account key's identity."""
        text = json.dumps(dict(self.members), separators=(",", ":"), sort_keys=True)
        return b64encode(hashlib.sha256(text.encode("utf-8")).digest())

    def algorithms(self) -> tuple[str, ...]:
        """The signing algorithms this key may be used with."""
        if isinstance(self.key, rsa.RSAPublicKey):
            return ("RS256",)
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return (_CURVES[dict(self.members)["crv"]][2],)
        return ("EdDSA",)


def parse_jwk(value: object) -> Jwk:
    """A public JWK (RSA, EC P-256/P-384, OKP Ed25519) into a key.

    Raises:
        AcmeProblem: badPublicKey for an unsupported, private, weak or broken key;
            malformed for something that is not a JWK at all.
    """
    if not isinstance(value, dict) or not isinstance(value.get("kty"), str):
        raise AcmeProblem("malformed", "jwk is not a JSON Web Key object with a kty")
    if "d" in value or "p" in value or "k" in value:
        raise AcmeProblem("badPublicKey", "jwk carries private or symmetric key material")
    kty = value["kty"]
    if kty == "RSA":
        n, e = _int(value.get("n"), what="jwk n"), _int(value.get("e"), what="jwk e")
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise AcmeProblem(
                "badPublicKey",
                f"RSA account keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {n.bit_length()}",
            )
        if e < 3 or e % 2 == 0:
            raise AcmeProblem("badPublicKey", "the RSA public exponent must be odd and at least 3")
        try:
            rsa_key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise AcmeProblem("badPublicKey", f"unusable RSA key: {exc}") from exc
        return Jwk((("e", value["e"]), ("kty", "RSA"), ("n", value["n"])), rsa_key)
    if kty == "EC":
        crv = value.get("crv")
        if crv not in _CURVES:
            raise AcmeProblem(
                "badPublicKey", f"EC account keys must be on P-256 or P-384, not {crv!r}"
            )
        curve, size, _ = _CURVES[crv]
        x_raw = b64decode(value.get("x"), what="jwk x")
        y_raw = b64decode(value.get("y"), what="jwk y")
        if len(x_raw) != size or len(y_raw) != size:
            raise AcmeProblem("badPublicKey", f"{crv} coordinates must be {size} bytes each")
        try:
            ec_key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x_raw, "big"), int.from_bytes(y_raw, "big"), curve()
            ).public_key()
        except ValueError as exc:
            raise AcmeProblem("badPublicKey", f"the point is not on {crv}") from exc
        return Jwk((("crv", crv), ("kty", "EC"), ("x", value["x"]), ("y", value["y"])), ec_key)
    if kty == "OKP":
        if value.get("crv") != "Ed25519":
            raise AcmeProblem(
                "badPublicKey", f"OKP account keys must be Ed25519, not {value.get('crv')!r}"
            )
        x_raw = b64decode(value.get("x"), what="jwk x")
        try:
            ed_key = ed25519.Ed25519PublicKey.from_public_bytes(x_raw)
        except ValueError as exc:
            raise AcmeProblem("badPublicKey", "an Ed25519 key is 32 bytes") from exc
        return Jwk((("crv", "Ed25519"), ("kty", "OKP"), ("x", value["x"])), ed_key)
    raise AcmeProblem("badPublicKey", f"unsupported key type {kty!r} (RSA, EC or OKP)")


def verify_signature(jwk: Jwk, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``jwk``'s signature over the input with ``alg``.

    Raises:
        AcmeProblem: badSignatureAlgorithm when alg does not fit the key.
    """
    if alg not in jwk.algorithms():
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"{alg!r} cannot be used with this {jwk.kty} key (use {jwk.algorithms()[0]})",
            algorithms=SIGNING_ALGORITHMS,
        )
    key = jwk.key
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            # JWS carries ECDSA as r || s, each the curve's size (RFC 7518 §3.4).
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_EC_HASH[alg]()))
        else:
            key.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Jws:
    """A parsed, not yet verified flattened JWS: its protected header and payload."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]
    payload: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def payload_json(self) -> dict[str, Any] | None:
        """The payload as a JSON object; None for POST-as-GET (an empty payload, §6.3)."""
        if self.payload_b64 == "":
            return None
        return _json_object(self.payload, what="the JWS payload")


def _json_object(data: bytes, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AcmeProblem("malformed", f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", f"{what} is not a JSON object")
    return value


def parse_jws(body: bytes | dict[str, Any]) -> Jws:
    """A flattened JSON JWS (RFC 7515 §7.2.2) into its parts, checking its shape only.

    Raises:
        AcmeProblem: malformed for anything but a flattened JWS with a protected header,
            no unprotected header and exactly one signature.
    """
    if isinstance(body, bytes):
        if len(body) > MAX_JWS_BYTES:
            raise AcmeProblem("malformed", f"the request body is over {MAX_JWS_BYTES} bytes")
        body = _json_object(body, what="the request body")
    if "signatures" in body:
        raise AcmeProblem("malformed", "JWS with multiple signatures are not allowed (§6.2)")
    if "header" in body:
        raise AcmeProblem("malformed", "JWS unprotected headers are not allowed (§6.2)")
    if set(body) != {"protected", "payload", "signature"}:
        raise AcmeProblem(
            "malformed", "a flattened JWS has exactly protected, payload and signature"
        )
    protected_b64, payload_b64 = body["protected"], body["payload"]
    if not isinstance(protected_b64, str) or not isinstance(payload_b64, str):
        raise AcmeProblem("malformed", "the JWS protected header and payload must be strings")
    header = _json_object(
        b64decode(protected_b64, what="the JWS protected header"), what="the protected header"
    )
    return Jws(
        protected_b64,
        payload_b64,
        b64decode(body["signature"], what="the JWS signature"),
        header,
        b64decode(payload_b64, what="the JWS payload"),
    )


@dataclass(frozen=True)
class RequestHeader:
    """What an ACME request's protected header says (§6.2, §6.4, §6.5)."""

    alg: str
    nonce: str
    url: str
    jwk: Jwk | None  # the key itself: newAccount, revokeCert by certificate key
    kid: str | None  # the account URL: every other request


def check_request_header(jws: Jws, *, url: str) -> RequestHeader:
    """The header rules of §6.2 to §6.5, before any key is looked up.

    ``url`` is the URL the request was sent to; the header's must be the same.

    Raises:
        AcmeProblem: badSignatureAlgorithm (none, MAC or unknown alg), badNonce (missing or
            unreadable nonce), unauthorized (url differs), malformed (jwk and kid both or
            neither, or critical extensions).
    """
    header = jws.header
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"the JWS algorithm {alg!r} is not accepted (§6.2: no 'none', no MAC)",
            algorithms=SIGNING_ALGORITHMS,
        )
    if "crit" in header:
        raise AcmeProblem("malformed", "no JWS critical header extensions are understood")
    nonce = header.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise AcmeProblem("badNonce", "the JWS protected header has no nonce (§6.5)")
    b64decode(nonce, what="the nonce")
    if header.get("url") != url:
        raise AcmeProblem(
            "unauthorized",
            f"the JWS url {header.get('url')!r} is not the URL requested, {url!r} (§6.4)",
        )
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise AcmeProblem(
            "malformed", "the protected header must carry exactly one of jwk and kid (§6.2)"
        )
    if has_kid and not isinstance(header["kid"], str):
        raise AcmeProblem("malformed", "kid must be the account URL (a string)")
    return RequestHeader(
        alg=alg,
        nonce=nonce,
        url=url,
        jwk=parse_jwk(header["jwk"]) if has_jwk else None,
        kid=header["kid"] if has_kid else None,
    )


def verify_jws(jws: Jws, jwk: Jwk) -> None:
    """Raises AcmeProblem(malformed) unless ``jwk`` signed ``jws`` (RFC 8555 §6.2: a bad
    signature is "malformed")."""
    if not verify_signature(jwk, jws.alg, jws.signing_input, jws.signature):
        raise AcmeProblem("malformed", "the JWS signature does not verify")


def verify_key_change(inner: object, *, url: str, account_url: str, old_key: Jwk) -> Jwk:
    """RFC 8555 §7.3.5: the new account key from keyChange's inner JWS (the outer one is
    verified with the old key already): signed by the jwk in its header (no kid), the
    outer request's url, and a payload naming this account and its current key.

    Raises:
        AcmeProblem: malformed (shape, signature, account, oldKey, the same key again),
            badSignatureAlgorithm, unauthorized (url differs).
    """
    if not isinstance(inner, dict):
        raise AcmeProblem("malformed", "the keyChange payload must be a flattened JWS")
    jws = parse_jws(inner)
    header = jws.header
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"the inner JWS algorithm {alg!r} is not accepted",
            algorithms=SIGNING_ALGORITHMS,
        )
    if "crit" in header:
        raise AcmeProblem("malformed", "no JWS critical header extensions are understood")
    if "jwk" not in header or "kid" in header:
        raise AcmeProblem("malformed", "the inner JWS must carry the new key as jwk, and no kid")
    if header.get("url") != url:
        raise AcmeProblem("unauthorized", "the inner JWS url must be the keyChange URL")
    new_key = parse_jwk(header["jwk"])
    verify_jws(jws, new_key)
    payload = jws.payload_json()
    if payload is None or payload.get("account") != account_url:
        raise AcmeProblem("malformed", "the inner payload's account must be this account's URL")
    if parse_jwk(payload.get("oldKey")).thumbprint() != old_key.thumbprint():
        raise AcmeProblem("malformed", "the inner payload's oldKey is not the account's key")
    if new_key.thumbprint() == old_key.thumbprint():
        raise AcmeProblem("malformed", "the new key is the account's key already")
    return new_key


def verify_external_binding(binding: object, *, account_jwk: Jwk, url: str) -> str:
    """RFC 8555 §7.3.4: the EAB key id of a binding, once its shape is checked; the MAC
    itself is checked by ``check_binding_mac`` once the key id's HMAC key is looked up.

    Raises:
        AcmeProblem: malformed for a binding that is not a JWS over this account's key
            with a MAC algorithm, the key id and this URL, and no nonce.
    """
    if not isinstance(binding, dict):
        raise AcmeProblem("malformed", "externalAccountBinding must be a flattened JWS")
    jws = parse_jws(binding)
    header = jws.header
    if header.get("alg") not in MAC_ALGORITHMS:
        raise AcmeProblem(
            "malformed",
            f"the external account binding must use HS256, HS384 or HS512, not {header.get('alg')!r}",
        )
    if "nonce" in header or "jwk" in header:
        raise AcmeProblem(
            "malformed", "the external account binding header has no nonce and no jwk (§7.3.4)"
        )
    if header.get("url") != url:
        raise AcmeProblem("malformed", "the external account binding url is not newAccount's")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", "the external account binding has no key id (kid)")
    inner = parse_jwk(_json_object(jws.payload, what="the external account binding payload"))
    if inner.thumbprint() != account_jwk.thumbprint():
        raise AcmeProblem(
            "unauthorized", "the external account binding is for a different account key"
        )
    return kid


def check_binding_mac(binding: dict[str, Any], hmac_key: bytes) -> bool:
    """Whether the binding's MAC is right for ``hmac_key`` (constant-time comparison)."""
    jws = parse_jws(binding)
    digest = MAC_ALGORITHMS[str(jws.header["alg"])]
    mac = hmac.new(hmac_key, jws.signing_input, digest).digest()
    return hmac.compare_digest(mac, jws.signature)
