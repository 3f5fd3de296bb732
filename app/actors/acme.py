"""ACME actors: challenge validation off the request thread (RFC 8555 §8)."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.acme import orders, validation
from app.services.platform import jobs


def _validate(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    done = orders.validate(challenge_id=int(job.payload["challenge_id"]), check=validation.validate)
    if done is None:
        return {"message": "nothing to do: the challenge is not being validated"}
    return {"message": f"challenge #{done.challenge_id} {done.status}: {done.detail}"}


# One attempt: a failed validation is the client's answer (the challenge is invalid),
# and a client that wants another try makes a new order (§8.2).
@dramatiq.actor(queue_name="acme", max_retries=0, time_limit=60_000)
def validate_challenge(job_id: int) -> None:
    jobs.execute(job_id, _validate)


jobs.register_kind(
    orders.VALIDATE_KIND,
    "Validate an ACME challenge",
    validate_challenge,
    on_failure=orders.validation_job_failed,
)
