"""Sign-in, sessions, lockout, throttling, sign-out and password change, through HTTP."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AdminSession, AuditEvent
from tests.conftest import csrf_token, login
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


def test_lockout_after_repeated_failures(client, app):
    make_admin("alice")
    for _ in range(app.config["CW_LOGIN_MAX_FAILURES"]):
        login(client, "alice", "wrong-password-123")
    resp = login(client, "alice", PASSWORD)  # even the right password is refused now
    assert resp.status_code == 401
    assert "locked" in resp.get_data(as_text=True)
    assert "admin.locked" in actions()


def test_throttle_per_address(client, app):
    app.config["CW_LOGIN_IP_MAX_FAILURES"] = 3
    make_admin("alice")
    for name in ("x1", "x2", "x3"):
        login(client, name, "wrong-password-123")
    resp = login(client, "alice", PASSWORD)
    assert resp.status_code == 401
    assert "Too many failed sign-ins from this address" in resp.get_data(as_text=True)


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
