"""ACME (RFC 8555) through the HTTP front door with a JWS-signing test client: EAB
registration, orders inside the delegations, http-01 validated by the worker against a
real HTTP server on 127.0.0.1 (names resolved by a real DNS server), finalize through
enrollment, the chain judged by openssl, revocation; and the hostile cases."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import socket
import ssl
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select

from app.extensions import db
from app.models import AcmeChallenge, AuditEvent, Certificate, CertStatus
from app.services.acme import external_keys
from tests.acme_client import b64, external_binding, jwk_of, sign, thumbprint
from tests.conftest import drain
from tests.dnsbed import dns_server
from tests.factories import make_admin, make_domain, make_org, make_pki

ERR = "urn:ietf:params:acme:error:"


class ChallengeServer:
    """An http-01 responder on 127.0.0.1: /.well-known/acme-challenge/<token>."""

    def __init__(self) -> None:
        answers: dict[str, str] = {}
        self.answers = answers
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.headers.get("Host", ""))
                token = self.path.rsplit("/", 1)[-1]
                body = answers.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "no").encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Acme:
    """Speaks ACME to the test client: nonces, JWS, the account URL."""

    def __init__(self, client, slug="tls", key=None, origin="http://localhost"):
        self.client = client
        self.base = f"{origin}/acme/{slug}"
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.kid = None
        self.nonce = None
        self.directory = client.get(f"{self.base}/directory").get_json()

    def fresh_nonce(self):
        response = self.client.head(self.directory["newNonce"])
        assert response.status_code == 200
        return response.headers["Replay-Nonce"]

    def post(self, url, payload, *, use_kid=True, key=None, nonce=None, **extra):
        nonce = nonce or self.nonce or self.fresh_nonce()
        self.nonce = None
        body = sign(
            key or self.key,
            payload,
            url=url,
            nonce=nonce,
            kid=self.kid if use_kid else None,
            **extra,
        )
        response = self.client.post(
            url, data=json.dumps(body), content_type="application/jose+json"
        )
        self.nonce = response.headers.get("Replay-Nonce")
        return response

    def register(self, *, key_id, hmac_key, contact=("mailto:ops@acme.example",)):
        url = self.directory["newAccount"]
        binding = external_binding(self.key, kid=key_id, hmac_key=hmac_key, url=url)
        response = self.post(
            url,
            {
                "contact": list(contact),
                "termsOfServiceAgreed": True,
                "externalAccountBinding": binding,
            },
            use_kid=False,
        )
        if response.status_code in (200, 201):
            self.kid = response.headers["Location"]
        return response

    def order(self, *names):
        return self.post(
            self.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": n} for n in names]},
        )


def problem(response, kind, status=None):
    body = response.get_json(force=True)
    assert response.content_type == "application/problem+json", response.get_data(as_text=True)
    assert body["type"] == ERR + kind, body
    if status is not None:
        assert response.status_code == status
    return body["detail"]


@pytest.fixture
def world(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    other = make_org("Other", city="Paris")
    make_domain("acme.example", by=mrao, org=org)
    make_domain("*.wild.acme.example", by=mrao, org=org)
    make_domain("other.example", by=mrao, org=other)
    _, issuing, profile = make_pki(requires_approval=False, terms=(90,), acme_slug="tls")
    created = external_keys.create_key(
        actor=mrao, organization_id=org.id, department_id=None, label="web servers"
    )
    db.session.commit()
    responder = ChallengeServer()
    with dns_server(
        {
            "www.acme.example": ["127.0.0.1"],
            "api.acme.example": ["127.0.0.1"],
            "meta.acme.example": ["169.254.169.254"],
        }
    ) as dns:
        app.config["CW_ACME_RESOLVER"] = dns.address
        app.config["CW_ACME_HTTP01_PORT"] = responder.port
        yield {
            "mrao": mrao,
            "org": org,
            "other": other,
            "profile": profile,
            "issuing": issuing,
            "key_id": created.key.key_id,
            "hmac": external_keys_bytes(created.hmac_key),
            "responder": responder,
            "worker": stub_worker,
            "dns": dns,
        }
    responder.close()


def external_keys_bytes(text):
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def registered(client, world, **kwargs):
    acme = Acme(client, **kwargs)
    assert acme.register(key_id=world["key_id"], hmac_key=world["hmac"]).status_code == 201
    return acme


def validate(acme, world, order):
    """Serve each authorization's http-01 answer and let the worker validate it."""
    for authz_url in order["authorizations"]:
        authz = acme.post(authz_url, None).get_json()
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        world["responder"].answers[chall["token"]] = f"{chall['token']}.{thumbprint(acme.key)}"
        answered = acme.post(chall["url"], {})
        assert answered.status_code == 200, answered.get_data(as_text=True)
        assert answered.get_json()["status"] == "processing"
    drain(world["worker"])


def csr_for(*names, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return b64(csr.public_bytes(Encoding.DER)), key


def test_directory_and_nonces(client, world):
    acme = Acme(client)
    assert acme.directory["meta"]["externalAccountRequired"] is True
    assert acme.directory["newOrder"] == "http://localhost/acme/tls/new-order"
    assert client.get("/acme/nope/directory").status_code == 404
    first, second = acme.fresh_nonce(), acme.fresh_nonce()
    assert first != second


def test_certificate_from_order_to_revocation(client, world, tmp_path):
    acme = registered(client, world)
    created = acme.order("www.acme.example", "api.acme.example")
    assert created.status_code == 201, created.get_data(as_text=True)
    order = created.get_json()
    order_url = created.headers["Location"]
    assert order["status"] == "pending" and len(order["authorizations"]) == 2

    not_ready = acme.post(order["finalize"], {"csr": csr_for("www.acme.example")[0]})
    problem(not_ready, "orderNotReady", 403)

    validate(acme, world, order)
    assert set(world["responder"].hits) == {
        f"www.acme.example:{world['responder'].port}",
        f"api.acme.example:{world['responder'].port}",
    }
    order = acme.post(order_url, None).get_json()
    assert order["status"] == "ready"

    wrong = acme.post(order["finalize"], {"csr": csr_for("www.acme.example", "x.acme.example")[0]})
    assert "not in the order: x.acme.example" in problem(wrong, "badCSR", 400)

    csr, key = csr_for("www.acme.example", "api.acme.example")
    finalized = acme.post(order["finalize"], {"csr": csr})
    assert finalized.status_code == 200, finalized.get_data(as_text=True)
    assert finalized.get_json()["status"] == "processing"
    drain(world["worker"])
    order = acme.post(order_url, None).get_json()
    assert order["status"] == "valid", order

    fetched = acme.post(order["certificate"], None)
    assert fetched.content_type == "application/pem-certificate-chain"
    certs = x509.load_pem_x509_certificates(fetched.data)
    leaf = certs[0]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == [
        "api.acme.example",
        "www.acme.example",
    ]
    (tmp_path / "leaf.pem").write_bytes(certs[0].public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]))
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-partial_chain",
            "-CAfile",
            tmp_path / "chain.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    row = db.session.execute(
        select(Certificate).where(Certificate.serial_hex == f"{leaf.serial_number:x}")
    ).scalar_one()
    assert row.organization_id == world["org"].id
    revoked = acme.post(
        acme.directory["revokeCert"],
        {"certificate": b64(leaf.public_bytes(Encoding.DER)), "reason": 4},
    )
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Certificate, row.id).status == CertStatus.REVOKED
    again = acme.post(
        acme.directory["revokeCert"], {"certificate": b64(leaf.public_bytes(Encoding.DER))}
    )
    problem(again, "alreadyRevoked", 400)
    actions = set(db.session.execute(select(AuditEvent.action)).scalars())
    assert {
        "acme.account.create",
        "acme.order.create",
        "acme.challenge.validate",
        "certificate.revoke",
    } <= actions


def test_revocation_by_the_certificate_key_without_an_account(client, world):
    acme = registered(client, world)
    order = acme.order("www.acme.example").get_json()
    validate(acme, world, order)
    csr, key = csr_for("www.acme.example")
    acme.post(order["finalize"], {"csr": csr})
    drain(world["worker"])
    order = acme.post(order["finalize"].rsplit("/", 1)[0], None).get_json()
    leaf = x509.load_pem_x509_certificates(acme.post(order["certificate"], None).data)[0]
    der = b64(leaf.public_bytes(Encoding.DER))
    stranger = ec.generate_private_key(ec.SECP256R1())
    refused = acme.post(
        acme.directory["revokeCert"], {"certificate": der}, use_kid=False, key=stranger
    )
    problem(refused, "unauthorized", 403)
    done = acme.post(acme.directory["revokeCert"], {"certificate": der}, use_kid=False, key=key)
    assert done.status_code == 200, done.get_data(as_text=True)


def test_external_account_binding_is_required_and_checked(client, world):
    acme = Acme(client)
    plain = acme.post(acme.directory["newAccount"], {"termsOfServiceAgreed": True}, use_kid=False)
    problem(plain, "externalAccountRequired", 401)
    wrong_mac = acme.register(key_id=world["key_id"], hmac_key=b"x" * 32)
    problem(wrong_mac, "unauthorized", 403)
    unknown = acme.register(key_id="no-such-key", hmac_key=world["hmac"])
    problem(unknown, "unauthorized", 403)
    assert acme.register(key_id=world["key_id"], hmac_key=world["hmac"]).status_code == 201
    # The same key again: the existing account (200), same URL.
    kid = acme.kid
    assert acme.register(key_id=world["key_id"], hmac_key=world["hmac"]).status_code == 200
    assert acme.kid == kid


def test_a_revoked_eab_key_stops_its_accounts(client, world):
    acme = registered(client, world)
    order_url = acme.order("www.acme.example").headers["Location"]
    order = acme.post(order_url, None).get_json()
    key = db.session.execute(
        select(external_keys.AcmeExternalKey).where(
            external_keys.AcmeExternalKey.key_id == world["key_id"]
        )
    ).scalar_one()
    external_keys.revoke_key(actor=world["mrao"], key_id=key.id)
    db.session.commit()
    assert "revoked" in problem(acme.order("www.acme.example"), "unauthorized", 403)
    # Polls and downloads check the account from its columns alone: refused the same way.
    for url in (order_url, order["authorizations"][0], acme.kid + "/orders"):
        assert "revoked" in problem(acme.post(url, None), "unauthorized", 403)


def test_a_deactivated_account_can_no_longer_poll(client, world):
    acme = registered(client, world)
    order_url = acme.order("www.acme.example").headers["Location"]
    authz_url = acme.post(order_url, None).get_json()["authorizations"][0]
    assert acme.post(acme.kid, {"status": "deactivated"}).get_json()["status"] == "deactivated"
    for url in (order_url, authz_url):
        assert "deactivated" in problem(acme.post(url, None), "unauthorized", 403)


def test_identifiers_outside_the_delegation_are_rejected(client, world):
    acme = registered(client, world)
    refused = acme.order("www.other.example")
    detail = problem(refused, "rejectedIdentifier", 400)
    assert "www.other.example" in detail
    assert refused.get_json()["identifier"] == {"type": "dns", "value": "www.other.example"}
    problem(acme.order("*.acme.example"), "rejectedIdentifier", 400)


def test_an_eab_key_of_another_organization_cannot_order_our_names(client, world):
    other_key = external_keys.create_key(
        actor=world["mrao"], organization_id=world["other"].id, department_id=None, label=""
    )
    db.session.commit()
    acme = Acme(client)
    assert (
        acme.register(
            key_id=other_key.key.key_id, hmac_key=external_keys_bytes(other_key.hmac_key)
        ).status_code
        == 201
    )
    problem(acme.order("www.acme.example"), "rejectedIdentifier", 400)


def test_hostile_requests(client, world):
    acme = registered(client, world)
    nonce = acme.fresh_nonce()
    first = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}]},
        nonce=nonce,
    )
    assert first.status_code == 201
    reused = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}]},
        nonce=nonce,
    )
    problem(reused, "badNonce", 400)
    assert reused.headers["Replay-Nonce"]

    body = sign(
        acme.key,
        {"identifiers": []},
        url=acme.directory["newOrder"],
        nonce=acme.fresh_nonce(),
        kid=acme.kid,
    )
    body["signature"] = b64(b"\x00" * 64)
    bad_sig = client.post(
        acme.directory["newOrder"], data=json.dumps(body), content_type="application/jose+json"
    )
    assert "signature" in problem(bad_sig, "malformed", 400)

    elsewhere = acme.post(
        acme.directory["newOrder"],
        {"identifiers": []},
        header={"url": acme.directory["newAccount"]},
    )
    problem(elsewhere, "unauthorized", 403)

    none_alg = acme.post(acme.directory["newOrder"], {}, header={"alg": "none"})
    problem(none_alg, "badSignatureAlgorithm", 400)

    both = acme.post(acme.directory["newOrder"], {}, header={"jwk": {"kty": "EC"}})
    assert "exactly one of jwk and kid" in problem(both, "malformed", 400)

    not_jose = client.post(acme.directory["newOrder"], data="{}", content_type="application/json")
    problem(not_jose, "malformed", 415)

    intruder = registered(client, world)
    order = acme.order("www.acme.example").get_json()
    theirs = intruder.post(order["authorizations"][0], None)
    problem(theirs, "malformed", 404)


def test_objects_are_found_only_by_their_account_and_in_their_directory(client, world):
    """Every lookup carries the account and the directory in its statement: another
    account's order, authorization, challenge and certificate, or the account's own under
    another directory's URLs, are "not found"."""
    from app.models import CertType
    from app.services.ca import profiles
    from app.services.scope import SYSTEM

    profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Other servers",
            cert_type=CertType.SSL,
            ca_id=world["issuing"].id,
            terms=(90,),
            key_types=("EC-P256",),
            requires_approval=False,
            acme_slug="other",
        ),
    )
    db.session.commit()
    acme = registered(client, world)
    order, _ = issue(acme, world, "www.acme.example")
    order_url = order["finalize"].removesuffix("/finalize")
    authz_url = order["authorizations"][0]
    chall_url = acme.post(authz_url, None).get_json()["challenges"][0]["url"]
    urls = (order_url, authz_url, chall_url, order["certificate"])
    intruder = registered(client, world)
    for url in urls:
        assert "for this account" in problem(intruder.post(url, None), "malformed", 404)
    # The same account through the other directory (its account URL there).
    other = Acme(client, slug="other", key=acme.key)
    other.kid = acme.kid.replace("/acme/tls/", "/acme/other/")
    for url in urls:
        moved = other.post(url.replace("/acme/tls/", "/acme/other/"), None)
        assert "in this directory" in problem(moved, "malformed", 404)
    assert acme.post(order["certificate"], None).status_code == 200


def test_validation_never_connects_to_a_denied_address(client, world):
    acme = registered(client, world)
    order = acme.order("meta.acme.example").get_json()
    validate(acme, world, order)
    chall = (
        db.session.execute(select(AcmeChallenge).where(AcmeChallenge.type == "http-01"))
        .scalars()
        .all()[-1]
    )
    assert chall.status == "invalid"
    assert chall.error["type"] == ERR + "rejectedIdentifier"
    assert "169.254.169.254" in chall.error["detail"]
    assert world["responder"].hits == []
    assert acme.post(order["finalize"].rsplit("/", 1)[0], None).get_json()["status"] == "invalid"


def test_a_wrong_answer_makes_the_challenge_invalid(client, world):
    acme = registered(client, world)
    order = acme.order("www.acme.example").get_json()
    authz = acme.post(order["authorizations"][0], None).get_json()
    chall = authz["challenges"][0]
    world["responder"].answers[chall["token"]] = "something else"
    acme.post(chall["url"], {})
    drain(world["worker"])
    got = acme.post(chall["url"], None).get_json()
    assert got["status"] == "invalid"
    assert got["error"]["type"] == ERR + "incorrectResponse"


def test_a_second_finalize_is_refused_and_makes_no_second_request(client, world):
    from app.models import CertificateRequest

    acme = registered(client, world)
    created = acme.order("www.acme.example")
    order = created.get_json()
    validate(acme, world, order)
    csr, _ = csr_for("www.acme.example")
    assert acme.post(order["finalize"], {"csr": csr}).status_code == 200
    again = acme.post(order["finalize"], {"csr": csr})
    problem(again, "orderNotReady", 403)
    assert len(db.session.execute(select(CertificateRequest)).scalars().all()) == 1


class TlsAlpnServer:
    """A TLS server on 127.0.0.1 presenting one certificate, choosing ALPN from ``alpn``."""

    def __init__(self, tmp_path, cert_der: bytes, key, alpn=("acme-tls/1",)) -> None:
        cert_file, key_file = tmp_path / "alpn-cert.pem", tmp_path / "alpn-key.pem"
        cert_file.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(Encoding.PEM))
        key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        if alpn:
            self.context.set_alpn_protocols(list(alpn))
        self.sni: list[str | None] = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.sock.close()


def tls_alpn_cert(name, key_auth, *, digest=None, critical=True):
    import datetime as dt
    import hashlib

    from app.acme import challenges

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "acme")])
    now = dt.datetime.now(dt.UTC)
    value = b"\x04\x20" + (digest or hashlib.sha256(key_auth.encode()).digest())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(challenges.ACME_IDENTIFIER_OID, value), critical=critical
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER), key


def answer_tls_alpn(acme, world, app, tmp_path, name, *, alpn=("acme-tls/1",), **wrong):
    """Order ``name``, present a validation certificate (wrong as asked) on a real TLS
    server and let the worker validate tls-alpn-01; the challenge as the client sees it."""
    order = acme.order(name).get_json()
    authz = acme.post(order["authorizations"][0], None).get_json()
    chall = next(c for c in authz["challenges"] if c["type"] == "tls-alpn-01")
    der, key = tls_alpn_cert(name, f"{chall['token']}.{thumbprint(acme.key)}", **wrong)
    server = TlsAlpnServer(tmp_path, der, key, alpn)
    app.config["CW_ACME_TLSALPN01_PORT"] = server.port
    try:
        assert acme.post(chall["url"], {}).get_json()["status"] == "processing"
        drain(world["worker"])
    finally:
        server.close()
    return acme.post(chall["url"], None).get_json(), server


def test_tls_alpn_01_is_validated_over_a_real_handshake(app, client, world, tmp_path):
    acme = registered(client, world)
    chall, server = answer_tls_alpn(acme, world, app, tmp_path, "www.acme.example")
    assert chall["status"] == "valid", chall
    assert server.sni == ["www.acme.example"]
    row = db.session.get(AcmeChallenge, int(chall["url"].rsplit("/", 1)[1]))
    assert "presented the acme-tls/1 certificate" in row.detail


@pytest.mark.parametrize(
    ("wrong", "kind", "said"),
    [
        ({"alpn": ()}, "tls", "did not choose ALPN acme-tls/1"),
        ({"alpn": ("h2",)}, "tls", "did not choose ALPN acme-tls/1 (chose none)"),
        ({"critical": False}, "incorrectResponse", "must be marked critical"),
        ({"digest": b"\x01" * 32}, "incorrectResponse", "does not hold the key authorization"),
    ],
)
def test_tls_alpn_01_wrong_answers_make_the_challenge_invalid(
    app, client, world, tmp_path, wrong, kind, said
):
    acme = registered(client, world)
    chall, _ = answer_tls_alpn(acme, world, app, tmp_path, "www.acme.example", **wrong)
    assert chall["status"] == "invalid"
    assert chall["error"]["type"] == ERR + kind
    assert said in chall["error"]["detail"]


def test_tls_alpn_01_never_connects_to_a_denied_address(app, client, world, tmp_path):
    acme = registered(client, world)
    chall, server = answer_tls_alpn(acme, world, app, tmp_path, "meta.acme.example")
    assert chall["error"]["type"] == ERR + "rejectedIdentifier"
    assert server.sni == []


def dns01_value(acme, chall):
    import hashlib

    key_auth = f"{chall['token']}.{thumbprint(acme.key)}"
    return b64(hashlib.sha256(key_auth.encode()).digest())


def answer_dns01(acme, world, order, *, value=None):
    """Publish each authorization's dns-01 TXT record (or ``value``) on the test DNS
    server and let the worker validate; the challenges as the client then sees them."""
    seen = []
    for authz_url in order["authorizations"]:
        authz = acme.post(authz_url, None).get_json()
        chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
        name = f"_acme-challenge.{authz['identifier']['value']}"
        world["dns"].txt.setdefault(name, []).append(value or dns01_value(acme, chall))
        assert acme.post(chall["url"], {}).get_json()["status"] == "processing"
        seen.append(chall["url"])
    drain(world["worker"])
    return [acme.post(url, None).get_json() for url in seen]


def test_a_wildcard_is_validated_by_dns_01_only_and_issued(client, world):
    acme = registered(client, world)
    created = acme.order("*.wild.acme.example", "wild.acme.example")
    assert created.status_code == 201, created.get_data(as_text=True)
    order = created.get_json()
    authzs = [acme.post(u, None).get_json() for u in order["authorizations"]]
    by_wildcard = {bool(a.get("wildcard")): a for a in authzs}
    assert by_wildcard[True]["identifier"] == {"type": "dns", "value": "wild.acme.example"}
    assert [c["type"] for c in by_wildcard[True]["challenges"]] == ["dns-01"]
    assert [c["type"] for c in by_wildcard[False]["challenges"]] == [
        "http-01",
        "tls-alpn-01",
        "dns-01",
    ]
    # Both authorizations publish at _acme-challenge.wild.acme.example (two TXT records).
    challs = answer_dns01(acme, world, order)
    assert [c["status"] for c in challs] == ["valid", "valid"], challs
    assert ("_acme-challenge.wild.acme.example", "TXT") in world["dns"].queries
    csr, _ = csr_for("*.wild.acme.example", "wild.acme.example")
    done = acme.post(order["finalize"], {"csr": csr})
    assert done.status_code == 200, done.get_data(as_text=True)
    drain(world["worker"])
    final = acme.post(order["finalize"].rsplit("/", 1)[0], None).get_json()
    assert final["status"] == "valid", final
    pem = acme.post(final["certificate"], None).get_data()
    leaf = x509.load_pem_x509_certificate(pem)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == [
        "*.wild.acme.example",
        "wild.acme.example",
    ]


def test_a_wildcard_outside_a_wildcard_delegation_is_rejected(client, world):
    acme = registered(client, world)
    problem(acme.order("*.acme.example"), "rejectedIdentifier", 400)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("not-the-digest", "not the key authorization's digest"),
        (None, "no TXT record at _acme-challenge.www.acme.example"),
    ],
)
def test_dns_01_wrong_or_missing_records_make_the_challenge_invalid(client, world, value, said):
    acme = registered(client, world)
    order = acme.order("www.acme.example").get_json()
    if value is None:
        authz = acme.post(order["authorizations"][0], None).get_json()
        chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
        acme.post(chall["url"], {})
        drain(world["worker"])
        got = acme.post(chall["url"], None).get_json()
    else:
        (got,) = answer_dns01(acme, world, order, value=value)
    assert got["status"] == "invalid"
    assert got["error"]["type"] == ERR + "incorrectResponse"
    assert said in got["error"]["detail"]


def issue(acme, world, *names):
    """Order ``names``, validate over http-01, finalize, download: (order, leaf)."""
    created = acme.order(*names)
    assert created.status_code == 201, created.get_data(as_text=True)
    order = created.get_json()
    validate(acme, world, order)
    csr, _ = csr_for(*names)
    assert acme.post(order["finalize"], {"csr": csr}).status_code == 200
    drain(world["worker"])
    order = acme.post(created.headers["Location"], None).get_json()
    assert order["status"] == "valid", order
    pem = acme.post(order["certificate"], None).get_data()
    return order, x509.load_pem_x509_certificates(pem)[0]


def ari_id(leaf):
    """RFC 9773 §4.1, computed here independently of app.acme.ari."""
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = leaf.serial_number.to_bytes(leaf.serial_number.bit_length() // 8 + 1, "big")
    return f"{b64(aki.key_identifier)}.{b64(serial)}"


def window_of(client, acme, leaf):
    got = client.get(f"{acme.directory['renewalInfo']}/{ari_id(leaf)}")
    assert got.status_code == 200, got.get_data(as_text=True)
    window = got.get_json()["suggestedWindow"]
    parse = lambda t: dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)  # noqa: E731
    return parse(window["start"]), parse(window["end"]), int(got.headers["Retry-After"])


def test_renewal_information_suggests_a_window_that_moves_earlier(client, world):
    acme = registered(client, world)
    assert acme.directory["renewalInfo"] == "http://localhost/acme/tls/renewal-info"
    _, leaf = issue(acme, world, "www.acme.example")
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    start, end, retry = window_of(client, acme, leaf)
    life = na - nb
    assert abs(start - (nb + life * 2 / 3)).total_seconds() < 2
    assert abs(end - (nb + life * 5 / 6)).total_seconds() < 2
    assert retry == 6 * 3600

    # A validity-cap change (the profile's shortest term now 30 days) moves it earlier.
    world["profile"].terms = [30]
    db.session.commit()
    capped_start, capped_end, _ = window_of(client, acme, leaf)
    assert abs(capped_start - (nb + dt.timedelta(days=20))).total_seconds() < 2
    assert capped_end < end

    # Revoked: a window that has begun already, asked again within the hour.
    cert_b64 = b64(leaf.public_bytes(Encoding.DER))
    assert acme.post(acme.directory["revokeCert"], {"certificate": cert_b64}).status_code == 200
    now = dt.datetime.now(dt.UTC)
    urgent_start, urgent_end, urgent_retry = window_of(client, acme, leaf)
    assert urgent_start < now and abs((urgent_end - now).total_seconds()) < 5
    assert urgent_retry == 3600


def test_a_retired_issuing_ca_means_renew_now(client, world):
    from app.models import CaStatus

    acme = registered(client, world)
    _, leaf = issue(acme, world, "www.acme.example")
    world["issuing"].status = CaStatus.RETIRED
    db.session.commit()
    start, _end, retry = window_of(client, acme, leaf)
    assert start < dt.datetime.now(dt.UTC) and retry == 3600


def test_renewal_information_of_unknown_or_malformed_identifiers(client, world):
    acme = Acme(client)
    base = acme.directory["renewalInfo"]
    problem(client.get(f"{base}/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"), "malformed", 404)
    problem(client.get(f"{base}/not-an-identifier"), "malformed", 400)
    problem(client.get(f"{base}/aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ"), "malformed", 400)


def test_replaces_in_new_order(client, world):
    acme = registered(client, world)
    _, leaf = issue(acme, world, "www.acme.example")
    replaced = ari_id(leaf)
    created = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}], "replaces": replaced},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["replaces"] == replaced
    again = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}], "replaces": replaced},
    )
    assert "replaces the certificate" in problem(again, "alreadyReplaced", 409)

    no_common = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "api.acme.example"}], "replaces": replaced},
    )
    problem(no_common, "rejectedIdentifier", 400)

    intruder = registered(client, world)
    theirs = intruder.post(
        intruder.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}], "replaces": replaced},
    )
    problem(theirs, "unauthorized", 403)
    unknown = acme.post(
        acme.directory["newOrder"],
        {
            "identifiers": [{"type": "dns", "value": "www.acme.example"}],
            "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        },
    )
    problem(unknown, "malformed", 400)


def key_change(acme, new_key, *, old_jwk=None, account=None, signer=None, inner_url=None):
    url = acme.directory["keyChange"]
    inner = sign(
        signer or new_key,
        {"account": account or acme.kid, "oldKey": old_jwk or jwk_of(acme.key)},
        url=inner_url or url,
        nonce=None,
        header={"jwk": jwk_of(new_key)},
    )
    return acme.post(url, inner)


def test_account_key_rollover(client, world):
    acme = registered(client, world)
    old_key, new_key = acme.key, ec.generate_private_key(ec.SECP256R1())

    other = ec.generate_private_key(ec.SECP256R1())
    assert "signature" in problem(key_change(acme, new_key, signer=other), "malformed", 400)
    assert "oldKey" in problem(key_change(acme, new_key, old_jwk=jwk_of(other)), "malformed")
    assert "account" in problem(key_change(acme, new_key, account=acme.kid + "9"), "malformed")
    problem(key_change(acme, new_key, inner_url=acme.directory["newOrder"]), "unauthorized", 403)
    taken = registered(client, world)
    assert "another account" in problem(key_change(acme, taken.key), "malformed", 409)

    changed = key_change(acme, new_key)
    assert changed.status_code == 200, changed.get_data(as_text=True)
    # The old key no longer signs for the account; the new one does.
    assert "signature" in problem(acme.order("www.acme.example"), "malformed", 400)
    acme.key = new_key
    assert acme.order("www.acme.example").status_code == 201
    again = Acme(client, key=new_key)
    found = again.post(again.directory["newAccount"], {"onlyReturnExisting": True}, use_kid=False)
    assert found.status_code == 200 and found.headers["Location"] == acme.kid
    lost = Acme(client, key=old_key)
    gone = lost.post(lost.directory["newAccount"], {"onlyReturnExisting": True}, use_kid=False)
    problem(gone, "accountDoesNotExist", 400)
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "acme.account.key_change")
    ).scalar_one()
    assert event.after == {"thumbprint": thumbprint(new_key)}


def test_new_orders_are_rate_limited_per_account(app, client, world):
    app.config["CW_ACME_ORDERS_PER_HOUR"] = 2
    acme = registered(client, world)
    assert acme.order("www.acme.example").status_code == 201
    assert acme.order("api.acme.example").status_code == 201
    limited = acme.order("www.acme.example")
    assert "the limit is 2" in problem(limited, "rateLimited", 429)
    assert 3500 < int(limited.headers["Retry-After"]) <= 3601
    assert limited.headers["Replay-Nonce"]
    other = registered(client, world)
    assert other.order("www.acme.example").status_code == 201
    app.config["CW_ACME_ORDERS_PER_HOUR"] = 0
    assert acme.order("www.acme.example").status_code == 201


def test_the_inventory_shows_acme_certificates_with_their_account_and_client(client, world):
    from tests.conftest import login
    from tests.factories import PASSWORD

    acme = registered(client, world)
    order, leaf = issue(acme, world, "www.acme.example")
    account_id = acme.kid.rsplit("/", 1)[1]
    order_id = order["finalize"].rsplit("/", 2)[1]
    cert = db.session.execute(
        select(Certificate).where(Certificate.serial_hex == f"{leaf.serial_number:x}")
    ).scalar_one()
    login(client, "mrao", PASSWORD)
    listing = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert f"ACME account #{account_id} (order #{order_id}" in listing
    # The filter's argument by its name, as the page declares it (its place in the list
    # moves when filters are added).
    arg = re.search(r'"Issued over ACME": \[\{"arg": "(\d+)"', listing)
    assert arg is not None, "no 'Issued over ACME' filter on the page"
    only_acme = client.get(f"/admin/ssl_certs/?flt0_{arg[1]}=yes").get_data(as_text=True)
    assert "www.acme.example" in only_acme
    not_acme = client.get(f"/admin/ssl_certs/?flt0_{arg[1]}=no").get_data(as_text=True)
    assert "www.acme.example" not in not_acme
    details = client.get(f"/admin/ssl_certs/details/?id={cert.id}").get_data(as_text=True)
    assert "over <strong>ACME</strong>" in details and "directory /acme/tls/" in details
    exported = client.get("/admin/ssl_certs/export/csv/").get_data(as_text=True)
    assert f"ACME: ACME account #{account_id}" in exported
    assert f'href="/admin/acme_accounts/details/?id={account_id}"' in details


def test_the_console_shows_each_account_with_its_orders_and_certificates(client, world):
    """Settings > ACME accounts > Registered accounts: the account (organization, EAB key,
    status, contact, thumbprint, created, last used, client) and its orders with their
    certificates; an RAO of another organization sees none of it."""
    from app.models import AcmeAccount, Role
    from tests.conftest import csrf_token, login
    from tests.factories import PASSWORD

    acme = registered(client, world)
    _, leaf = issue(acme, world, "www.acme.example")
    acme.order("api.acme.example")  # pending, no certificate
    account = db.session.get(AcmeAccount, int(acme.kid.rsplit("/", 1)[1]))
    assert account.last_used_at is not None
    cert = db.session.execute(
        select(Certificate).where(Certificate.serial_hex == f"{leaf.serial_number:x}")
    ).scalar_one()
    key_row = account.external_key

    login(client, "mrao", PASSWORD)
    keys = client.get("/admin/acme_keys/").get_data(as_text=True)
    assert 'id="cw-acme-accounts"' in keys and "/admin/acme_accounts/" in keys
    listing = client.get(f"/admin/acme_accounts/?flt0_eab_key_equals={key_row.id}")
    page = listing.get_data(as_text=True)
    assert listing.status_code == 200
    for shown in (
        account.thumbprint,
        world["key_id"],
        "mailto:ops@acme.example",
        "Acme",
        "Werkzeug",
        "valid",
    ):
        assert shown in page, shown
    assert f'href="/admin/acme_accounts/details/?id={account.id}#cw-acme-orders">2<' in page
    other_key = client.get("/admin/acme_accounts/?flt0_eab_key_equals=999999").get_data(
        as_text=True
    )
    assert account.thumbprint not in other_key

    details = client.get(f"/admin/acme_accounts/details/?id={account.id}").get_data(as_text=True)
    assert f"ACME account #{account.id}" in details and account.thumbprint in details
    assert "www.acme.example" in details and "api.acme.example" in details
    assert f'href="/admin/ssl_certs/details/?id={cert.id}"' in details
    assert cert.serial_hex in details and "Last used" in details

    outsider_org = world["other"]
    make_admin("stranger", Role.RAO, org=outsider_org)
    make_admin("insider", Role.RAO, org=world["org"])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login(client, "stranger", PASSWORD)
    assert account.thumbprint not in client.get("/admin/acme_accounts/").get_data(as_text=True)
    refused = client.get(f"/admin/acme_accounts/details/?id={account.id}")
    assert refused.status_code == 302
    denied = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "access.denied", AuditEvent.object_type == "AcmeAccount"
        )
    ).scalar_one()
    assert denied.object_id == str(account.id)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login(client, "insider", PASSWORD)
    assert account.thumbprint in client.get("/admin/acme_accounts/").get_data(as_text=True)
    mine = client.get(f"/admin/acme_accounts/details/?id={account.id}").get_data(as_text=True)
    assert f'href="/admin/ssl_certs/details/?id={cert.id}"' in mine


@pytest.mark.parametrize(
    ("records", "names", "allowed"),
    [
        ({}, ("www.acme.example",), True),
        ({"acme.example": ['0 issue "pki.certwright.test"']}, ("www.acme.example",), True),
        ({"acme.example": ['0 issue "letsencrypt.org"']}, ("www.acme.example",), False),
        # The record nearest the name decides.
        (
            {
                "acme.example": ['0 issue "letsencrypt.org"'],
                "www.acme.example": ['0 issue "pki.certwright.test"'],
            },
            ("www.acme.example",),
            True,
        ),
        (
            {"acme.example": ['0 issue "pki.certwright.test"', '0 issuewild ";"']},
            ("*.wild.acme.example",),
            False,
        ),
    ],
)
def test_caa_is_checked_after_the_challenge_when_configured(
    app, client, world, records, names, allowed
):
    app.config["CW_ACME_CAA_IDENTITIES"] = "pki.certwright.test, other-name.test"
    world["dns"].caa.update(records)
    acme = registered(client, world)
    order = acme.order(*names).get_json()
    (chall,) = answer_dns01(acme, world, order)
    if allowed:
        assert chall["status"] == "valid", chall
    else:
        assert chall["status"] == "invalid"
        assert chall["error"]["type"] == ERR + "caa"
        assert "acme.example: CAA issue" in chall["error"]["detail"]
    assert ("acme.example", "CAA") in world["dns"].queries or (
        "www.acme.example",
        "CAA",
    ) in world["dns"].queries


# The server as its clients reach it: scheme, host and a port of its own (behind a proxy,
# ProxyFix makes the forwarded ones the request's); every URL of the directory, the account
# URL too, is built from it.
ORIGIN = "https://pki.certwright.test:8443"


def caa_verdict(app, client, world, records, *, kind="dns-01"):
    """Publish ``records`` (a function of the account URL the client was given) at
    acme.example, then order www.acme.example and answer ``kind``: the challenge as the
    client then sees it, and the account URL."""
    app.config["CW_ACME_CAA_IDENTITIES"] = "pki.certwright.test"
    acme = registered(client, world, origin=ORIGIN)
    assert acme.kid.startswith(f"{ORIGIN}/acme/tls/acct/"), acme.kid
    world["dns"].caa["acme.example"] = records(acme.kid)
    order = acme.order("www.acme.example").get_json()
    if kind == "dns-01":
        (chall,) = answer_dns01(acme, world, order)
    else:
        validate(acme, world, order)
        authz = acme.post(order["authorizations"][0], None).get_json()
        chall = next(c for c in authz["challenges"] if c["type"] == kind)
    return chall, acme.kid


def other_account(url):
    """Another account's URL of this directory: the next number."""
    prefix, number = url.rsplit("/", 1)
    return f"{prefix}/{int(number) + 1}"


@pytest.mark.parametrize(
    ("records", "kind", "refusal"),
    [
        # RFC 8657 §3: accounturi admits exactly the account URL the client was given ...
        (lambda me: [f'0 issue "pki.certwright.test; accounturi={me}"'], "dns-01", None),
        (lambda me: [f'0 issue "pki.certwright.test; accounturi={me}"'], "http-01", None),
        # ... not another account's, nor this one's without its port
        (
            lambda me: [f'0 issue "pki.certwright.test; accounturi={other_account(me)}"'],
            "dns-01",
            "(accounturi)",
        ),
        (
            lambda me: [f'0 issue "pki.certwright.test; accounturi={me.replace(":8443", "")}"'],
            "dns-01",
            "(accounturi)",
        ),
        # §4: validationmethods admits the challenge types listed
        (lambda me: ['0 issue "pki.certwright.test; validationmethods=dns-01"'], "dns-01", None),
        (
            lambda me: ['0 issue "pki.certwright.test; validationmethods=dns-01,tls-alpn-01"'],
            "http-01",
            "(validationmethods)",
        ),
        (
            lambda me: ['0 issue "pki.certwright.test; validationmethods=http-01"'],
            "dns-01",
            "(validationmethods)",
        ),
        # several records: one admitting the request is enough
        (
            lambda me: [
                f'0 issue "pki.certwright.test; accounturi={other_account(me)}"',
                '0 issue "pki.certwright.test; validationmethods=dns-01"',
            ],
            "dns-01",
            None,
        ),
        # a malformed value admits nothing
        (
            lambda me: [f'0 issue "pki.certwright.test; accounturi={me};"'],
            "dns-01",
            "nothing by the malformed",
        ),
    ],
)
def test_caa_parameters_of_rfc_8657_are_checked(app, client, world, records, kind, refusal):
    chall, me = caa_verdict(app, client, world, records, kind=kind)
    if refusal is None:
        assert chall["status"] == "valid", chall
        return
    assert chall["status"] == "invalid", chall
    assert chall["error"]["type"] == ERR + "caa"
    detail = chall["error"]["detail"]
    assert detail.startswith("acme.example: CAA issue allows "), detail
    assert refusal in detail, detail
    assert detail.endswith(f"; this request is account {me} by {kind}"), detail


def test_the_caa_refusal_names_the_account_it_allows(app, client, world):
    chall, me = caa_verdict(
        app,
        client,
        world,
        lambda me: [f'0 issue "pki.certwright.test; accounturi={other_account(me)}"'],
    )
    assert chall["error"]["detail"] == (
        f"acme.example: CAA issue allows 'pki.certwright.test' only for account "
        f"{other_account(me)} (accounturi); this request is account {me} by dns-01"
    )


@pytest.mark.services
def test_the_order_rate_limit_on_postgresql(postgres_app):
    """The rate limit's row lock (SELECT ... FOR UPDATE) and count on PostgreSQL."""
    from app.acme import jose, messages
    from app.acme.problems import AcmeProblem
    from app.services.acme import accounts, orders

    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _, _, profile = make_pki(requires_approval=False, terms=(90,), acme_slug="tls")
    created = external_keys.create_key(
        actor=mrao, organization_id=org.id, department_id=None, label="pg"
    )
    key = ec.generate_private_key(ec.SECP256R1())
    url = "http://localhost/acme/tls/new-account"
    hmac_key = jose.b64decode(created.hmac_key, what="hmac")
    binding = external_binding(key, kid=created.key.key_id, hmac_key=hmac_key, url=url)
    account = accounts.register(
        jwk=jose.parse_jwk(jwk_of(key)),
        request=messages.NewAccount(("mailto:ops@acme.example",), True, False, binding),
        url=url,
        user_agent="pg-test",
    ).account
    db.session.commit()
    wanted = messages.parse_new_order(
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}]}
    )
    for _ in range(2):
        orders.new_order(
            account=account, profile=profile, request=wanted, user_agent="t", order_limit=2
        )
        db.session.commit()
    with pytest.raises(AcmeProblem) as refused:
        orders.new_order(
            account=account, profile=profile, request=wanted, user_agent="t", order_limit=2
        )
    db.session.rollback()
    assert refused.value.kind == "rateLimited" and 3500 < refused.value.retry_after <= 3601


def test_eab_credentials_never_start_with_a_dash(world, monkeypatch):
    """certbot --eab-hmac-key KEY and lego --eab.hmac KEY read a value starting with "-" as
    an option and refuse it: such draws are drawn again."""
    import secrets as real_secrets

    from app.acme import jose

    draws = []
    original = real_secrets.token_bytes

    def token_bytes(size: int) -> bytes:
        # The first draw of each size encodes to "-..." (0xf8: its six top bits are 62).
        value = b"\xf8" + original(size - 1) if size not in draws else original(size)
        draws.append(size)
        return value

    monkeypatch.setattr(external_keys.secrets, "token_bytes", token_bytes)
    created = external_keys.create_key(
        actor=world["mrao"], organization_id=world["org"].id, department_id=None, label="cli"
    )
    assert jose.b64encode(b"\xf8" + bytes(31)).startswith("-")
    assert not created.hmac_key.startswith("-") and not created.key.key_id.startswith("-")
    assert len(draws) >= 3  # the first draws were refused


def test_polls_and_downloads_read_their_objects_in_one_statement(client, world):
    """The requests an order repeats most: the account's key check, then the object (with
    what its answer needs) in one statement scoped by account and directory."""
    from sqlalchemy import event

    acme = registered(client, world)
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        # Only the request's, on the thread the test client gives each request
        # (tests.conftest.IsolatedClient): not the stub worker's (validating or issuing
        # meanwhile), nor another background thread's (a loaded machine once gave 4).
        if threading.current_thread().name.startswith("ThreadPoolExecutor"):
            seen.append(statement)

    def statements(url, payload=None):
        seen.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            response = acme.post(url, payload)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert response.status_code == 200, response.get_data(as_text=True)
        # Without Redis (this test), using and issuing nonces are statements of their own.
        return len([s for s in seen if "acme_nonces" not in s])

    created = acme.order("www.acme.example")
    order_url, order = created.headers["Location"], created.get_json()
    authz = acme.post(order["authorizations"][0], None).get_json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    world["responder"].answers[chall["token"]] = f"{chall['token']}.{thumbprint(acme.key)}"
    assert statements(order["authorizations"][0]) == 2
    assert statements(chall["url"], {}) == 3  # and the challenge's UPDATE
    drain(world["worker"])
    assert statements(order["authorizations"][0]) == 2
    csr, _ = csr_for("www.acme.example")
    assert acme.post(order["finalize"], {"csr": csr}).status_code == 200
    assert statements(order_url) == 2
    drain(world["worker"])
    assert statements(order_url) == 2
    certificate = acme.post(order_url, None).get_json()["certificate"]
    # The account, the certificate, then its chain: the issuing CA and the root above it.
    assert statements(certificate) == 4
