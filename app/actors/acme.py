"""ACME actors (RFC 8555 §7.4, §8): challenge validation and order issuance off the request
thread, each straight from its message (no job row: the challenge or the order is the
record, app.services.acme.dispatch). Running a message twice changes nothing more."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from app.extensions import db
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.acme import dispatch, orders, validation, verdicts
from app.services.certificates import issuance
from app.services.platform import scheduling

log = logging.getLogger(__name__)

# Attempts at an order's issuance beyond the first (as the issuance jobs' 3 attempts), a
# few seconds apart; the last one failing makes the request Failed and the order invalid.
ISSUE_RETRIES = 2


# One attempt: a failed validation is the client's answer (the challenge is invalid), and
# a client that wants another try makes a new order (§8.2). Each connection and lookup has
# its own timeout (app.services.acme.validation); the time limit bounds the whole attempt.
@dramatiq.actor(queue_name="acme", max_retries=0, time_limit=60_000)
def validate_challenge(challenge_id: int) -> None:
    try:
        verdicts.validate(challenge_id=challenge_id, check=validation.validate)
        db.session.commit()
    except (Exception, TimeLimitExceeded) as exc:
        db.session.rollback()
        log.exception("validating ACME challenge #%s failed", challenge_id)
        verdicts.validation_crashed(challenge_id=challenge_id, reason=_reason(exc))
        db.session.commit()


@dramatiq.actor(
    queue_name="acme",
    max_retries=ISSUE_RETRIES,
    min_backoff=2_000,
    max_backoff=8_000,
    time_limit=60_000,
)
def issue_order(order_id: int) -> None:
    try:
        orders.issue_order(order_id=order_id)
        db.session.commit()
    except issuance.IssuanceRaced:
        db.session.rollback()  # another run of this message issued it
    except (Exception, TimeLimitExceeded) as exc:
        db.session.rollback()
        message = CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else ISSUE_RETRIES
        if retries < ISSUE_RETRIES:
            raise  # dramatiq sends it again after a backoff
        log.exception("issuing ACME order #%s failed on its last attempt", order_id)
        orders.issuance_failed(order_id=order_id, reason=_reason(exc))
        db.session.commit()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeLimitExceeded):
        return "it took longer than its time limit"
    return f"{type(exc).__name__}: {exc}"[:500]


dispatch.register_senders(
    validate=lambda challenge_id: validate_challenge.send(challenge_id),
    issue=lambda order_id: issue_order.send(order_id),
)
scheduling.register_pass("acme_messages", dispatch.resend_lost)
