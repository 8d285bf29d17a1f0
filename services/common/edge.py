"""The edge: a grpcio server that exposes services' gRPC APIs and forwards every call to the
worker RPC method of the same name over RabbitMQ, but for the reads a service declares the
edge answers itself from its database (SPEC `edge_reads`, services/common/edge_reads.py).

`python -m services.common.edge --services filing[,certificates,...]`

Protobuf in, dict to the worker, dict back, protobuf out. It authenticates the bearer token,
enforces each RPC's access policy (declared in the proto), honours the caller's deadline,
maps worker errors to precise status codes with structured details (services/common/errors.py),
and serves the standard health service and server reflection (v1 and v1alpha), over TLS when
given a certificate. It speaks nameko's RPC protocol itself (services/common/amqp_rpc.py) and
never imports eventlet: grpcio and eventlet do not share a process (grpcio hangs under
eventlet's monkey patching).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import ParseError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from services.common import config, logs
from services.common.amqp_rpc import (
    CHECKED_CONTEXT_KEY,
    BusError,
    CallTimeout,
    ConsumerWatch,
    RemoteCallError,
    RpcClient,
    ServiceDown,
)
from services.common.auth import authorize, bearer_token, token_settings, verify_token
from services.common.edge_reads import DEFAULT_READ_TIMEOUT, EdgeReads, edge_reads_for
from services.common.errors import (
    BACKEND_UNAVAILABLE,
    BACKEND_UNAVAILABLE_MESSAGE,
    DeadlineExceeded,
    InvalidArgument,
    VocregError,
    grpc_status_for,
    remote_details,
    rich_status,
)
from services.common.http_gateway import Gateway, HttpServer, HttpSettings
from services.common.metrics import (
    GRPC_HANDLED,
    GRPC_HANDLING,
    GRPC_STARTED,
    RATE_LIMITED,
    SERVICE_SERVING,
    serve,
)
from services.common.protos import access_policies, from_dict, service_proto, to_dict
from services.common.ratelimit import (
    RateLimiter,
    RateLimitSettings,
    client_address,
    grpc_peer_address,
)
from services.common.spec import registry

log = logging.getLogger("vocreg.edge")
access_log = logging.getLogger("vocreg.access")

MIB = 1024 * 1024
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class EdgeSettings:
    def __init__(self):
        self.port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
        self.metrics_port = config.env_int("EDGE_METRICS_PORT", config.DEFAULT_EDGE_METRICS_PORT)
        # Health only, plaintext: Kubernetes' native gRPC probes cannot speak TLS. 0: none.
        self.probe_port = config.env_int("EDGE_PROBE_PORT", 0)
        self.threads = config.env_int("EDGE_THREADS", 16)
        # A batch of 10,000 certificates is about 3 MiB; 16 MiB leaves room and stops abuse.
        self.max_message_bytes = config.env_int("EDGE_MAX_MESSAGE_BYTES", 16 * MIB)
        # Used when the client sets no deadline, and the cap on any deadline.
        self.default_timeout = config.env_float("EDGE_DEFAULT_TIMEOUT", 30.0)
        self.max_timeout = config.env_float("EDGE_MAX_TIMEOUT", 120.0)
        # The health RPC (the worker and its database answer): the health service's status.
        self.health_interval = config.env_float("EDGE_HEALTH_INTERVAL", 5.0)
        # Whether a worker consumes its queue at all: how fast a dead worker is noticed.
        self.liveness_interval = config.env_float("EDGE_LIVENESS_INTERVAL", 0.25)
        self.grace = config.env_float("EDGE_SHUTDOWN_GRACE", 10.0)
        # The longest a read the edge answers itself waits for the database (edge_reads.py).
        self.read_timeout = config.env_float("EDGE_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
        if self.read_timeout <= 0:
            raise SystemExit("configuration error: EDGE_READ_TIMEOUT must be > 0 seconds")
        self.tls_cert_file = config.env("EDGE_TLS_CERT_FILE", "")
        self.tls_key_file = config.env("EDGE_TLS_KEY_FILE", "")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SystemExit("configuration error: set both EDGE_TLS_CERT_FILE and "
                             "EDGE_TLS_KEY_FILE (or neither, for plaintext)")


class Undecodable:
    """What the request deserializer hands over for bytes that are not the request message
    (grpcio would answer INTERNAL and log an ERROR with a traceback if it raised)."""

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size


def tolerant_parser(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception:  # DecodeError, bad UTF-8, nesting too deep: all the caller's bytes
            return Undecodable(len(data))

    return parse


def request_payload(request) -> dict:
    """The request as the worker's dict. A message that decodes but has no JSON form (a
    well-known type out of range, e.g. a Timestamp past year 9999) is the caller's error."""
    try:
        return to_dict(request)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument(f"request: {exc}", reason="MALFORMED_REQUEST") from None


@dataclass
class Outcome:
    """One call's result, whatever the transport: the response message, or the refusal
    (code, message, structured details) every transport shows in its own form."""

    code: grpc.StatusCode
    message: str = ""
    details: dict | None = None
    response: object = None
    identity: object = None  # the caller's Identity once known
    call_id: str = ""
    elapsed: float = 0.0

    def log_fields(self, method: str) -> dict:
        identity = self.identity
        fields = {"method": method, "code": self.code.name,
                  "duration_ms": round(self.elapsed * 1000, 3), "call_id": self.call_id,
                  "role": None if identity is None else (identity.role or "anonymous"),
                  "subject": None if identity is None or identity.anonymous
                  else identity.subject}
        if self.code != grpc.StatusCode.OK:
            fields["reason"] = (self.details or {}).get("reason") or self.code.name
        return fields


class ServiceForwarder:
    """The generic handler of one service: every RPC forwarded to the worker, or answered here
    from the service's database when the service declares it an edge read (`reads`). `invoke`
    is the one implementation of a call (authentication, access policy, rate limit, deadline,
    forwarding, error mapping); gRPC (below) and HTTP/JSON (services/common/http_gateway.py)
    are two ways in."""

    def __init__(self, service: str, client: RpcClient, settings: EdgeSettings,
                 limiter: RateLimiter | None = None, reads: EdgeReads | None = None):
        self.service = service
        self.proto = service_proto(service)
        self.policies = access_policies(service)
        self.client = client
        self.settings = settings
        self.limiter = limiter
        self.reads = reads

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method in self.proto.service_descriptor.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                self._handler(method.name, request_class, response_class),
                request_deserializer=tolerant_parser(request_class),
                response_serializer=response_class.SerializeToString)
        return grpc.method_handlers_generic_handler(self.proto.full_name, handlers)

    def _handler(self, method: str, request_class, response_class):
        full_name = f"/{self.proto.full_name}/{method}"
        labels = ("unary", self.proto.full_name, method)
        latency = GRPC_HANDLING.labels(*labels)
        started_count = GRPC_STARTED.labels(*labels)
        counters = {}  # code -> the method's counter child, looked up once

        def handle(request, context: grpc.ServicerContext):
            started_count.inc()
            metadata = dict(context.invocation_metadata())
            outcome = self.invoke(method, request, response_class,
                                  authorization=metadata.get("authorization"),
                                  peer=grpc_peer_address(context.peer()),
                                  forwarded_for=metadata.get("x-forwarded-for"),
                                  time_remaining=context.time_remaining())
            counter = counters.get(outcome.code)
            if counter is None:
                counter = counters[outcome.code] = GRPC_HANDLED.labels(*labels,
                                                                       outcome.code.name)
            counter.inc()
            latency.observe(outcome.elapsed)
            access_log.info("grpc call", extra={"fields": outcome.log_fields(full_name)})
            if outcome.code != grpc.StatusCode.OK:
                context.abort_with_status(rich_status(outcome.code, outcome.message,
                                                      outcome.details, self.service))
            return outcome.response

        return handle

    def invoke(self, method: str, request, response_class, *, authorization: str | None,
               peer: str, forwarded_for: str | None = None,
               time_remaining: float | None = None) -> Outcome:
        """One call of `method` with a parsed request (or Undecodable): never raises."""
        full_name = f"/{self.proto.full_name}/{method}"
        started = time.perf_counter()
        outcome = Outcome(grpc.StatusCode.OK, call_id=uuid.uuid4().hex)
        try:
            if isinstance(request, Undecodable):
                input_type = self.proto.service_descriptor.methods_by_name[method].input_type
                raise InvalidArgument(f"request: not a valid {input_type.full_name} message",
                                      reason="MALFORMED_REQUEST")
            outcome.response = self.forward(method, response_class, request, outcome,
                                            authorization, peer, forwarded_for, time_remaining)
        except VocregError as exc:  # refused at the edge: input, auth, policy, limit, deadline
            outcome.code, outcome.message, outcome.details = exc.status, exc.message, exc.details()
        except RemoteCallError as exc:
            outcome.code = grpc_status_for(exc.exc_type)
            if outcome.code == grpc.StatusCode.INTERNAL:
                outcome.message = "internal error"
                log.error("%s: the worker failed with %s", full_name, exc.exc_type,
                          extra={"fields": {"call_id": outcome.call_id}})
            elif exc.exc_type in BACKEND_UNAVAILABLE:
                outcome.message = BACKEND_UNAVAILABLE_MESSAGE
                outcome.details = {"reason": "BACKEND_UNAVAILABLE"}
                log.warning("%s: the worker could not reach its backend (%s)", full_name,
                            exc.exc_type, extra={"fields": {"call_id": outcome.call_id}})
            else:
                outcome.message = exc.value
                outcome.details = remote_details(exc.exc_type, exc.exc_args)
        except CallTimeout:
            outcome.code = grpc.StatusCode.DEADLINE_EXCEEDED
            outcome.message = "the service did not answer in time"
        except ServiceDown:
            outcome.code = grpc.StatusCode.UNAVAILABLE
            outcome.message = f"the {self.service} service is not running"
            outcome.details = {"reason": "SERVICE_NOT_RUNNING"}
        except BusError as exc:
            outcome.code, outcome.message = (grpc.StatusCode.UNAVAILABLE,
                                             "the message bus is unavailable")
            outcome.details = {"reason": "BUS_UNAVAILABLE"}
            log.warning("%s: bus unavailable (%s)", full_name, exc)
        except ParseError:
            outcome.code, outcome.message = grpc.StatusCode.INTERNAL, "internal error"
            log.error("%s: the worker's answer does not fit %s", full_name,
                      response_class.DESCRIPTOR.full_name,
                      extra={"fields": {"call_id": outcome.call_id}})
        except Exception:
            outcome.code, outcome.message = grpc.StatusCode.INTERNAL, "internal error"
            log.exception("%s: unexpected failure", full_name,
                          extra={"fields": {"call_id": outcome.call_id}})
        if outcome.code != grpc.StatusCode.OK:
            outcome.response = None
        outcome.elapsed = time.perf_counter() - started
        return outcome

    def forward(self, method, response_class, request, outcome: Outcome, authorization,
                peer, forwarded_for, time_remaining):
        policy = self.policies.get(method)
        token = bearer_token(authorization)
        if self.limiter is not None and policy is not None and policy.public and not token:
            # Anonymous calls of public RPCs, before any work (services/common/ratelimit.py).
            address = client_address(peer, forwarded_for, self.limiter.settings.trusted_proxies)
            self.limiter.check(address, method, f"/{self.proto.full_name}/{method}")
        identity = verify_token(token, at_edge=True)
        outcome.identity = identity
        authorize(policy, identity, f"{self.proto.full_name}/{method}")
        timeout = self.settings.default_timeout if time_remaining is None else time_remaining
        timeout = min(timeout, self.settings.max_timeout)
        if timeout <= 0.001:
            raise DeadlineExceeded("the deadline passed before the call was sent")
        if self.reads is not None and method in self.reads:
            # Off the bus: the worker's own code on the edge's read-only connection.
            result = self.reads.call(method, request, request_payload(request), timeout)
            return from_dict(result, response_class)
        # The answer is parsed into its message below: the worker need not check it first
        # (services/common/api.py).
        context_data = {CHECKED_CONTEXT_KEY: f"{self.service}.{method}"}
        if token:
            context_data["auth_token"] = token
        result = self.client.call(self.service, method, request_payload(request), context_data,
                                  timeout, outcome.call_id)
        return from_dict(result, response_class)


HEALTH_CHECK_TIMEOUT = 2.0  # seconds a worker has to answer `health`


class HealthWatcher(threading.Thread):
    """Marks each service SERVING while a worker consumes its queue and answers `health`
    (which pings its database), and, for a service whose reads the edge answers itself, while
    the edge's own connection to that database answers a ping too; NOT_SERVING otherwise (the
    log says which). The service's name stands for all its RPCs: an edge that can answer its
    reads but not forward the rest, or the reverse, is not ready for the service's traffic.

    Consumer presence comes from the ConsumerWatch every fraction of a second: a worker gone
    is NOT_SERVING at once, a worker back is checked at once. The health RPC runs every
    EDGE_HEALTH_INTERVAL. The overall status ("") is the edge's own and stays SERVING until
    shutdown, so a worker outage makes the pod unready (readiness probes the service) without
    restarting the edge.
    """

    def __init__(self, servicer, client: RpcClient, watch: ConsumerWatch, services, settings,
                 reads: dict[str, EdgeReads] | None = None):
        super().__init__(name="health-watcher", daemon=True)
        self.servicer, self.client, self.watch = servicer, client, watch
        self.services, self.settings = services, settings
        self.reads = reads or {}
        self.stopping = threading.Event()
        self.wake = threading.Event()

    def presence_changed(self, service: str, present: bool) -> None:
        """ConsumerWatch callback (its thread): act now, not at the next interval."""
        if not present:
            self.mark(service, False)
        self.wake.set()

    def mark(self, service: str, serving: bool) -> None:
        SERVICE_SERVING.labels(service_proto(service).full_name).set(1 if serving else 0)
        self.servicer.set(service_proto(service).full_name,
                          health_pb2.HealthCheckResponse.SERVING if serving
                          else health_pb2.HealthCheckResponse.NOT_SERVING)

    def check_once(self) -> None:
        for name in self.services:
            serving = False
            if self.watch.present(name):
                try:
                    # Its own timeout, not the interval: a short interval (tests use 0.5 s)
                    # must not turn a busy but live worker's 0.6 s answer into NOT_SERVING.
                    self.client.call(name, "health", None, None, timeout=HEALTH_CHECK_TIMEOUT)
                    serving = True
                except Exception as exc:
                    log.warning("health: %s worker not answering (%s)", name, type(exc).__name__)
            if name in self.reads and not self.reads[name].ping(HEALTH_CHECK_TIMEOUT):
                serving = False
            self.mark(name, serving)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.settings.health_interval)
            self.wake.clear()
            if not self.stopping.is_set():
                self.check_once()


def reflection_v1_file() -> None:
    """grpc.reflection.v1 into the default descriptor pool, so reflection can describe itself.
    grpcio-reflection ships v1alpha only; v1 is the same file under a new package."""
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(REFLECTION_V1)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name, file.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    file.ClearField("options")
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for method in file.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    pool.Add(file)


def add_reflection(server: grpc.Server, names: list[str]) -> None:
    """Server reflection v1alpha and v1 (what grpcurl and current clients ask first). The two
    are the same messages on the wire, so one servicer answers both."""
    reflection_v1_file()
    servicer = reflection.ReflectionServicer([*names, reflection.SERVICE_NAME, REFLECTION_V1])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))


def tls_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    """Server credentials from PEM files, read again when they change on disk (a Kubernetes
    Secret volume is updated in place when the certificate is renewed): new connections get
    the new certificate without a restart."""

    def stamp():
        return tuple(os.stat(path).st_mtime_ns for path in (cert_file, key_file))

    def load():
        with open(key_file, "rb") as key, open(cert_file, "rb") as cert:
            return grpc.ssl_server_certificate_configuration([(key.read(), cert.read())])

    try:
        seen, initial = [stamp()], load()
    except OSError as exc:
        raise SystemExit(f"configuration error: cannot read the TLS certificate or key "
                         f"(EDGE_TLS_CERT_FILE / EDGE_TLS_KEY_FILE): {exc}") from None

    def fetch():
        try:
            current = stamp()
            if current == seen[0]:
                return None
            configuration = load()
        except OSError as exc:
            log.warning("TLS certificate unreadable, keeping the one in use: %s", exc)
            return None
        seen[0] = current
        log.info("TLS certificate reloaded")
        return configuration

    return grpc.dynamic_ssl_server_credentials(initial, fetch)


class UnknownMethod(grpc.GenericRpcHandler):
    """Last of the handlers: a method nobody serves is UNIMPLEMENTED with the same structured
    details as every other refusal (grpcio's own answer carries none)."""

    def __init__(self, services):
        self.domains = {service_proto(name).full_name: name for name in services}

    def service(self, handler_call_details):
        method = handler_call_details.method
        service_name = method.strip("/").partition("/")[0]
        domain = self.domains.get(service_name, "edge")

        def refuse(request, context):
            access_log.info("grpc call", extra={"fields": {
                "method": method[:200], "code": "UNIMPLEMENTED", "reason": "METHOD_NOT_FOUND"}})
            context.abort_with_status(rich_status(
                grpc.StatusCode.UNIMPLEMENTED, f"no method {method[:100]} here",
                {"reason": "METHOD_NOT_FOUND"}, domain))

        return grpc.unary_unary_rpc_method_handler(refuse)  # bytes in: nothing to decode


def forwarders_for(services, client, settings,
                   reads: dict[str, EdgeReads] | None = None) -> dict[str, ServiceForwarder]:
    """One forwarder per service, sharing one rate limiter (gRPC and HTTP count together)."""
    limiter = RateLimiter(RateLimitSettings(),
                          on_limited=lambda method: RATE_LIMITED.labels(method).inc())
    reads = reads or {}
    return {name: ServiceForwarder(name, client, settings, limiter, reads.get(name))
            for name in services}


def build_server(forwarders: dict[str, ServiceForwarder], settings):
    services = list(forwarders)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="edge"),
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", settings.max_message_bytes),
                 ("grpc.so_reuseport", 0)])
    for forwarder in forwarders.values():
        server.add_generic_rpc_handlers((forwarder.generic_handler(),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service_proto(n).full_name for n in services]
    add_reflection(server, names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    server.add_generic_rpc_handlers((UnknownMethod(services),))
    return server, health_servicer


def probe_server(health_servicer, port: int) -> grpc.Server:
    """The health service alone, plaintext, for Kubernetes' native gRPC probes."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe"),
                         options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"0.0.0.0:{port}") == 0:
        raise SystemExit(f"edge: cannot listen on port {port} (in use?); set EDGE_PROBE_PORT")
    return server


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.edge")
    parser.add_argument("--services", default=",".join(registry()),
                        help="comma-separated service names (default: every declared service)")
    args = parser.parse_args(argv)
    logs.configure(config.env("LOG_LEVEL", "INFO"), "edge")
    try:
        run(args)
    except SystemExit as exc:
        sys.exit(logs.fail(log, exc.code))


def run(args) -> None:
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = [s for s in services if s not in registry()]
    if unknown:
        raise SystemExit(f"edge: no service {', '.join(unknown)}; declared: {', '.join(registry())}")
    tokens = token_settings()
    if tokens.production:
        log.info("tokens: identity provider %s (JWKS), %s", tokens.issuer,
                 "/".join(tokens.algorithms))
    elif config.jwt_secret() == config.DEV_JWT_SECRET:
        log.warning("VOCREG_JWT_SECRET is not set: using the development secret")

    settings = EdgeSettings()
    amqp = config.amqp_uri()
    watch = ConsumerWatch(amqp, services, interval=settings.liveness_interval)
    client = RpcClient(amqp, watch)
    reads = edge_reads_for([registry()[name] for name in services], settings.read_timeout)
    forwarders = forwarders_for(services, client, settings, reads)
    server, health_servicer = build_server(forwarders, settings)
    http_settings = HttpSettings()
    http = HttpServer(Gateway(forwarders, settings.max_message_bytes), http_settings.port,
                      http_settings.threads, settings.max_message_bytes) \
        if http_settings.port else None
    address = f"0.0.0.0:{settings.port}"
    if settings.tls_cert_file:
        port = server.add_secure_port(address, tls_credentials(settings.tls_cert_file,
                                                               settings.tls_key_file))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"edge: cannot listen on port {settings.port} (in use?); set GRPC_PORT")
    probes = probe_server(health_servicer, settings.probe_port) if settings.probe_port else None
    try:
        serve(settings.metrics_port)
    except OSError as exc:
        raise SystemExit(f"edge: cannot serve metrics on port {settings.metrics_port} "
                         f"({exc.strerror}); set EDGE_METRICS_PORT") from None
    watcher = HealthWatcher(health_servicer, client, watch, services, settings, reads)
    for name in services:
        watcher.mark(name, False)
    watch.on_change = watcher.presence_changed
    watch.check_once()
    server.start()
    if http is not None:
        http.start()
    if probes is not None:
        probes.start()
    watcher.check_once()
    watch.start()
    watcher.start()
    log.info("edge listening on :%d (%s) for %s; HTTP/JSON %s", port,
             "TLS" if settings.tls_cert_file else "plaintext", ", ".join(services),
             f"on :{http.port}" if http is not None else "off")
    for name, read in reads.items():
        log.info("edge answers %s itself from the %s database", ", ".join(read.reads), name)

    stopped = threading.Event()

    def shutdown(signum, frame):
        if stopped.is_set():
            return
        stopped.set()
        log.info("edge stopping (signal %d): draining for up to %.0fs", signum, settings.grace)
        watcher.stopping.set()
        watcher.wake.set()
        watch.stopping.set()
        health_servicer.enter_graceful_shutdown()
        if http is not None:
            http.stop()
        if probes is not None:
            probes.stop(settings.grace)
        server.stop(settings.grace)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()
    client.close()
    for read in reads.values():
        read.close()
    log.info("edge stopped")


if __name__ == "__main__":
    main()
