"""Sending ACME's background work to the workers (app.actors.acme): a challenge's validation
when the client responds, an order's issuance when finalize approved its request at once.

One dramatiq message each, sent straight after the commit, with no job row: the challenge
or the order is the record (``dispatched_at``: when its message was last sent), and both
actors are safe to run twice. A message lost on the way (a web process that died between
its commit and the send, a broker that was down) is sent again by the scheduler
(resend_lost, a scheduler pass) once it has gone unanswered for RESEND_AFTER.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from app.acme.messages import Status
from app.models import AcmeChallenge, AcmeOrder
from app.models.types import utcnow
from app.services.platform.dispatch import send_rows
from app.services.platform.jobs import after_commit

# Longer than an attempt may take (the actors' time limit, 60 s) plus a short queue: a
# message unanswered for this long was lost, or its worker died. Sending one again early
# costs a second check at most (the actors do nothing more the second time).
RESEND_AFTER = timedelta(seconds=90)
RESEND_BATCH = 500

Sender = Callable[[int], object]
_senders: dict[str, Sender] = {}


def register_senders(*, validate: Sender, issue: Sender) -> None:
    """The actors' ``send``: validate(challenge id), issue(order id)."""
    _senders["validate"] = validate
    _senders["issue"] = issue


def _send(kind: str, object_id: int) -> None:
    _senders[kind](object_id)


def send_validation(chall: AcmeChallenge) -> None:
    """Validate the challenge on a worker once the current transaction commits."""
    chall.dispatched_at = utcnow()
    after_commit(functools.partial(_send, "validate", chall.id))


def send_issuance(order: AcmeOrder) -> None:
    """Issue the order's approved request on a worker once the current transaction
    commits."""
    order.dispatched_at = utcnow()
    after_commit(functools.partial(_send, "issue", order.id))


def resend_lost(now: datetime | None = None, restarted: bool = False) -> int:
    """Scheduler pass: send again the message of each challenge and order still processing
    whose message went unanswered for RESEND_AFTER (every one when ``restarted``: an
    embedded worker starts with an empty queue). Orders whose request waited for an
    administrator have no message of ours (dispatched_at unset): the approval queues their
    issuance as a job. Row locks (SKIP LOCKED) keep two schedulers from doubling up; the
    caller commits. How many were sent."""
    if not _senders:
        return 0
    now = now or utcnow()
    sent = 0
    for model, kind in ((AcmeChallenge, "validate"), (AcmeOrder, "issue")):
        query = select(model).where(
            model.status == Status.PROCESSING.value, model.dispatched_at.is_not(None)
        )
        if not restarted:
            query = query.where(model.dispatched_at < now - RESEND_AFTER)
        sent += send_rows(
            query.order_by(model.dispatched_at).limit(RESEND_BATCH),
            lambda row, kind=kind: functools.partial(_send, kind, row.id),
            now=now,
        )
    return sent
