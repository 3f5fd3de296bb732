"""Sign-in and sign-out of administrators (the console itself is Flask-Admin)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app.extensions import db, login_manager
from app.models import Admin
from app.services.accounts import sessions
from app.services.accounts.sessions import SignInRefused, SignInThrottled

bp = Blueprint("auth", __name__)
SESSION_KEY = "cw_sid"


class LoginForm(FlaskForm):
    login = StringField("Login", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def client_ip() -> str:
    # Behind a proxy, configure werkzeug's ProxyFix (CW_PROXY_HOPS) so this is the client.
    return request.remote_addr or ""


def safe_next(target: str | None) -> str:
    """Only same-site paths: never an open redirect ("/\\evil.example" is "//evil.example"
    to a browser), never a control character (CR/LF would split the Location header)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("admin.index")


@login_manager.user_loader
def load_admin(user_id: str) -> Admin | None:
    admin = sessions.load_session(session.get(SESSION_KEY))
    if admin is None or str(admin.id) != user_id:
        return None
    return admin


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            admin = sessions.authenticate(
                login=form.login.data.strip(), password=form.password.data, ip=client_ip()
            )
        except SignInRefused as exc:
            db.session.commit()  # keep the failure count and the audit event
            form.password.errors = [exc.message]
            page = render_template("auth/login.html", form=form)
            if isinstance(exc, SignInThrottled):
                return page, exc.status, {"Retry-After": str(exc.retry_after)}
            return page, exc.status
        token = sessions.start_session(
            admin=admin, ip=client_ip(), user_agent=request.headers.get("User-Agent", "")
        )
        db.session.commit()
        # A fresh session on every sign-in: nothing set before it survives (fixation).
        session.clear()
        session[SESSION_KEY] = token
        session.permanent = True
        login_user(admin)
        if admin.must_change_password:
            return redirect(url_for("profile.index"))
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    admin = current_user._get_current_object() if current_user.is_authenticated else None
    sessions.end_session(token=session.get(SESSION_KEY), admin=admin)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/")
def root() -> Any:
    return redirect(url_for("admin.index"))


# What an administrator who must choose a new password may still reach.
PASSWORD_CHANGE_ENDPOINTS = {
    "profile.index",
    "auth.logout",
    "auth.login",
    "static",
    "assets.favicon",
}


def require_password_change() -> Any:
    """Someone else chose this administrator's password: nothing else until they change it."""
    if (
        current_user.is_authenticated
        and current_user.must_change_password
        and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS
        and not (request.endpoint or "").startswith("admin.static")
    ):
        flash("Choose your own password before you continue.", "warning")
        return redirect(url_for("profile.index"))
    return None


def init_login(app: Any) -> None:
    app.before_request(require_password_change)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open the console."
    login_manager.session_protection = None  # server-side sessions already bind sign-ins
