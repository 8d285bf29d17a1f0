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

import importlib
import logging
import time
from dataclasses import dataclass

from google.protobuf import json_format
from nameko.events import event_handler
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter

from services.common import config, idempotency
from services.common.api import CallContext, rpc
from services.common.auth import Identity
from services.common.clock import ClockProvider
from services.common.errors import grpc_status_for
from services.common.metrics import WORKER_CALLS, WORKER_LATENCY, serve
from services.common.uow import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)

SWEEP_INTERVAL = config.sweep_interval()


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


class ContractViolation(Exception):
    """An event that does not parse as its producer's message: the consumer refuses it loudly
    (logged at ERROR, counted in vocreg_events_rejected_total) instead of guessing."""


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
    """An event handler entrypoint: the method receives the parsed, typed message."""

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
        return event_handler(producer, event_type)(entrypoint)

    return decorate


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
