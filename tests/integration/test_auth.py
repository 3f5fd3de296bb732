"""Sign-in, sessions, lockout, throttling, sign-out and password change, through HTTP."""

from __future__ import annotations

import re
import statistics
import time

from argon2 import PasswordHasher
from sqlalchemy import select, update

from app.extensions import db
from app.models import Admin, AdminSession, AuditEvent
from tests.conftest import CSRF_RE, csrf_token, login
from tests.factories import PASSWORD, make_admin


def actions() -> list[str]:
    return list(db.session.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars())


def test_anonymous_is_sent_to_sign_in(client):
    for url in [
        "/admin/",
        "/admin/organization/",
        "/admin/admins/",
        "/admin/audit/",
        "/admin/about/",
        "/admin/profile/",
    ]:
        resp = client.get(url)
        assert resp.status_code == 302, url
        assert resp.headers["Location"].startswith("/login?next="), url
    assert client.get("/").headers["Location"] == "/admin/"


def test_sign_in_sets_hardened_cookie_and_rotates_session(client):
    make_admin("alice")
    client.get("/login")
    before = client.get_cookie("certwright_session").value
    resp = login(client, "alice", PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/"
    cookie_header = next(
        h for h in resp.headers.getlist("Set-Cookie") if h.startswith("certwright_session=")
    )
    assert "HttpOnly" in cookie_header and "SameSite=Lax" in cookie_header
    after = client.get_cookie("certwright_session").value
    assert after != before
    page = client.get("/admin/").get_data(as_text=True)
    assert "alice" in page and "Dashboard" in page
    assert "signin.success" in actions()


def test_wrong_password_is_refused_and_audited(client):
    make_admin("alice")
    resp = login(client, "alice", "wrong-password-123")
    assert resp.status_code == 401
    assert "Invalid login or password." in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert actions()[-1] == "signin.failure"


def test_unknown_login_gives_the_same_message(client):
    resp = login(client, "nobody", "whatever-password")
    assert resp.status_code == 401
    assert "Invalid login or password." in resp.get_data(as_text=True)


def attempt(client, login_name, password, ip):
    """One sign-in from the given client address: (status, Retry-After, the page's answer)."""
    env = {"REMOTE_ADDR": ip}
    html = client.get("/login", environ_base=env).get_data(as_text=True)
    token = CSRF_RE.search(html)
    resp = client.post(
        "/login",
        data={
            "csrf_token": token.group(1) or token.group(2),
            "login": login_name,
            "password": password,
        },
        environ_base=env,
    )
    answer = re.search(r'class="invalid-feedback">([^<]*)<', resp.get_data(as_text=True))
    return resp.status_code, resp.headers.get("Retry-After"), answer.group(1) if answer else ""


def test_known_and_unknown_logins_get_the_same_answers(app):
    make_admin("alice")
    tries = app.config["CW_LOGIN_MAX_FAILURES"] + 3
    known = [
        attempt(app.test_client(), "alice", "wrong-password-123", "10.0.0.1") for _ in range(tries)
    ]
    unknown = [
        attempt(app.test_client(), "nobody", "wrong-password-123", "10.0.0.2") for _ in range(tries)
    ]
    assert known == unknown
    free = app.config["CW_LOGIN_MAX_FAILURES"]
    assert known[:free] == [(401, None, "Invalid login or password.")] * free
    # Then a wait, the same for both: 429 with Retry-After, and nothing about an account.
    status, retry_after, answer = known[free]
    assert status == 429 and 25 <= int(retry_after) <= 30
    assert answer.startswith("Too many failed sign-ins from this address. Try again in ")
    assert "locked" not in " ".join(a for _, _, a in known)
    assert "admin.locked" not in actions()


def test_a_stranger_cannot_lock_an_administrator_out(app):
    make_admin("alice")
    stranger = app.test_client()
    for _ in range(40):
        attempt(stranger, "alice", "wrong-password-123", "203.0.113.9")
    assert attempt(stranger, "alice", PASSWORD, "203.0.113.9")[0] == 429  # not even checked
    # Alice, from her own address, is not slowed down at all.
    status, _, _ = attempt(app.test_client(), "alice", PASSWORD, "198.51.100.7")
    assert status == 302 and actions()[-1] == "signin.success"


def test_waits_double_expire_and_a_success_clears_them(app):
    from app.models import SignInThrottle

    make_admin("alice")
    client = app.test_client()
    free = app.config["CW_LOGIN_MAX_FAILURES"]
    for _ in range(free):
        attempt(client, "alice", "wrong-password-123", "10.0.0.5")
    assert attempt(client, "alice", PASSWORD, "10.0.0.5")[0] == 429

    def wait_passes():
        db.session.execute(update(SignInThrottle).values(blocked_until=None))
        db.session.commit()

    wait_passes()
    assert attempt(client, "alice", "wrong-password-123", "10.0.0.5")[0] == 401
    status, retry_after, _ = attempt(client, "alice", "wrong-password-123", "10.0.0.5")
    assert status == 429 and 55 <= int(retry_after) <= 60  # 30 s, then 60 s
    app.config["CW_LOGIN_LOCK_MINUTES"] = 1
    wait_passes()
    attempt(client, "alice", "wrong-password-123", "10.0.0.5")
    assert int(attempt(client, "alice", PASSWORD, "10.0.0.5")[1]) <= 60  # never past the cap
    wait_passes()
    assert attempt(client, "alice", PASSWORD, "10.0.0.5")[0] == 302
    counts = dict(db.session.execute(select(SignInThrottle.login, SignInThrottle.failures)).all())
    assert counts == {"": free + 2}  # alice's count from there is cleared; the address's is not


def test_throttle_per_address_across_logins(app):
    app.config["CW_LOGIN_IP_MAX_FAILURES"] = 3
    make_admin("alice")
    client = app.test_client()
    for name in ("x1", "x2", "x3"):
        assert attempt(client, name, "wrong-password-123", "10.0.0.9")[0] == 401
    status, retry_after, answer = attempt(client, "alice", PASSWORD, "10.0.0.9")
    assert status == 429 and int(retry_after) > 0
    assert "Too many failed sign-ins from this address" in answer
    assert attempt(app.test_client(), "alice", PASSWORD, "10.0.0.10")[0] == 302


def test_throttle_holds_across_web_processes(app):
    """The counts are rows: a second application (another gunicorn process) sees them."""
    from app import create_app
    from tests.conftest import make_config

    make_admin("alice")
    other = create_app(make_config(app.config["SQLALCHEMY_DATABASE_URI"]))
    other.test_client_class = type(app.test_client())
    for _ in range(app.config["CW_LOGIN_MAX_FAILURES"]):
        attempt(app.test_client(), "alice", "wrong-password-123", "10.0.0.7")
    with other.app_context():
        try:
            assert attempt(other.test_client(), "alice", PASSWORD, "10.0.0.7")[0] == 429
        finally:
            db.session.remove()
            db.engine.dispose()


class HashSpy:
    """Records the argon2 parameters of every password verification (argon2-cffi's own
    PasswordHasher.verify, wrapped: the real work still runs)."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = PasswordHasher.verify

        def verify(hasher, hash_, password):
            self.calls.append(hash_.split("$")[3])  # "m=...,t=...,p=..."
            return real(hasher, hash_, password)

        monkeypatch.setattr(PasswordHasher, "verify", verify)


def refused(login_name, password, ip):
    from app.services.accounts import sessions

    started = time.perf_counter()
    try:
        sessions.authenticate(login=login_name, password=password, ip=ip)
    except sessions.SignInRefused as exc:
        db.session.commit()
        return time.perf_counter() - started, exc.message
    raise AssertionError("signed in")


def test_every_refusal_runs_one_hash_with_the_same_parameters(app, monkeypatch):
    make_admin("alice")
    for n in range(app.config["CW_LOGIN_MAX_FAILURES"] * 2):  # alice fails often, elsewhere
        refused("alice", "wrong-password-123", f"10.1.0.{n}")
    spy = HashSpy(monkeypatch)
    answers = {
        "unknown login": refused("nobody", "wrong-password-123", "10.2.0.1")[1],
        "bad password": refused("alice", "wrong-password-123", "10.2.0.2")[1],
        "often failing account": refused("alice", "wrong-password-123", "10.2.0.3")[1],
    }
    assert set(answers.values()) == {"Invalid login or password."}
    assert len(spy.calls) == 3 and len(set(spy.calls)) == 1


def test_unknown_and_failing_logins_take_as_long(app):
    """Medians of real (production-cost) argon2id sign-ins, with a wide bound: the old
    code answered a locked account without hashing, ten times faster."""
    from app.services.accounts import passwords

    app.config["CW_ARGON2_FAST"] = False
    make_admin("alice", password=PASSWORD)  # hashed with the production parameters
    assert (
        passwords.needs_rehash(db.session.execute(select(Admin.password_hash)).scalar_one())
        is False
    )
    for n in range(app.config["CW_LOGIN_MAX_FAILURES"]):  # what used to lock alice
        refused("alice", "wrong-password-123", f"10.3.0.{n}")
    refused("warm-up", "wrong-password-123", "10.3.1.1")  # the dummy hash is made once
    known, unknown = [], []
    for n in range(5):
        known.append(refused("alice", "wrong-password-123", f"10.4.0.{n}")[0])
        unknown.append(refused("nobody", "wrong-password-123", f"10.5.0.{n}")[0])
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2, (known, unknown)


def test_login_without_csrf_token_is_rejected(client):
    make_admin("alice")
    resp = client.post("/login", data={"login": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_sign_out_revokes_the_server_side_session(client):
    make_admin("alice")
    login(client, "alice", PASSWORD)
    stolen = client.get_cookie("certwright_session").value
    token = csrf_token(client, "/admin/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302
    # Replaying the old cookie does not bring the session back.
    client.set_cookie("certwright_session", stolen)
    assert client.get("/admin/").status_code == 302
    assert db.session.execute(select(AdminSession.revoked_at)).scalar_one() is not None
    assert "signout" in actions()


def test_logout_is_post_only(client):
    make_admin("alice")
    login(client, "alice", PASSWORD)
    assert client.get("/logout").status_code == 405


def test_next_parameter_is_not_an_open_redirect(client):
    make_admin("alice")
    token = csrf_token(client, "/login")
    resp = client.post(
        "/login?next=//evil.example/",
        data={"csrf_token": token, "login": "alice", "password": PASSWORD},
    )
    assert resp.headers["Location"] == "/admin/"


def change_password(client, current, new, confirm=None):
    token = csrf_token(client, "/admin/profile/")
    return client.post(
        "/admin/profile/",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "confirm": confirm or new,
        },
        follow_redirects=True,
    )


def test_password_change_requires_current_and_policy(client):
    make_admin("alice")
    login(client, "alice", PASSWORD)
    assert "The current password is not correct." in change_password(
        client, "nope-not-it-1", "another-good-password"
    ).get_data(as_text=True)
    assert "at least 12 characters" in change_password(client, PASSWORD, "short1").get_data(
        as_text=True
    )
    assert "must not contain the login name" in change_password(
        client, PASSWORD, "alice-is-my-password"
    ).get_data(as_text=True)
    assert "The two new passwords differ." in change_password(
        client, PASSWORD, "another-good-password", "different-one-here"
    ).get_data(as_text=True)
    assert "Your password was changed" in change_password(
        client, PASSWORD, "another-good-password"
    ).get_data(as_text=True)
    assert "admin.password_change" in actions()
    token = csrf_token(client, "/admin/")
    client.post("/logout", data={"csrf_token": token})
    assert login(client, "alice", PASSWORD).status_code == 401
    assert login(client, "alice", "another-good-password").status_code == 302


def test_password_change_signs_out_other_sessions(app):
    make_admin("alice")
    first, second = app.test_client(), app.test_client()
    login(first, "alice", PASSWORD)
    login(second, "alice", PASSWORD)
    change_password(first, PASSWORD, "another-good-password")
    assert first.get("/admin/").status_code == 200
    assert second.get("/admin/").status_code == 302


def test_time_zone_preference_changes_how_times_are_shown(client):
    make_admin("alice")
    login(client, "alice", PASSWORD)
    token = csrf_token(client, "/admin/profile/")
    page = client.post(
        "/admin/profile/timezone/",
        data={"csrf_token": token, "timezone": "Asia/Tokyo"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Times are now shown in Asia/Tokyo." in page and " JST" in page
    page = client.post(
        "/admin/profile/timezone/",
        data={"csrf_token": token, "timezone": "Mars/Olympus"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Choose a time zone from the list." in page
    assert "admin.preferences" in actions()


def test_audit_list_offers_chain_verification(client):
    make_admin("alice")
    login(client, "alice", PASSWORD)
    page = client.get("/admin/audit/").get_data(as_text=True)
    assert 'id="cw-verify-audit"' in page
    token = csrf_token(client, "/admin/audit/")
    page = client.post(
        "/admin/audit/verify/", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert 'id="cw-verify-status"' in page and "Verifying the hash chain" in page


def test_housekeeping_forgets_quiet_failure_counts(app):
    from datetime import timedelta

    from app.models import SignInThrottle
    from app.models.types import utcnow
    from app.services.accounts import sessions

    attempt(app.test_client(), "nobody", "wrong-password-123", "10.6.0.1")
    attempt(app.test_client(), "nobody", "wrong-password-123", "10.6.0.2")
    db.session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.address == "10.6.0.1")
        .values(last_failure_at=utcnow() - timedelta(minutes=61))
    )
    assert sessions.forget_old_failures() == 2  # the address's and the login's counts
    db.session.commit()
    left = db.session.execute(select(SignInThrottle.address).distinct()).scalars().all()
    assert left == ["10.6.0.2"]
