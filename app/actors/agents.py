"""Central actors of agent scans: the dispatcher of an agent task's shard (queue default)
and the receiver of what agents send back (queue ``agents``, signed envelopes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from psycopg.errors import DeadlockDetected, SerializationFailure
from sqlalchemy.exc import OperationalError

from app.runtime.broker import broker
from app.services.discovery import agentruns, agents, runs
from app.services.platform import jobs

RESULTS_QUEUE = "agents"
CONTROL_ACTOR = "agent_control"  # never run by an actor: the agent reads the queue itself


def _publish(queue: str, actor_name: str, payload: dict[str, Any]) -> None:
    """Put a message on one of an agent's queues, which only that agent consumes.

    Never through ``broker.declare_queue``: a worker of this process would start consuming
    every queue declared in it (dramatiq adds a consumer on declaration), and take the
    agent's shards. On RabbitMQ the queue is made and published to directly; on Redis a
    queue needs no declaration.
    """
    message = dramatiq.Message(
        queue_name=queue, actor_name=actor_name, args=(payload,), kwargs={}, options={}
    )
    if isinstance(broker, RabbitmqBroker):
        import pika

        broker._declare_queue(queue)
        broker._declare_dq_queue(queue)
        broker._declare_xq_queue(queue)
        broker.channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=2),
        )
    elif isinstance(broker, RedisBroker):
        broker.enqueue(message)
    else:
        raise RuntimeError(
            f"queue {queue} cannot be reached: agents need a Redis or RabbitMQ broker (BROKER_URL)"
        )


def send_to_agent(name: str, payload: dict[str, Any]) -> None:
    """A shard message, on ``scan.<name>``."""
    _publish(agents.queue_name(name), agentruns.AGENT_ACTOR, payload)


def send_control(name: str, payload: dict[str, Any]) -> None:
    """A control message (cancel), on ``scan.<name>.control``, read by the agent at once."""
    _publish(agents.control_queue_name(name), CONTROL_ACTOR, payload)


agentruns.set_sender(send_to_agent)
agents.set_control_sender(send_control)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=120_000)
def agent_dispatch(job_id: int) -> None:
    current = CurrentMessage.get_current_message()
    sent_at = (
        datetime.fromtimestamp(current.message_timestamp / 1000, UTC)
        if current is not None
        else None
    )
    agentruns.dispatch(job_id, sent_at=sent_at)


def _transient(retries: int, exc: Exception) -> bool:
    """A deadlock or serialization failure (PostgreSQL chose this transaction as the
    victim, nothing of it was stored, its receipt included): run the message again. Anything
    else is not retried: a report is stored whole or refused for a reason."""
    return (
        retries < REPORT_RETRIES
        and isinstance(exc, OperationalError)
        and (isinstance(exc.orig, (DeadlockDetected, SerializationFailure)))
    )


# Attempts at a report beyond the first when the database picks it as a deadlock victim.
# A batch that is never stored leaves its shard waiting for it until the shard times out.
REPORT_RETRIES = 5


@dramatiq.actor(
    queue_name=RESULTS_QUEUE,
    max_retries=REPORT_RETRIES,
    retry_when=_transient,
    min_backoff=50,
    max_backoff=2_000,
    time_limit=300_000,
)
def agent_report(envelope: dict[str, Any]) -> None:
    agentruns.receive(envelope)


jobs.register_kind(
    agentruns.KIND,
    "Scan a block of addresses through an agent",
    agent_dispatch,
    on_failure=runs.on_shard_failure,
)
