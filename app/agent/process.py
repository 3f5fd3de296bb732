"""The agent's broker wiring: its own broker (Redis or RabbitMQ, no app middleware), the one
actor it declares (on ``scan.<name>``), and sending envelopes to the central ``agents``
queue. Two ways in:

- ``serve(...)`` runs a dramatiq Worker in this process (``flask --app wsgi agent run``);
- ``dramatiq app.agent.process --queues scan.NAME --processes 1 --threads 2`` with CW_AGENT_NAME,
  CW_AGENT_BROKER, CW_AGENT_KEY, CW_AGENT_ALLOW (comma separated), and optionally
  CW_REDIS_NAMESPACE, CW_AGENT_CAPACITY, CW_AGENT_HEARTBEAT_SECONDS, CW_AGENT_MAX_RATE,
  CW_AGENT_MAX_IN_FLIGHT: importing this module
  builds the agent from those variables.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from app.agent.runner import Agent, AgentConfig, load_config
from app.settings import setting

RESULTS_QUEUE = "agents"  # app.actors.agents.RESULTS_QUEUE
RESULTS_ACTOR = "agent_report"
SHARD_ACTOR = "agent_scan_shard"  # app.services.discovery.agentruns.AGENT_ACTOR
CONTROL_POLL_MS = 500  # an idle control consumer looks for a message at least this often
log = logging.getLogger("certwright.agent")


def control_queue(name: str) -> str:
    """The agent's control queue (app.services.discovery.agents.control_queue_name): cancel
    messages, read by a thread of their own so that they never wait behind shards."""
    return f"scan.{name}.control"


def _open_control_consumer(broker: dramatiq.Broker, queue: str) -> dramatiq.Consumer:
    # Not broker.declare_queue/consume: a dramatiq Worker in this process would add a
    # consumer of its own for every declared queue (and find no actor for these messages).
    if isinstance(broker, RabbitmqBroker):
        broker._declare_queue(queue)
        broker._declare_xq_queue(queue)
    return broker.consumer_class(broker, queue, 1, CONTROL_POLL_MS)


def start_control(agent: Agent, broker: dramatiq.Broker) -> threading.Event:
    """Read the control queue on a thread of its own (cancel messages reach a busy agent at
    once) until the returned event is set."""
    stop = threading.Event()
    queue = control_queue(agent.config.name)

    def listen() -> None:
        while not stop.is_set():
            consumer = None
            try:
                consumer = _open_control_consumer(broker, queue)
                for message in consumer:
                    if stop.is_set():
                        break
                    if message is None:
                        continue
                    log.info(
                        "%s: %s", queue, agent.control(message.args[0] if message.args else None)
                    )
                    consumer.ack(message)
            except Exception:  # the broker may be down for a moment: listen again soon
                log.exception("control queue %s: reading failed; retrying in 5 s", queue)
                stop.wait(5)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        log.debug("closing the control consumer failed", exc_info=True)

    threading.Thread(target=listen, name="agent-control", daemon=True).start()
    return stop


def make_broker(url: str, namespace: str = "dramatiq") -> dramatiq.Broker:
    """Raises: ValueError: not a redis://, rediss://, unix:// (Redis) or amqp(s):// URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisBroker(url=url, namespace=namespace)
    if scheme in ("amqp", "amqps"):
        return RabbitmqBroker(url=url)
    raise ValueError(f"--broker {scheme or url!r}: give a redis:// or amqp:// URL")


def build(config: AgentConfig, broker: dramatiq.Broker) -> Agent:
    """Declare the agent's actor on ``broker`` and return the agent (heartbeats not started)."""

    def send(envelope: dict[str, Any]) -> None:
        broker.enqueue(
            dramatiq.Message(
                queue_name=RESULTS_QUEUE,
                actor_name=RESULTS_ACTOR,
                args=(envelope,),
                kwargs={},
                options={},
            )
        )

    agent = Agent(config, send)

    def agent_scan_shard(message: dict[str, Any]) -> None:
        log.info("shard job #%s: %s", message.get("shard"), agent.run_shard(message))

    dramatiq.actor(
        agent_scan_shard,
        actor_name=SHARD_ACTOR,
        queue_name=f"scan.{config.name}",
        broker=broker,
        max_retries=0,
        time_limit=24 * 3600 * 1000,
    )
    return agent


def serve(
    config: AgentConfig, *, broker_url: str, namespace: str = "dramatiq", threads: int = 2
) -> None:
    """Run the agent in this process until SIGINT/SIGTERM."""
    broker = make_broker(broker_url, namespace)
    agent = build(config, broker)
    # An idle agent looks for a shard every 100 ms (dramatiq's default is a second), as
    # dedicated scan workers do with dramatiq_worker_timeout (README "Scale-out").
    worker = dramatiq.Worker(
        broker, queues={f"scan.{config.name}"}, worker_threads=max(1, threads), worker_timeout=100
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker.start()
    agent.start_heartbeats()
    control = start_control(agent, broker)
    log.info(
        "agent %s consuming scan.%s, allow-list %s, host ceilings: %s new connections a "
        "second, %s in flight",
        config.name,
        config.name,
        ", ".join(b.describe() for b in config.allowed),
        f"{config.max_rate:g}" if config.max_rate else "no cap",
        config.max_in_flight or "no cap",
    )
    try:
        stop.wait()
    finally:
        agent.stop()
        control.set()
        worker.stop()
        broker.close()


def _from_environment() -> Agent | None:
    name = str(setting("CW_AGENT_NAME")).strip()
    if not name:
        return None
    config = load_config(
        name=name,
        key_file=str(setting("CW_AGENT_KEY")),
        allow=str(setting("CW_AGENT_ALLOW")).split(","),
        capacity=int(setting("CW_AGENT_CAPACITY")),
        heartbeat=float(setting("CW_AGENT_HEARTBEAT_SECONDS")),
        max_rate=float(setting("CW_AGENT_MAX_RATE")),
        max_in_flight=int(setting("CW_AGENT_MAX_IN_FLIGHT")),
    )
    broker = make_broker(
        str(setting("CW_AGENT_BROKER")), str(setting("CW_REDIS_NAMESPACE")) or "dramatiq"
    )
    dramatiq.set_broker(broker)
    agent = build(config, broker)
    agent.start_heartbeats()
    start_control(agent, broker)
    return agent


AGENT = _from_environment()
