"""ACME replay nonces (RFC 8555 §6.5) in both stores: Redis (SET NX with the nonce's
remaining life, nonces carrying their own expiry and MAC) and the database (a row per
nonce, one conditional DELETE). Two apps on one database and one Redis stand for two web
processes: a nonce one issued is accepted by the other once, and by nobody after, however
many requests race for it."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterator

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from app import create_app
from app.acme import jose
from app.config import acme_nonce_store
from app.extensions import db
from app.services.acme import nonces
from app.settings import SettingError
from tests.acme_client import sign
from tests.conftest import make_config
from tests.factories import make_pki

REDIS = os.environ.get("CW_TEST_REDIS", "redis://127.0.0.1:6379/5")
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture
def redis_store(monkeypatch) -> Iterator[str]:
    """The test Redis, under a namespace of this test's own (its keys deleted after)."""
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis is not reachable at {REDIS}: {exc}")
    namespace = f"cw-test-{secrets.token_hex(4)}"
    monkeypatch.setenv("CW_REDIS_NAMESPACE", namespace)
    yield namespace
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["database", "redis"])
def processes(request, app: Flask) -> Iterator[tuple[Flask, Flask, str]]:
    """Two apps on the test's database with one nonce store: (first, second, store)."""
    store = "database"
    if request.param == "redis":
        request.getfixturevalue("redis_store")
        store = REDIS
    app.config["CW_ACME_NONCE_STORE"] = store
    app.extensions.pop("cw_acme_nonces", None)
    other = create_app(
        make_config(app.config["SQLALCHEMY_DATABASE_URI"], CW_ACME_NONCE_STORE=store)
    )
    yield app, other, store
    with other.app_context():
        db.engine.dispose()


def _issue(app: Flask) -> str:
    with app.app_context():
        value = nonces.new_nonce()
        db.session.commit()
        return value


def _use(app: Flask, value: str) -> bool:
    with app.app_context():
        accepted = nonces.use_nonce(value)
        db.session.commit()
        return accepted


def test_a_nonce_is_accepted_once_by_any_process(processes):
    first, second, store = processes
    value = _issue(first)
    if store != "database":  # expiry + random + MAC, nothing stored until used
        assert len(jose.b64decode(value, what="nonce")) == 40
    assert _use(second, value) is True
    assert _use(first, value) is False
    assert _use(second, value) is False
    assert _use(first, _issue(second)) is True


def test_racing_requests_with_one_nonce_accept_it_once(processes):
    first, second, _ = processes
    value = _issue(first)
    gate, accepted = threading.Barrier(8), []

    def race(app: Flask) -> None:
        gate.wait()
        accepted.append(_use(app, value))

    threads = [threading.Thread(target=race, args=((first, second)[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(accepted) == [False] * 7 + [True]


def test_unknown_forged_and_expired_nonces_are_refused(processes):
    first, second, store = processes
    value = _issue(first)
    for wrong in (
        "",
        "x" * 65,
        "not base64url!",
        value[:-2] + ("AA" if value[-2:] != "AA" else "BA"),
    ):
        assert _use(second, wrong) is False
    if store != "database":
        with first.app_context():
            redis_nonces = nonces._redis(first)
            body = (1).to_bytes(8, "big") + secrets.token_bytes(16)  # expired in 1970
            expired = jose.b64encode(body + redis_nonces._tag(body))
        assert _use(second, expired) is False
    assert _use(second, value) is True


def test_used_redis_nonces_expire_with_the_nonce(app, redis_store):
    app.config["CW_ACME_NONCE_STORE"] = REDIS
    app.extensions.pop("cw_acme_nonces", None)
    value = _issue(app)
    assert _use(app, value) is True
    client = redis.Redis.from_url(REDIS)
    ttl = client.ttl(f"{redis_store}:acme-used-nonce:{value}")
    assert 3590 < ttl <= 3600  # the nonce's remaining life, then Redis forgets it
    client.close()


def test_the_front_door_refuses_a_reused_nonce_with_redis(app, client, redis_store):
    app.config["CW_ACME_NONCE_STORE"] = REDIS
    app.extensions.pop("cw_acme_nonces", None)
    make_pki(requires_approval=False, terms=(90,), acme_slug="tls")
    db.session.commit()
    directory = client.get("/acme/tls/directory").get_json()
    nonce = client.head(directory["newNonce"]).headers["Replay-Nonce"]
    key = ec.generate_private_key(ec.SECP256R1())
    url = directory["newAccount"]

    def new_account():
        body = sign(key, {"termsOfServiceAgreed": True}, url=url, nonce=nonce)
        return client.post(url, data=json.dumps(body), content_type="application/jose+json")

    first = new_account()  # the nonce was good: refused for the missing EAB
    assert first.get_json()["type"] == ERR + "externalAccountRequired"
    again = new_account()
    assert again.status_code == 400 and again.get_json()["type"] == ERR + "badNonce"
    assert again.headers["Replay-Nonce"] != nonce  # a fresh one to retry with


def test_an_unreachable_redis_is_a_server_error_not_a_replay(app, client):
    app.config["CW_ACME_NONCE_STORE"] = "redis://127.0.0.1:1/0"
    app.extensions.pop("cw_acme_nonces", None)
    make_pki(requires_approval=False, terms=(90,), acme_slug="tls")
    db.session.commit()
    directory = client.get("/acme/tls/directory").get_json()
    nonce = client.head(directory["newNonce"]).headers["Replay-Nonce"]  # issuing needs no Redis
    key = ec.generate_private_key(ec.SECP256R1())
    url = directory["newAccount"]
    body = sign(key, {"termsOfServiceAgreed": True}, url=url, nonce=nonce)
    answer = client.post(url, data=json.dumps(body), content_type="application/jose+json")
    assert answer.status_code == 503
    assert answer.get_json()["type"] == ERR + "serverInternal"
    assert "nonce store (Redis) cannot be reached" in answer.get_json()["detail"]


def test_the_store_setting():
    assert acme_nonce_store("", "") == "database"
    assert acme_nonce_store("", "amqp://guest@mq/") == "database"
    assert acme_nonce_store("", "redis://cache:6379/2") == "redis://cache:6379/2"
    assert acme_nonce_store("database", "redis://cache:6379/2") == "database"
    assert acme_nonce_store("rediss://r:6380/1", "") == "rediss://r:6380/1"
    with pytest.raises(SettingError, match="CW_ACME_NONCE_STORE='memcached://x'"):
        acme_nonce_store("memcached://x", "")
