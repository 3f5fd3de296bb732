"""API administrators: created in the console and with `flask admin create --type API`,
with source networks; their credentials authenticate REST API calls only (not the console);
the rate limit per API administrator answers 429 with Retry-After; request size limits."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AdminKind, AuditEvent, Role
from app.services.accounts import admins, api_access
from app.services.accounts.sessions import SignInRefused, authenticate
from app.services.errors import DomainError
from app.services.scope import SYSTEM
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_org

HEADERS = {"login": "deploy-bot", "password": "the-bot-password-1", "customerUri": "certwright"}


def make_bot(**fields):
    admin = admins.create_admin(
        actor=SYSTEM,
        login="deploy-bot",
        email="bot@example.com",
        role=Role.MRAO,
        password="the-bot-password-1",
        kind=AdminKind.API,
        **fields,
    )
    db.session.commit()
    return admin


def run(app, *args, env=None):
    result = app.test_cli_runner().invoke(args=list(args), env=env or {})
    return result.exit_code, result.output


def test_cli_creates_an_api_administrator_with_networks(app, client):
    make_org("Acme")
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "deploy-bot",
        "--email",
        "bot@example.com",
        "--role",
        "RAO",
        "--scope",
        "Acme:ssl",
        "--type",
        "API",
        "--network",
        "127.0.0.0/8",
        "--network",
        "2001:db8::/32",
        env={"CW_NEW_ADMIN_PASSWORD": "the-bot-password-1"},
    )
    assert code == 0, out
    assert "Created RAO API account 'deploy-bot'" in out
    bot = db.session.execute(select(Admin).where(Admin.login == "deploy-bot")).scalar_one()
    assert bot.kind == AdminKind.API and bot.api_networks == ["127.0.0.0/8", "2001:db8::/32"]
    assert client.get("/api/organization/v1", headers=HEADERS).status_code == 200
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "person",
        "--email",
        "p@example.com",
        "--role",
        "MRAO",
        "--network",
        "10.0.0.0/8",
        env={"CW_NEW_ADMIN_PASSWORD": "a-human-secret-1"},
    )
    assert code == 2 and "Source networks apply to API administrators only." in out


def test_console_creates_an_api_administrator(client):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/admins/new/")
    page = client.post(
        "/admin/admins/new/",
        data={
            "login": "deploy-bot",
            "email": "bot@example.com",
            "role": "MRAO",
            "kind": "API",
            "api_networks": "192.0.2.0/24\n127.0.0.1",
            "password": "the-bot-password-1",
            "must_change_password": "y",
            "csrf_token": token,
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Administrator &#39;deploy-bot&#39; created." in page
    bot = db.session.execute(select(Admin).where(Admin.login == "deploy-bot")).scalar_one()
    assert bot.kind == AdminKind.API and bot.api_networks == ["127.0.0.1/32", "192.0.2.0/24"]
    # An API administrator has no console sign-in to choose a new password at.
    assert bot.must_change_password is False
    assert client.get("/api/organization/v1", headers=HEADERS).status_code == 200
    event = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "admin.create", AuditEvent.object_id == str(bot.id)
        )
    ).scalar_one()
    assert event.after["kind"] == "API" and event.after["api_networks"] == [
        "127.0.0.1/32",
        "192.0.2.0/24",
    ]
    token = csrf_token(client, "/admin/admins/new/")
    page = client.post(
        "/admin/admins/new/",
        data={
            "login": "other-bot",
            "email": "bot2@example.com",
            "role": "MRAO",
            "kind": "API",
            "api_networks": "not-a-network",
            "password": "the-bot-password-1",
            "csrf_token": token,
        },
    ).get_data(as_text=True)
    assert (
        "&#39;not-a-network&#39; is not an IP network" in page
        or "'not-a-network' is not an IP network" in page
    )


def test_api_credentials_never_open_the_console(app):
    make_bot()
    try:
        authenticate(login="deploy-bot", password="the-bot-password-1", ip="127.0.0.1")
    except SignInRefused as exc:
        assert "API account" in exc.message
    else:
        raise AssertionError("an API administrator signed in to the console")
    db.session.rollback()


def test_a_changed_password_or_disabled_account_takes_effect_at_the_next_call(app, client):
    bot = make_bot()
    assert client.get("/api/organization/v1", headers=HEADERS).status_code == 200
    admins.update_admin(
        actor=make_admin("mrao"),
        admin_id=bot.id,
        email=bot.email,
        full_name="",
        role=Role.MRAO,
        active=True,
        grants=[],
        new_password="a-new-bot-password-2",
    )
    db.session.commit()
    assert client.get("/api/organization/v1", headers=HEADERS).status_code == 401
    fresh = {**HEADERS, "password": "a-new-bot-password-2"}
    assert client.get("/api/organization/v1", headers=fresh).status_code == 200
    bot = db.session.get(Admin, bot.id)
    bot.active = False
    db.session.commit()
    assert client.get("/api/organization/v1", headers=fresh).status_code == 401


def test_source_networks_are_checked_per_call(app, client):
    make_bot(api_networks=["192.0.2.0/24"])
    answer = client.get("/api/organization/v1", headers=HEADERS)  # the test client is 127.0.0.1
    assert answer.status_code == 401 and answer.get_json() == {
        "code": -16,
        "description": "Unknown user",
    }
    answer = client.get(
        "/api/organization/v1", headers=HEADERS, environ_base={"REMOTE_ADDR": "192.0.2.9"}
    )
    assert answer.status_code == 200
    try:
        api_access.normalize_networks(["10.0.0.300/8"])
    except DomainError as exc:
        assert exc.field == "api_networks"
    else:
        raise AssertionError("an invalid network was accepted")


def test_rate_limit_per_api_administrator(app, client):
    app.config["CW_API_RATE_LIMIT"] = 3
    make_bot()
    for _ in range(3):
        assert client.get("/api/organization/v1", headers=HEADERS).status_code == 200
    answer = client.get("/api/organization/v1", headers=HEADERS)
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert (
        answer.get_json()["code"] == 0 and "at most 3 a minute" in answer.get_json()["description"]
    )


def test_request_size_limit(app, client):
    app.config["CW_API_MAX_BODY"] = 1024
    make_bot()
    answer = client.post(
        "/api/domain/v1",
        headers=HEADERS,
        data=b"{" + b" " * 2048 + b"}",
        content_type="application/json",
    )
    assert answer.status_code == 413
    assert answer.get_json()["code"] == -1601


def test_about_shows_the_customer_uri_scripts_send(client):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    page = client.get("/admin/about/").get_data(as_text=True)
    assert "customer URI <code>certwright</code>" in page and "/api</code>" in page


def test_housekeeping_forgets_idempotency_keys_after_a_day(app):
    from datetime import timedelta

    from app.models import ApiIdempotencyKey
    from app.models.types import utcnow
    from app.services.certificates import orders

    bot = make_bot()
    now = utcnow()
    db.session.add_all(
        [
            ApiIdempotencyKey(
                admin_id=bot.id, key="key:old", body_hash="a", created_at=now - timedelta(hours=25)
            ),
            ApiIdempotencyKey(
                admin_id=bot.id, key="key:new", body_hash="b", created_at=now - timedelta(hours=23)
            ),
        ]
    )
    db.session.commit()
    assert orders.forget_old_keys() == 1
    db.session.commit()
    assert [k.key for k in db.session.execute(select(ApiIdempotencyKey)).scalars()] == ["key:new"]


def test_a_forwarded_client_certificate_is_believed_only_from_a_proxy_on_this_host(app, client):
    """/private/api takes the certificate header only from a loopback peer with proxies
    declared (CW_PROXY_HOPS); otherwise it is anyone's header, refused before any lookup."""
    make_bot()
    headers = {
        "login": "deploy-bot",
        "customerUri": "certwright",
        "X-SSL-Client-Cert": "-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----",
    }
    for hops, peer in ((0, "127.0.0.1"), (1, "192.0.2.9")):
        app.config["CW_PROXY_HOPS"] = hops
        answer = client.get(
            "/private/api/organization/v1", headers=headers, environ_base={"REMOTE_ADDR": peer}
        )
        assert answer.status_code == 401 and answer.get_json()["code"] == -16
    app.config["CW_PROXY_HOPS"] = 0
    # the password headers do not open /private/api, and /api does not take a certificate
    answer = client.get("/private/api/organization/v1", headers={**HEADERS, **headers})
    assert answer.status_code == 401
    answer = client.get("/api/organization/v1", headers={**headers, "password": ""})
    assert answer.status_code == 401
    messages = [
        e.message
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "signin.failure")
        ).scalars()
    ]
    assert sum("only taken from a TLS proxy on this host" in m for m in messages) == 3, messages
