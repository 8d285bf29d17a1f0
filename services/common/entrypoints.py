"""What every service's nameko class is built from: the `Worker` base and the way an RPC, an
event or a timer reaches its handler.

A service's `service.py` declares its dependencies and one-line entrypoints:

    class FilingService(Worker):
        name = "filing"
        uow = UnitOfWorkProvider(FilingRepository)
        settings = SettingsProvider(load_settings)

        @api
        def SubmitApplication(self, request, caller):
            return self.handle(handlers.submit_application, request, caller)

        @on_event("certificates", "CertificatesIssued")
        def on_certificates_issued(self, event):
            return self.handle_event(handlers.count_certificates, event)

Handlers are plain functions `(command, uow, clock, settings)`: no nameko, no database of
their own, so they are unit-tested with a fake unit of work (tests/fakes.py).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import amqp.exceptions
import eventlet
import kombu.exceptions
import pymongo.errors
from google.protobuf import json_format
from kombu import Queue
from mongoengine.connection import get_db
from nameko import events as nameko_events
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter

from services.common import config, idempotency
from services.common.api import CallContext, rpc
from services.common.auth import Identity
from services.common.clock import ClockProvider
from services.common.consumer import QueueConsumer
from services.common.dead_letters import DEAD_LETTERS, DELIVERY_HEADER
from services.common.errors import (
    Conflict,
    ContractViolation,
    DeadlineExceeded,
    Unavailable,
    grpc_status_for,
)
from services.common.metrics import WORKER_CALLS, WORKER_LATENCY, serve
from services.common.uow import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)

SWEEP_INTERVAL = config.sweep_interval()
DEFAULT_EVENT_MAX_DELIVERIES = 10
DEFAULT_EVENT_RETRY_DELAY = 0.5     # seconds before the second delivery; doubles each time
DEFAULT_EVENT_RETRY_MAX_DELAY = 30.0


EVENTS_REJECTED = Counter(
    "vocreg_events_rejected_total",
    "Incoming events that do not fit their producer's message (a contract break).",
    ["event_type"])


@dataclass(frozen=True)
class Command:
    """An RPC as its handler gets it: the request (already checked against its proto message
    and the RPC's access policy) and who asked."""

    request: dict
    caller: Identity
    call_id: str = ""
    # The proto RPC, e.g. "SubmitApplication": request ids and page tokens are bound to it.
    rpc: str = ""


def events_module(producer: str):
    """The producer's events.proto, by the one naming rule (never the producer's package)."""
    return importlib.import_module(f"vocreg.{producer}.v1.events_pb2")


def parse_event(producer: str, event_type: str, body):
    """The event as its producer's message. Unknown fields are allowed (a producer may add
    fields without breaking consumers); a wrong type, a malformed value or a missing event id
    is a ContractViolation."""
    message_class = getattr(events_module(producer), event_type)
    if not isinstance(body, dict):
        raise ContractViolation(f"{producer}.{event_type}: body is {type(body).__name__}")
    try:
        event = json_format.ParseDict(body, message_class(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ContractViolation(f"{producer}.{event_type}: {exc}") from None
    if not event.meta.event_id:
        raise ContractViolation(f"{producer}.{event_type}: no meta.event_id")
    return event


def on_event(producer: str, event_type: str):
    """An event handler entrypoint: the method receives the parsed, typed message. What
    becomes of an event whose handler fails is EventHandler's (below)."""

    def decorate(method):
        def entrypoint(self, body):
            try:
                event = parse_event(producer, event_type, body)
            except ContractViolation:
                EVENTS_REJECTED.labels(f"{producer}.{event_type}").inc()
                raise
            return method(self, event)

        entrypoint.__name__ = method.__name__
        entrypoint.__qualname__ = method.__qualname__
        entrypoint.__doc__ = method.__doc__
        return EventHandler.decorator(producer, event_type,
                                      expected_exceptions=EXPECTED_EVENT_ERRORS)(entrypoint)

    return decorate


def event_entrypoint(producer: str, event_type: str, handler):
    """An entrypoint named on_<producer>_<event_type> that runs `handler` (a function of the
    service's handlers.py) for each such event: for a service that treats many events alike
    (the report's read model, the decision log) and registers one per event type."""

    @on_event(producer, event_type)
    def entrypoint(self, event):
        return self.handle_event(handler, event)

    entrypoint.__name__ = f"on_{producer}_{event_type}"
    return entrypoint


# --- events are handled, retried or kept as dead letters: never dropped ---------------------
# nameko acks an event whether its handler succeeded or raised: an event met by a database
# outage or a racing write was gone. Here the outcome decides:
# - handled: acked;
# - a transient failure (TRANSIENT_ERRORS: the database unreachable, a concurrent write won,
#   the broker or a service asked was away): delivered again after a delay that doubles from
#   EVENT_RETRY_DELAY up to EVENT_RETRY_MAX_DELAY, up to EVENT_MAX_DELIVERIES deliveries in
#   all. The copy waits in a retry queue of its delay (retry_queue_for, no consumer) until the
#   queue's TTL runs out, then the broker dead-letters it back to the handler's queue; its
#   header DELIVERY_HEADER counts. The copy is published with confirms before the original is
#   acked: a crash in between delivers the event twice, and handle_event runs it once;
# - a ContractViolation (the event does not fit its producer's message), any other failure
#   (a handler's bug: running it again changes nothing), or the last delivery's transient
#   failure: the event is kept in the consumer's own database, collection DEAD_LETTERS, with
#   the reason and the error, counted in vocreg_dead_letters_total and logged at ERROR, then
#   acked. `python -m services.common.dead_letters replay <service>` replays it once the cause
#   is fixed.
# If even that fails (the database is down too), the event goes back to its queue (requeue)
# after a pause: it is acked only once handled or kept.
MAX_DEAD_LETTER_BODY = 1 << 20
TRANSIENT_ERRORS = (Conflict, Unavailable, DeadlineExceeded, pymongo.errors.ConnectionFailure,
                    kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
                    OSError)
EXPECTED_EVENT_ERRORS = (ContractViolation, *TRANSIENT_ERRORS)

DEAD_LETTERED = Counter(
    "vocreg_dead_letters_total",
    "Events a worker could not handle and kept in its database's dead_letters collection.",
    ["event_type", "reason"])
EVENT_RETRIES = Counter(
    "vocreg_event_retries_total",
    "Events delivered again after a transient failure of their handler.",
    ["event_type"])


def event_disposition(exc: BaseException | None, delivery: int, max_deliveries: int) -> str:
    """What becomes of a delivery: "ack", "retry" or a dead-letter reason."""
    if exc is None:
        return "ack"
    if isinstance(exc, ContractViolation):
        return "contract_violation"
    if isinstance(exc, TRANSIENT_ERRORS):
        return "retry" if delivery < max_deliveries else "retries_exhausted"
    return "handler_failed"


def retry_delay(delivery: int, first: float, most: float) -> float:
    """The pause before delivery number `delivery + 1`."""
    return min(most, first * 2 ** (delivery - 1))


def retry_queue_for(queue_name: str, delay: float) -> Queue:
    """The queue where a handler's failed events wait `delay` seconds: one queue per delay,
    whose own TTL (x-message-ttl) hands every copy back to the handler's queue when it runs
    out.

    Not one queue for all delays with a TTL per message: RabbitMQ expires (and dead-letters)
    only the message at the head of a queue, so a copy waiting 30 s held back every copy
    queued behind it, a 0.5 s retry included, for those 30 s (reproduced,
    tests/integration/test_event_delivery.py). In a queue whose copies all wait the same time
    the head is always the first to expire. The TTL is in the name: a queue is never
    declared again with other arguments (the broker would refuse: PRECONDITION_FAILED), and a
    changed EVENT_RETRY_DELAY gets queues of its own while the old ones still hand back what
    they hold."""
    ttl_ms = max(0, round(delay * 1000))
    return Queue(f"{queue_name}.retry.{ttl_ms}ms", durable=True, queue_arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue_name,
        "x-message-ttl": ttl_ms})


class EventHandler(nameko_events.EventHandler):
    """nameko's event handler (a SERVICE_POOL queue per handler, reliable delivery) on the
    worker's resilient queue consumer, with the outcomes above."""

    queue_consumer = QueueConsumer()

    def setup(self):
        super().setup()
        worker_config = self.container.config
        self.max_deliveries = config.setting_int(worker_config, "EVENT_MAX_DELIVERIES",
                                                 DEFAULT_EVENT_MAX_DELIVERIES, minimum=1)
        self.first_delay = _setting_float(worker_config, "EVENT_RETRY_DELAY",
                                          DEFAULT_EVENT_RETRY_DELAY)
        self.max_delay = _setting_float(worker_config, "EVENT_RETRY_MAX_DELAY",
                                        DEFAULT_EVENT_RETRY_MAX_DELAY)
        # delivery number -> the queue its copy waits in before the next delivery
        self.retry_queues = {
            delivery: retry_queue_for(self.queue.name, retry_delay(
                delivery, self.first_delay, self.max_delay))
            for delivery in range(1, self.max_deliveries)}

    def handle_message_processed(self, message, result=None, exc_info=None):
        # Runs in the worker's greenthread: whatever happens here must not raise (nameko
        # would kill the container), so a failure of our own puts the event back.
        try:
            self._settle(message, exc_info[1] if exc_info else None)
        except Exception:
            log.exception("%s: settling an event failed; it goes back to its queue",
                          self.method_name)
            self.queue_consumer.requeue_message(message)

    def undecodable(self, message, exc: Exception) -> None:
        """The body did not decode (services/common/consumer.py): a contract violation."""
        EVENTS_REJECTED.labels(f"{self.source_service}.{self.event_type}").inc()
        self._dead_letter(message, "contract_violation",
                          ContractViolation(f"undecodable body: {type(exc).__name__}: {exc}"),
                          delivery_number(message))

    def _settle(self, message, exc: BaseException | None) -> None:
        delivery = delivery_number(message)
        outcome = event_disposition(exc, delivery, self.max_deliveries)
        if outcome == "ack":
            self.queue_consumer.ack_message(message)
        elif outcome == "retry":
            self._retry(message, delivery, exc)
        else:
            self._dead_letter(message, outcome, exc, delivery)

    def _retry(self, message, delivery: int, exc: BaseException) -> None:
        delay = retry_delay(delivery, self.first_delay, self.max_delay)
        retry_queue = self.retry_queues[delivery]
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
        headers[DELIVERY_HEADER] = delivery + 1
        try:
            with get_producer(self.container.config[AMQP_URI_CONFIG_KEY]) as producer:
                def declare_and_publish():
                    # Declared on every attempt, not through kombu's cache (`declare=`: once
                    # per pooled connection, for its whole life): a retry queue deleted
                    # meanwhile would make the copy unroutable, which the broker drops and
                    # still confirms, and the original would be acked and lost. A retry is
                    # rare; the round trip is cheap.
                    retry_queue.bind(producer.channel).declare()
                    producer.publish(message.body, exchange="", routing_key=retry_queue.name,
                                     headers=headers, content_type=message.content_type,
                                     content_encoding=message.content_encoding,
                                     delivery_mode=2)

                # Both again on a fresh connection if the pooled one went stale (the broker
                # restarted since), as publish(retry=True) did for the publish alone.
                producer.connection.ensure(producer, declare_and_publish, max_retries=2)()
        except Exception as publish_failure:  # the broker is away: it has the original still
            log.warning("%s: %s failed (%s) and its retry could not be queued (%s); it goes "
                        "back to its queue", self.method_name, self.event_type,
                        type(exc).__name__, type(publish_failure).__name__)
            self.queue_consumer.requeue_message(message)
            return
        EVENT_RETRIES.labels(f"{self.source_service}.{self.event_type}").inc()
        log.warning("%s: %s %s failed (%s: %s); delivery %d of %d in %.1fs", self.method_name,
                    self.event_type, event_id_of(message), type(exc).__name__,
                    str(exc)[:200], delivery + 1, self.max_deliveries, delay)
        self.queue_consumer.ack_message(message)

    def _dead_letter(self, message, reason: str, exc: BaseException, delivery: int) -> None:
        service = self.container.service_name
        event_id = event_id_of(message)
        try:
            store_dead_letter(service, {
                "handler": self.method_name, "producer": self.source_service,
                "event_type": self.event_type, "queue": self.queue.name, "event_id": event_id,
                "reason": reason, "error": f"{type(exc).__name__}: {str(exc)[:500]}",
                "deliveries": delivery, "content_type": message.content_type,
                "headers": {k: v for k, v in (message.headers or {}).items()
                            if "auth_token" not in k and not k.startswith("x-")},
                "body": body_text(message)[:MAX_DEAD_LETTER_BODY]})
        except Exception as store_failure:
            pause = retry_delay(delivery, self.first_delay, self.max_delay)
            log.error("%s: %s %s could not be kept as a dead letter (%s); back to its queue "
                      "in %.1fs", self.method_name, self.event_type, event_id,
                      type(store_failure).__name__, pause, exc_info=True)
            eventlet.sleep(pause)
            self.queue_consumer.requeue_message(message)
            return
        DEAD_LETTERED.labels(f"{self.source_service}.{self.event_type}", reason).inc()
        log.error("%s: %s %s kept as a dead letter (%s after %d deliveries: %s)",
                  self.method_name, self.event_type, event_id, reason, delivery,
                  type(exc).__name__, extra={"fields": {
                      "dead_letter": reason, "event_type": self.event_type,
                      "event_id": event_id}})
        self.queue_consumer.ack_message(message)


def delivery_number(message) -> int:
    try:
        return max(1, int((message.headers or {}).get(DELIVERY_HEADER) or 1))
    except (TypeError, ValueError):
        return 1


def event_id_of(message) -> str:
    """The event's id: the header the outbox sets, else the body's meta.event_id."""
    headers = message.headers or {}
    if headers.get("vocreg.event_id"):
        return str(headers["vocreg.event_id"])[:100]
    try:
        body = json.loads(message.body)
        return str(body["meta"]["event_id"])[:100]
    except Exception:
        return ""


def body_text(message) -> str:
    body = message.body
    return bytes(body).decode("utf-8", "replace") if isinstance(body, (bytes, bytearray,
                                                                        memoryview)) else str(body)


def store_dead_letter(service: str, letter: dict) -> None:
    """Keep (or count again) a dead letter in the service's database: one document per
    handler and event (its id, else its body's digest)."""
    key = letter["event_id"] or hashlib.sha256(letter["body"].encode()).hexdigest()
    now = datetime.now(timezone.utc)
    get_db(service)[DEAD_LETTERS].update_one(
        {"_id": f"{letter['handler']}:{key}"},
        {"$set": {**letter, "service": service, "last_at": now},
         "$setOnInsert": {"first_at": now}, "$inc": {"times": 1}}, upsert=True)


def _setting_float(worker_config: dict, key: str, default: float) -> float:
    raw = config.setting(worker_config, key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SystemExit(f"configuration error: {key}={raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"configuration error: {key} must be >= 0")
    return value


class WorkerMetrics(DependencyProvider):
    """Times every entrypoint of the service and counts its outcomes, spelled as the gRPC code
    the edge answers for them (a deliberate refusal's code; INTERNAL for anything else)."""

    def setup(self):
        self._started = {}
        serve(int(self.container.config.get("METRICS_PORT", 0) or 0))

    def worker_setup(self, worker_ctx):
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint.method_name
        code = "OK" if exc_info is None else grpc_status_for(exc_info[0].__name__).name
        WORKER_CALLS.labels(entrypoint, code).inc()
        if started is not None:
            WORKER_LATENCY.labels(entrypoint).observe(time.perf_counter() - started)

    def get_dependency(self, worker_ctx):
        return None


class SettingsProvider(DependencyProvider):
    """A service's settings, loaded once at start from the worker config (and the
    environment), so a bad value stops the worker at start, not at the first call."""

    def __init__(self, load):
        self.load = load

    def setup(self):
        self.value = self.load(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.value


class Worker:
    """The base of every service's nameko class: the call context, clock and metrics, the
    health RPC, the relay timer over the declared aggregates, and the three ways in."""

    name: str  # the service's ServiceSpec name
    call = CallContext()
    clock = ClockProvider()
    metrics = WorkerMetrics()
    settings = None  # a SettingsProvider, if the service has settings

    def handle(self, handler, request: dict, caller: Identity, **ports):
        """An RPC (the `@api` method that calls this names it): its request_id looked up first
        (services/common/idempotency.py), the handler, what it changed written and its events
        published. `ports` are the other services the handler may ask (gateways)."""
        uow = self.uow.begin(self.clock)
        command = Command(request, caller, self.call.call_id, getattr(self, "rpc_name", ""))
        return idempotency.run(handler, command, uow, self.clock, self.settings,
                               request_message=getattr(self, "request_message", None), **ports)

    def handle_event(self, handler, event):
        """Run `handler` once per (handler, event id), whatever the redeliveries. The mark is
        written after the handler's own writes: a crash in between means one more run on
        redelivery, so handlers also key their writes on natural ids (at-least-once)."""
        uow = self.uow.begin(self.clock)
        key = f"{handler.__name__}:{event.meta.event_id}"
        if uow.repo.handled(key):
            log.info("%s: event %s already handled", handler.__name__, event.meta.event_id)
            return None
        result = handler(event, uow, self.clock, self.settings)
        uow.flush()
        uow.repo.mark_handled(key)
        uow.publish()
        return result

    def handle_timer(self, handler):
        uow = self.uow.begin(self.clock)
        result = handler(uow, self.clock, self.settings)
        uow.flush()
        uow.publish()
        return result

    @rpc
    def health(self, request=None):
        """For the edge's health checker (no auth: it says nothing). The database must answer
        too: a worker that cannot reach it is not serving."""
        self.uow.ping()
        return {"service": self.name, "status": "SERVING"}

    @timer(interval=HEARTBEAT_INTERVAL)
    def heartbeat(self):
        """This process is alive (services/common/uow.py OWNER_GONE_AFTER)."""
        self.uow.heartbeat()

    @timer(interval=SWEEP_INTERVAL)
    def relay(self):
        """Publish events a crash or a broker outage left stored but unpublished."""
        return self.uow.relay()
