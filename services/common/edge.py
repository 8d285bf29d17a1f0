"""The edge: a grpcio server that exposes services' gRPC APIs and forwards every call to the
worker RPC method of the same name over RabbitMQ.

`python -m services.common.edge --services filing[,certificates,...]`

Protobuf in, dict to the worker, dict back, protobuf out. It authenticates the bearer token,
enforces each RPC's access policy (declared in the proto), honours the caller's deadline,
maps worker errors to precise status codes (services/common/errors.py), and serves the
standard health service and server reflection. It never imports eventlet's monkey patching:
grpcio and eventlet do not share a process (grpcio hangs under eventlet's monkey patching).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import message_factory
from google.protobuf.json_format import ParseError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService

from services.common import config
from services.common.auth import authorize, bearer_token, verify_token
from services.common.errors import VocregError, grpc_status_for
from services.common.metrics import GRPC_CALLS, GRPC_LATENCY, serve
from services.common.protos import access_policies, from_dict, service_proto, to_dict
from services.common.rpc_client import PoolExhausted, RpcClientPool
from services.common.spec import registry

log = logging.getLogger("vocreg.edge")

MIB = 1024 * 1024


class EdgeSettings:
    def __init__(self):
        self.port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
        self.metrics_port = config.env_int("EDGE_METRICS_PORT", config.DEFAULT_EDGE_METRICS_PORT)
        self.threads = config.env_int("EDGE_THREADS", 16)
        # A batch of 10,000 certificates is about 3 MiB; 16 MiB leaves room and stops abuse.
        self.max_message_bytes = config.env_int("EDGE_MAX_MESSAGE_BYTES", 16 * MIB)
        # Used when the client sets no deadline, and the cap on any deadline.
        self.default_timeout = config.env_float("EDGE_DEFAULT_TIMEOUT", 30.0)
        self.max_timeout = config.env_float("EDGE_MAX_TIMEOUT", 120.0)
        self.health_interval = config.env_float("EDGE_HEALTH_INTERVAL", 5.0)
        self.grace = config.env_float("EDGE_SHUTDOWN_GRACE", 10.0)


class Availability:
    """Which workers answered their last health check. Calls to one that did not fail fast
    with UNAVAILABLE instead of waiting out their deadline on a queue nobody consumes."""

    def __init__(self):
        self._serving: dict[str, bool] = {}

    def set(self, service: str, serving: bool) -> None:
        self._serving[service] = serving

    def serving(self, service: str) -> bool:
        return self._serving.get(service, False)


class ServiceForwarder:
    """The generic handler of one service: every RPC forwarded to the worker."""

    def __init__(self, service: str, pool: RpcClientPool, settings: EdgeSettings,
                 availability: Availability):
        self.service = service
        self.availability = availability
        self.proto = service_proto(service)
        self.policies = access_policies(service)
        self.pool = pool
        self.settings = settings

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method in self.proto.service_descriptor.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                self._handler(method.name, response_class),
                request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString)
        return grpc.method_handlers_generic_handler(self.proto.full_name, handlers)

    def _handler(self, method: str, response_class):
        full_name = f"/{self.proto.full_name}/{method}"

        def handle(request, context: grpc.ServicerContext):
            started = time.perf_counter()
            code, detail, response = grpc.StatusCode.OK, "", None
            try:
                response = self.forward(method, response_class, request, context)
            except VocregError as exc:  # refused at the edge: auth, policy, deadline
                code, detail = exc.status, exc.message
            except RemoteError as exc:
                code = grpc_status_for(exc.exc_type)
                detail = exc.value if code != grpc.StatusCode.INTERNAL else "internal error"
                if code == grpc.StatusCode.INTERNAL:
                    log.error("%s: worker failed with %s", full_name, exc.exc_type)
            except (RpcTimeout, PoolExhausted):
                code, detail = grpc.StatusCode.DEADLINE_EXCEEDED, "the service did not answer in time"
            except (UnknownService, WorkerDown):
                code, detail = grpc.StatusCode.UNAVAILABLE, f"the {self.service} service is not running"
            except (ConnectionError, OSError, OperationalError):
                code, detail = grpc.StatusCode.UNAVAILABLE, "the message bus is unavailable"
                log.warning("%s: bus unavailable", full_name, exc_info=True)
            except ParseError:
                code, detail = grpc.StatusCode.INTERNAL, "internal error"
                log.exception("%s: the worker's answer does not fit %s", full_name,
                              response_class.DESCRIPTOR.full_name)
            except Exception:
                code, detail = grpc.StatusCode.INTERNAL, "internal error"
                log.exception("%s: unexpected failure", full_name)
            GRPC_CALLS.labels(full_name, code.name).inc()
            GRPC_LATENCY.labels(full_name).observe(time.perf_counter() - started)
            if code != grpc.StatusCode.OK:
                context.abort(code, detail)
            return response

        return handle

    def forward(self, method, response_class, request, context):
        metadata = dict(context.invocation_metadata())
        token = bearer_token(metadata.get("authorization"))
        identity = verify_token(token)
        authorize(self.policies.get(method), identity, f"{self.proto.full_name}/{method}")
        remaining = context.time_remaining()
        timeout = self.settings.default_timeout if remaining is None else remaining
        timeout = min(timeout, self.settings.max_timeout)
        if timeout <= 0.001:
            raise RpcTimeout("deadline already passed")
        if not self.availability.serving(self.service):
            raise WorkerDown(self.service)
        context_data = {"auth_token": token} if token else {}
        result = self.pool.call(self.service, method, to_dict(request), context_data, timeout)
        return from_dict(result, response_class)


class WorkerDown(Exception):
    """The service's worker failed its last health check."""


class HealthWatcher(threading.Thread):
    """Marks each service SERVING while its worker answers `health`, NOT_SERVING otherwise.

    The overall status ("") is the edge's own and stays SERVING until shutdown, so a worker
    outage makes the pod unready (readiness probes the service) without restarting the edge.
    """

    def __init__(self, servicer, availability, pool, services, settings):
        super().__init__(name="health-watcher", daemon=True)
        self.servicer, self.availability = servicer, availability
        self.pool, self.services, self.settings = pool, services, settings
        self.stopping = threading.Event()

    def check_once(self):
        for name in self.services:
            try:
                self.pool.call(name, "health", None, None, timeout=min(2.0, self.settings.health_interval))
                status = health_pb2.HealthCheckResponse.SERVING
            except Exception as exc:
                log.warning("health: %s worker not answering (%s)", name, type(exc).__name__)
                status = health_pb2.HealthCheckResponse.NOT_SERVING
            self.availability.set(name, status == health_pb2.HealthCheckResponse.SERVING)
            self.servicer.set(service_proto(name).full_name, status)

    def run(self):
        while not self.stopping.wait(self.settings.health_interval):
            self.check_once()


def build_server(services, pool, settings, availability):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="edge"),
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", settings.max_message_bytes),
                 ("grpc.so_reuseport", 0)])
    for name in services:
        server.add_generic_rpc_handlers((ServiceForwarder(name, pool, settings, availability).generic_handler(),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service_proto(n).full_name for n in services]
    reflection.enable_server_reflection(
        names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    return server, health_servicer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.edge")
    parser.add_argument("--services", default=",".join(registry()),
                        help="comma-separated service names (default: every declared service)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=config.env("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = [s for s in services if s not in registry()]
    if unknown:
        raise SystemExit(f"edge: no service {', '.join(unknown)}; declared: {', '.join(registry())}")
    if config.jwt_secret() == config.DEV_JWT_SECRET:
        log.warning("VOCREG_JWT_SECRET is not set: using the development secret")

    settings = EdgeSettings()
    pool = RpcClientPool(config.amqp_uri(), size=settings.threads)
    availability = Availability()
    server, health_servicer = build_server(services, pool, settings, availability)
    port = server.add_insecure_port(f"0.0.0.0:{settings.port}")
    if port == 0:
        raise SystemExit(f"edge: cannot bind port {settings.port}")
    serve(settings.metrics_port)
    for name in services:
        health_servicer.set(service_proto(name).full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    watcher = HealthWatcher(health_servicer, availability, pool, services, settings)
    watcher.check_once()
    watcher.start()
    log.info("edge listening on :%d for %s", port, ", ".join(services))

    stopped = threading.Event()

    def shutdown(signum, frame):
        if stopped.is_set():
            return
        stopped.set()
        log.info("edge stopping (signal %d): draining for up to %.0fs", signum, settings.grace)
        watcher.stopping.set()
        health_servicer.enter_graceful_shutdown()
        server.stop(settings.grace)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()
    pool.close()
    log.info("edge stopped")


if __name__ == "__main__":
    main()
