"""The dramatiq broker, built once from BROKER_URL before any actor is declared.

Unset: dramatiq's StubBroker, drained by the in-process worker (app/runtime/embedded.py).
redis://...: RedisBroker. amqp://...: RabbitmqBroker. Actor modules import this first.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from app.config import broker_kind, setting
from app.runtime.context import AppContextMiddleware


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


BROKER_URL = str(setting("BROKER_URL"))
REDIS_NAMESPACE = str(setting("CW_REDIS_NAMESPACE")) or "dramatiq"
APP_CONTEXT = AppContextMiddleware()
broker = make_broker(BROKER_URL, redis_namespace=REDIS_NAMESPACE)
dramatiq.set_broker(broker)
