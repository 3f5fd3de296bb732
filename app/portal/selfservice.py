"""Self-service with email address and passphrase: revoke one's certificates, ask for a
renewal code, and redeem it (the new key is generated on a worker, as at registration)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from app.extensions import db
from app.portal.forms import client_ip, refused
from app.services.errors import DomainError
from app.services.persons import registration, selfservice

bp = Blueprint("selfservice", __name__)


class RevokeForm(FlaskForm):
    email = StringField("Email address", validators=[Length(max=254)])
    passphrase = PasswordField("Passphrase", validators=[Length(max=200)])
    reason = SelectField(
        "Reason",
        choices=[SelectChoice(value, label) for value, label in selfservice.SUBSCRIBER_REASONS],
    )
    confirm = BooleanField("Revoke all my valid certificates for this address now")


class RenewForm(FlaskForm):
    email = StringField("Email address", validators=[Length(max=254)])
    passphrase = PasswordField("Passphrase", validators=[Length(max=200)])


class CompleteRenewalForm(FlaskForm):
    email = StringField("Email address", validators=[Length(max=254)])
    code = StringField("Renewal code (from the mail)", validators=[Length(max=120)])
    pkcs12_password = PasswordField("New certificate file password", validators=[Length(max=200)])
    pkcs12_password_again = PasswordField("The same password again", validators=[Length(max=200)])


def _creds(form: RevokeForm | RenewForm) -> selfservice.Credentials:
    return selfservice.Credentials(
        email=form.email.data or "", passphrase=form.passphrase.data or "", ip=client_ip()
    )


@bp.route("/portal/revoke", methods=("GET", "POST"))
def revoke() -> Any:
    form = RevokeForm()
    if not form.validate_on_submit():
        return render_template("portal/revoke.html", form=form, general=[])
    if not form.confirm.data:
        form.confirm.errors = [
            "Tick the box to confirm: a revoked certificate cannot be used again."
        ]
        return render_template("portal/revoke.html", form=form, general=[])
    try:
        done = selfservice.revoke(creds=_creds(form), reason=form.reason.data or "")
        db.session.commit()
    except DomainError as exc:
        return refused(form, exc, "portal/revoke.html")
    return render_template(
        "portal/done.html",
        title="Certificate revoked",
        lines=[f"Revoked: serial {c.serial_hex}" for c in done],
        note="Relying parties learn it from the CRL and OCSP at once.",
    )


@bp.route("/portal/renew", methods=("GET", "POST"))
def renew() -> Any:
    form = RenewForm()
    if not form.validate_on_submit():
        return render_template("portal/renew.html", form=form, general=[])
    try:
        old = selfservice.request_renewal(creds=_creds(form))
        db.session.commit()
    except DomainError as exc:
        return refused(form, exc, "portal/renew.html")
    return render_template(
        "portal/done.html",
        title="Check your mail",
        lines=[
            f"We sent a renewal code to {form.email.data} for the certificate with serial {old.serial_hex}."
        ],
        note="Your current certificate stays valid until you have downloaded the new one.",
    )


@bp.route("/portal/renew/complete", methods=("GET", "POST"))
def complete() -> Any:
    form = CompleteRenewalForm()
    if request.method == "GET":
        form.email.data = request.args.get("email", "")[:254]
    if not form.validate_on_submit():
        return render_template("portal/renew_complete.html", form=form, general=[], **_texts())
    data = registration.Registration(
        email=form.email.data or "",
        code=form.code.data or "",
        pkcs12_password=form.pkcs12_password.data or "",
        pkcs12_password_again=form.pkcs12_password_again.data or "",
        eula_accepted=True,  # accepted at registration; renewal asks nothing new
        ip=client_ip(),
    )
    try:
        enr, token = selfservice.complete_renewal(data=data)
        db.session.commit()
    except DomainError as exc:
        return refused(form, exc, "portal/renew_complete.html", **_texts())
    return redirect(url_for("register.progress", enrollment_id=enr.id, token=token))


def _texts() -> dict[str, str]:
    return {"password_policy": registration.PASSWORD_POLICY}
