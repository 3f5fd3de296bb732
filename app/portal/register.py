"""Registration: redeem the invitation code, then follow the key generation and download
the PKCS#12 once. Key generation runs on a worker; the progress page reloads itself
(no JavaScript needed) until the file is ready."""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Length

from app.downloads import attachment
from app.extensions import db
from app.models import EnrollmentStatus
from app.portal.forms import client_ip, refused
from app.services.errors import DomainError, NotFound
from app.services.persons import registration

bp = Blueprint("register", __name__)


class RegisterForm(FlaskForm):
    email = StringField("Email address", validators=[Length(max=254)])
    code = StringField("One-time code (from your invitation)", validators=[Length(max=120)])
    secret_id = PasswordField(
        "Secret id (only if your administrator gave you one)", validators=[Length(max=128)]
    )
    pkcs12_password = PasswordField("Certificate file password", validators=[Length(max=200)])
    pkcs12_password_again = PasswordField("The same password again", validators=[Length(max=200)])
    passphrase = PasswordField(
        "Passphrase (to revoke or renew later)", validators=[Length(max=200)]
    )
    passphrase_again = PasswordField("The same passphrase again", validators=[Length(max=200)])
    eula = BooleanField("I accept the subscriber agreement above")


# Registrations a web process handles at once (each is some 40 ms of CPU: the argon2 hash
# and the request's statements). A wave of registrations then waits its turn here, on
# threads that use no CPU and do not hold the interpreter lock, while the threads answering
# the portal's other pages get both at once (docs/portal.md, "Running it").
AT_ONCE = 1
_admission = threading.BoundedSemaphore(AT_ONCE)

TEXTS = {
    "agreement": registration.SUBSCRIBER_AGREEMENT,
    "password_policy": registration.PASSWORD_POLICY,
    "passphrase_policy": registration.PASSPHRASE_POLICY,
}


@bp.route("/enroll/register", methods=("GET", "POST"))
def register() -> Any:
    form = RegisterForm()
    if request.method == "GET":
        form.email.data = request.args.get("email", "")[:254]
    if not form.validate_on_submit():
        return render_template("portal/register.html", form=form, general=[], **TEXTS)
    data = registration.Registration(
        email=form.email.data or "",
        code=form.code.data or "",
        pkcs12_password=form.pkcs12_password.data or "",
        pkcs12_password_again=form.pkcs12_password_again.data or "",
        passphrase=form.passphrase.data or "",
        passphrase_again=form.passphrase_again.data or "",
        eula_accepted=bool(form.eula.data),
        secret_id=form.secret_id.data or "",
        ip=client_ip(),
    )
    try:
        with _admission:
            enr, token = registration.register(data=data)
            enrollment_id = enr.id  # read before the commit expires it (no reload after)
            db.session.commit()
    except DomainError as exc:
        return refused(form, exc, "portal/register.html", **TEXTS)
    return redirect(url_for(".progress", enrollment_id=enrollment_id, token=token))


class DownloadForm(FlaskForm):
    """CSRF only: the file is handed out by a POST, so a link preview cannot consume it."""


@bp.get("/enroll/progress/<int:enrollment_id>/<token>")
def progress(enrollment_id: int, token: str) -> Any:
    try:
        state = registration.progress_of(enrollment_id=enrollment_id, token=token)
    except NotFound:
        abort(404)
    ready = state.status == EnrollmentStatus.READY
    return render_template(
        "portal/progress.html",
        state=state,
        waiting=state.status == EnrollmentStatus.PENDING,
        ready=ready,
        form=DownloadForm() if ready else None,  # a waiting page needs no CSRF token
        token=token,
    )


@bp.post("/enroll/download/<int:enrollment_id>/<token>")
def download(enrollment_id: int, token: str) -> Any:
    form = DownloadForm()
    if not form.validate_on_submit():
        return redirect(url_for(".progress", enrollment_id=enrollment_id, token=token))
    try:
        result = registration.collect(enrollment_id=enrollment_id, token=token, ip=client_ip())
        db.session.commit()
    except NotFound:
        db.session.rollback()
        abort(404)
    except DomainError:
        db.session.rollback()
        return redirect(url_for(".progress", enrollment_id=enrollment_id, token=token))
    return attachment(
        result.download.content, filename=result.filename, mimetype=result.download.mime_type
    )
