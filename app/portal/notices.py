"""The links in notification mails: acknowledge or snooze an expiry alert, and choose one
mail per notice or a daily digest, without signing in (the signed token is the authority).

GET shows a page; only its POST acts, so a mail scanner that follows links changes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from app.extensions import db
from app.services.errors import DomainError, NotFound
from app.services.notifications import acknowledgements

bp = Blueprint("notices", __name__)
SNOOZE_CHOICES = (1, 7, 30)


@bp.route("/notifications/ack/<int:delivery_id>/<token>", methods=("GET", "POST"))
def acknowledge(delivery_id: int, token: str) -> Any:
    try:
        delivery = acknowledgements.delivery_for_link(
            delivery_id=delivery_id, token=token, purpose="ack"
        )
    except NotFound:
        abort(404)
    if request.method == "POST":
        choice = request.form.get("snooze", "")
        days = int(choice) if choice.isdigit() and int(choice) in SNOOZE_CHOICES else None
        try:
            ack = acknowledgements.acknowledge_by_link(
                delivery_id=delivery_id, token=token, snooze_days=days
            )
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            flash(
                "Acknowledged: no more reminders of this rule for this certificate."
                if ack.until is None
                else f"Snoozed until {ack.until.strftime('%Y-%m-%d %H:%M UTC')}.",
                "success",
            )
        return redirect(url_for(".acknowledge", delivery_id=delivery_id, token=token))
    state = acknowledgements.ack_of(delivery.rule_id, delivery.certificate_id)
    return render_template(
        "portal/acknowledge.html", delivery=delivery, state=state, snooze=SNOOZE_CHOICES
    )


@bp.route("/notifications/preference/<int:delivery_id>/<token>", methods=("GET", "POST"))
def preference(delivery_id: int, token: str) -> Any:
    try:
        delivery = acknowledgements.delivery_for_link(
            delivery_id=delivery_id, token=token, purpose="preference"
        )
    except NotFound:
        abort(404)
    if request.method == "POST":
        try:
            pref = acknowledgements.set_preference_by_link(
                delivery_id=delivery_id, token=token, digest=request.form.get("digest") == "1"
            )
            db.session.commit()
        except DomainError:
            db.session.rollback()
            abort(404)
        flash(
            "You will get one digest a day for this rule."
            if pref.digest
            else "You will get one mail per notice for this rule.",
            "success",
        )
        return redirect(url_for(".preference", delivery_id=delivery_id, token=token))
    digest = acknowledgements.preference_of(delivery.rule_id, delivery.recipient)
    current = delivery.rule.digest if digest is None else digest
    return render_template("portal/preference.html", delivery=delivery, digest=current)
