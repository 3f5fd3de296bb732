"""The ACME front door (RFC 8555): one directory per ACME-enabled profile at
/acme/<slug>/directory. Handlers are thin: parse and verify the JWS (app.acme), call the
ACME services, commit, answer JSON or a problem document with a fresh Replay-Nonce."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, current_app, jsonify, request, url_for

from app.acme import jose, messages
from app.acme.problems import CONTENT_TYPE, AcmeProblem
from app.extensions import csrf, db
from app.models import AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeOrder, CertificateProfile
from app.services import audit
from app.services.acme import accounts, nonces, orders, renewal

bp = Blueprint("acme", __name__, url_prefix="/acme/<slug>")
csrf.exempt(bp)  # JWS-signed requests from ACME clients, not forms

JOSE = "application/jose+json"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _url(endpoint: str, slug: str, **values: Any) -> str:
    return url_for(f"acme.{endpoint}", slug=slug, _external=True, **values)


def _fresh_nonce() -> str:
    value = nonces.new_nonce()
    db.session.commit()
    return value


def _finish(response: Response, slug: str) -> Response:
    """The fresh nonce is stored in the request's own transaction, and this one commit
    stores what the handler changed with it: handlers build their answer (a JSON body of
    rows still loaded) and leave the commit to this, so nothing is read again after it."""
    response.headers["Replay-Nonce"] = _fresh_nonce()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Link"] = f'<{_url("directory", slug)}>;rel="index"'
    return response


@bp.errorhandler(AcmeProblem)
def problem(exc: AcmeProblem) -> Response:
    db.session.rollback()
    response = jsonify(exc.document())
    response.status_code = exc.status
    response.content_type = CONTENT_TYPE
    if exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return _finish(response, str(request.view_args.get("slug", "")) if request.view_args else "")


def _profile(slug: str) -> CertificateProfile:
    return orders.profile_by_slug(slug)


@bp.get("/directory")
def directory(slug: str) -> Response:
    _profile(slug)
    body = {
        "newNonce": _url("new_nonce", slug),
        "newAccount": _url("new_account", slug),
        "newOrder": _url("new_order", slug),
        "revokeCert": _url("revoke_cert", slug),
        "keyChange": _url("key_change", slug),
        # RFC 9773 §3: clients append "/<certID>".
        "renewalInfo": _url("renewal_info", slug, cert_id="x")[:-2],
        "meta": {"externalAccountRequired": True},
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.get("/renewal-info/<path:cert_id>")
def renewal_info(slug: str, cert_id: str) -> Response:
    """RFC 9773 §4: the suggested renewal window of one of our certificates (unsigned GET;
    the identifier is public: the issuer's key id and the serial)."""
    _profile(slug)
    window = renewal.renewal_info(cert_id)
    db.session.rollback()
    response = jsonify({"suggestedWindow": {"start": _iso(window.start), "end": _iso(window.end)}})
    response.headers["Retry-After"] = str(int(window.retry_after.total_seconds()))
    return response


@bp.route("/new-nonce", methods=["HEAD", "GET"])
def new_nonce(slug: str) -> Response:
    _profile(slug)
    response = _finish(Response(status=200 if request.method == "HEAD" else 204), slug)
    return response


@dataclass(frozen=True)
class Signed:
    """A verified request: its payload, and its account (kid: ``account_id``, and the
    account itself unless the handler said it needs only the id) or key (jwk)."""

    payload: dict[str, Any] | None
    account: AcmeAccount | None
    jwk: jose.Jwk | None
    account_id: int | None = None


def _verified(
    slug: str, *, allow_jwk: bool = False, require_jwk: bool = False, account: bool = True
) -> Signed:
    """§6.2-§6.5 in order: content type, JWS shape and header (pure), nonce (used up and
    committed, whatever comes next), then the key: the account's (kid) or the header's.
    ``account=False``: the handler uses only the account's id (polls, downloads), so the
    account is checked from the columns the check needs, without loading it."""
    if request.mimetype != JOSE:
        raise AcmeProblem("malformed", f"the Content-Type must be {JOSE}", status=415)
    jws = jose.parse_jws(request.get_data(cache=False))
    header = jose.check_request_header(jws, url=request.base_url)
    used = nonces.use_nonce(header.nonce)
    if nonces.in_database():
        # Used up for good, whatever comes next. Redis's SET NX is final by itself, and a
        # commit here would expire the rows the handler loaded already (its profile).
        db.session.commit()
    if not used:
        raise AcmeProblem("badNonce", "the nonce is unknown, expired or already used")
    if header.jwk is not None:
        if not allow_jwk:
            raise AcmeProblem("malformed", "this request must be signed by an account (kid)")
        jose.verify_jws(jws, header.jwk)
        return Signed(jws.payload_json(), None, header.jwk)
    if require_jwk:
        raise AcmeProblem("malformed", "newAccount must carry the account key (jwk), not a kid")
    prefix = _url("account", slug, account_id=0)[:-1]
    kid = str(header.kid)
    if not kid.startswith(prefix) or not kid[len(prefix) :].isdigit():
        raise AcmeProblem("accountDoesNotExist", f"{kid!r} is not an account URL of this directory")
    account_id = int(kid[len(prefix) :])
    if account_id >= 2**63:
        raise AcmeProblem("accountDoesNotExist", f"no account #{account_id}")
    if not account:
        signer = accounts.authenticate_key(account_id)
        jose.verify_jws(jws, jose.parse_jwk(signer.jwk))
        return Signed(jws.payload_json(), None, None, account_id)
    found = accounts.authenticate(account_id)
    jose.verify_jws(jws, jose.parse_jwk(found.jwk))
    return Signed(jws.payload_json(), found, None, account_id)


def _as_account(account: AcmeAccount, slug: str) -> dict[str, Any]:
    return {
        "status": account.status,
        "contact": list(account.contact),
        "orders": _url("account_orders", slug, account_id=account.id),
        "externalAccountBinding": {"keyId": account.external_key.key_id},
    }


def _json(body: dict[str, Any], slug: str, *, status: int = 200, location: str = "") -> Response:
    response = jsonify(body)
    response.status_code = status
    if location:
        response.headers["Location"] = location
    return _finish(response, slug)


def _acting(account_id: int | None, fn: Callable[[], Response]) -> Response:
    label = f"ACME account #{account_id}" if account_id is not None else "ACME (certificate key)"
    with audit.source(ip=request.remote_addr or "", label=label):
        return fn()


@bp.post("/new-account")
def new_account(slug: str) -> Response:
    _profile(slug)
    signed = _verified(slug, allow_jwk=True, require_jwk=True)
    assert signed.jwk is not None
    with audit.source(ip=request.remote_addr or "", label="ACME newAccount"):
        done = accounts.register(
            jwk=signed.jwk,
            request=messages.parse_new_account(signed.payload),
            url=request.base_url,
            user_agent=request.user_agent.string,
        )
        db.session.commit()
    account = done.account
    return _json(
        _as_account(account, slug),
        slug,
        status=201 if done.created else 200,
        location=_url("account", slug, account_id=account.id),
    )


@bp.post("/acct/<int:account_id>")
def account(slug: str, account_id: int) -> Response:
    signed = _verified(slug)
    assert signed.account is not None
    if signed.account.id != account_id:
        raise AcmeProblem("unauthorized", "the JWS is signed by another account")

    def act() -> Response:
        change = messages.parse_account_update(signed.payload)
        if change is not None:
            accounts.update_account(account=signed.account, change=change)  # type: ignore[arg-type]
            db.session.commit()
        return _json(_as_account(signed.account, slug), slug)  # type: ignore[arg-type]

    return _acting(signed.account_id, act)


@bp.post("/key-change")
def key_change(slug: str) -> Response:
    """§7.3.5: the outer JWS signed by the account's current key (kid), the inner by the
    new key (jwk)."""
    _profile(slug)
    signed = _verified(slug)
    assert signed.account is not None
    account_url = _url("account", slug, account_id=signed.account.id)

    def act() -> Response:
        new_key = jose.verify_key_change(
            signed.payload,
            url=request.base_url,
            account_url=account_url,
            old_key=jose.parse_jwk(signed.account.jwk),  # type: ignore[union-attr]
        )
        accounts.change_key(account=signed.account, new_key=new_key)  # type: ignore[arg-type]
        db.session.commit()
        return _json(_as_account(signed.account, slug), slug)  # type: ignore[arg-type]

    return _acting(signed.account_id, act)


@bp.post("/acct/<int:account_id>/orders")
def account_orders(slug: str, account_id: int) -> Response:
    signed = _verified(slug, account=False)
    assert signed.account_id is not None
    if signed.account_id != account_id:
        raise AcmeProblem("unauthorized", "the JWS is signed by another account")
    ids = db.session.execute(
        db.select(AcmeOrder.id)
        .where(
            AcmeOrder.account_id == account_id,
            AcmeOrder.status.in_(("pending", "ready", "processing")),
        )
        .order_by(AcmeOrder.id)
        .limit(1000)
    ).scalars()
    return _json({"orders": [_url("order", slug, order_id=i) for i in ids]}, slug)


def _as_order(order: AcmeOrder, slug: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": order.status,
        "expires": _iso(order.expires_at),
        "identifiers": order.identifiers,
        "authorizations": [
            _url("authorization", slug, authz_id=a.id) for a in order.authorizations
        ],
        "finalize": _url("finalize", slug, order_id=order.id),
    }
    if order.replaces:
        body["replaces"] = order.replaces
    if order.status == "valid":
        body["certificate"] = _url("certificate", slug, order_id=order.id)
    if order.error:
        body["error"] = order.error
    return body


@bp.post("/new-order")
def new_order(slug: str) -> Response:
    profile = _profile(slug)
    signed = _verified(slug)
    assert signed.account is not None

    def act() -> Response:
        order = orders.new_order(
            account=signed.account,  # type: ignore[arg-type]
            profile=profile,
            request=messages.parse_new_order(signed.payload),
            user_agent=request.user_agent.string,
            order_limit=int(current_app.config["CW_ACME_ORDERS_PER_HOUR"]),
        )
        return _json(
            _as_order(order, slug),
            slug,
            status=201,
            location=_url("order", slug, order_id=order.id),
        )

    return _acting(signed.account_id, act)


@bp.post("/order/<int:order_id>")
def order(slug: str, order_id: int) -> Response:
    signed = _verified(slug, account=False)
    assert signed.account_id is not None
    found, state = orders.load_order(account_id=signed.account_id, order_id=order_id, slug=slug)
    wait = orders.retry_after(found, state)  # read before _json's commit expires the rows
    return _retry_after(_json(_as_order(found, slug), slug), wait)


def _retry_after(response: Response, seconds: int | None) -> Response:
    """RFC 8555 §7.4, §8.2: when to ask again about an object the server works on."""
    if seconds is not None:
        response.headers["Retry-After"] = str(seconds)
    return response


def _as_challenge(chall: AcmeChallenge, slug: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": chall.type,
        "url": _url("challenge", slug, challenge_id=chall.id),
        "status": chall.status,
        "token": chall.token,
    }
    if chall.validated_at is not None:
        body["validated"] = _iso(chall.validated_at)
    if chall.error:
        body["error"] = chall.error
    return body


def _as_authorization(authz: AcmeAuthorization, slug: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": {"type": "dns", "value": authz.identifier},
        "status": authz.status,
        "expires": _iso(authz.expires_at),
        "challenges": [_as_challenge(c, slug) for c in authz.challenges],
    }
    if authz.wildcard:
        body["wildcard"] = True  # §7.1.4: the identifier is the domain without "*."
    return body


@bp.post("/authz/<int:authz_id>")
def authorization(slug: str, authz_id: int) -> Response:
    signed = _verified(slug, account=False)
    assert signed.account_id is not None
    authz = orders.get_authorization(account_id=signed.account_id, authz_id=authz_id, slug=slug)
    body, wait = _as_authorization(authz, slug), orders.retry_after(authz)
    return _retry_after(_json(body, slug), wait)


@bp.post("/chall/<int:challenge_id>")
def challenge(slug: str, challenge_id: int) -> Response:
    signed = _verified(slug, account=False)
    assert signed.account_id is not None

    def act() -> Response:
        if messages.parse_challenge_response(signed.payload):
            chall = orders.respond(
                account_id=signed.account_id,  # type: ignore[arg-type]
                challenge_id=challenge_id,
                account_url=_url("account", slug, account_id=signed.account_id),
                slug=slug,
            )
        else:
            chall = orders.get_challenge(
                account_id=signed.account_id,  # type: ignore[arg-type]
                challenge_id=challenge_id,
                slug=slug,
            )
        up = _url("authorization", slug, authz_id=chall.authorization_id)
        body, wait = _as_challenge(chall, slug), orders.retry_after(chall)
        response = _retry_after(_json(body, slug), wait)
        response.headers["Link"] += f', <{up}>;rel="up"'
        return response

    return _acting(signed.account_id, act)


@bp.post("/order/<int:order_id>/finalize")
def finalize(slug: str, order_id: int) -> Response:
    signed = _verified(slug)
    assert signed.account is not None

    def act() -> Response:
        done = orders.finalize(
            account=signed.account,  # type: ignore[arg-type]
            order_id=order_id,
            csr_der=messages.parse_finalize(signed.payload),
            slug=slug,
        )
        # The answer from the rows as finalize left them; _json's one commit stores them
        # with the request (and sends the issuance message after it).
        body, wait = _as_order(done, slug), orders.retry_after(done)
        return _retry_after(_json(body, slug, location=_url("order", slug, order_id=done.id)), wait)

    return _acting(signed.account_id, act)


@bp.post("/cert/<int:order_id>")
def certificate(slug: str, order_id: int) -> Response:
    signed = _verified(slug, account=False)
    assert signed.account_id is not None
    if signed.payload is not None:
        raise AcmeProblem("malformed", "fetch the certificate with POST-as-GET (empty payload)")
    cert, chain = orders.certificate_of(account_id=signed.account_id, order_id=order_id, slug=slug)
    pem = x509.load_der_x509_certificate(cert.der).public_bytes(Encoding.PEM)
    pem += b"".join(c.public_bytes(Encoding.PEM) for c in chain)
    response = Response(pem, mimetype="application/pem-certificate-chain")
    return _finish(response, slug)


@bp.post("/revoke-cert")
def revoke_cert(slug: str) -> Response:
    _profile(slug)
    signed = _verified(slug, allow_jwk=True)

    def act() -> Response:
        orders.revoke(
            account=signed.account,
            jwk=signed.jwk,
            request=messages.parse_revocation(signed.payload),
        )
        db.session.commit()
        return _finish(Response(status=200), slug)

    return _acting(signed.account_id, act)
