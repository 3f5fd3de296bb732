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


def make_broker(url: str) -> dramatiq.Broker:
    kind = broker_kind(url)
    broker: dramatiq.Broker
    if kind == "embedded":
        broker = StubBroker()
    elif kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(APP_CONTEXT)
    return broker


BROKER_URL = str(setting("BROKER_URL"))
APP_CONTEXT = AppContextMiddleware()
broker = make_broker(BROKER_URL)
dramatiq.set_broker(broker)
