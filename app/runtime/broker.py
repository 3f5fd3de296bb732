"""The dramatiq broker, built once from BROKER_URL before any actor is declared.

Unset: dramatiq's StubBroker, drained by the in-process worker (app/runtime/embedded.py);
a `flask --app wsgi` command without such a worker hands its jobs to the server instead
(app.services.platform.jobs.set_handoff). redis://...: RedisBroker. amqp://...:
RabbitmqBroker. Actor modules import this first.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from app.config import broker_kind
from app.runtime.context import AppContextMiddleware
from app.services.platform import jobs
from app.settings import is_flask_command, setting


def make_broker(url: str, *, redis_namespace: str = "dramatiq") -> dramatiq.Broker:
    """The broker for BROKER_URL. Deployments that share a Redis database keep apart by
    the prefix of every key (``redis_namespace``); on RabbitMQ, by the URL's vhost."""
    kind = broker_kind(url)
    broker: dramatiq.Broker
    if kind == "embedded":
        broker = StubBroker()
    elif kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, namespace=redis_namespace)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(APP_CONTEXT)
    return broker


def has_local_worker(broker: dramatiq.Broker) -> bool:
    """Does a dramatiq worker of this process consume this broker? (Each Worker adds its
    own middleware to the broker, and removes it when stopped by Embedded.stop.)"""
    return any(getattr(m, "worker", None) is not None for m in broker.middleware)


def is_command_without_worker() -> bool:
    """A `flask --app wsgi ...` process with no worker of its own: what it sent to the
    in-memory broker would never run."""
    return is_flask_command() and not has_local_worker(broker)


BROKER_URL = str(setting("BROKER_URL"))
REDIS_NAMESPACE = str(setting("CW_REDIS_NAMESPACE")) or "dramatiq"
APP_CONTEXT = AppContextMiddleware()
broker = make_broker(BROKER_URL, redis_namespace=REDIS_NAMESPACE)
dramatiq.set_broker(broker)
if broker_kind(BROKER_URL) == "embedded":
    jobs.set_handoff(is_command_without_worker)
