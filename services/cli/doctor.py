"""`vocreg doctor`: is this deployment working, part by part, one line per check with a fix.

Checks, in the order a problem would cascade: the edge (reachable, its own health), each
declared service's worker through the edge's health service (SERVING only while a worker
consumes the service's queue and answers a health RPC that pings its database), the broker
and the database directly (where this machine can reach them), every metrics endpoint, and
the token (its claims, its expiry, and whether the edge accepts it).
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.client import Api, Refusal
from services.cli.config import Settings
from services.common import config as platform_config
from services.common.protos import access_policies, service_proto
from services.common.spec import registry

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
TIMEOUT = 3.0


@dataclass
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""


def _host(address: str) -> str:
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]") or "localhost"


def check_edges(api: Api, settings: Settings) -> tuple[list[Check], dict[str, str]]:
    """Each edge's own health, then each service's; the services' states by name."""
    checks, states = [], {}
    addresses = {settings.address_for(name) for name in registry()}
    reachable = {}
    for address in sorted(addresses):
        stub = health_pb2_grpc.HealthStub(api.channel(address))
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT).status
            reachable[address] = True
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            checks.append(Check(OK if status == health_pb2.HealthCheckResponse.SERVING else FAIL,
                                f"edge {address}", name,
                                "" if status == health_pb2.HealthCheckResponse.SERVING else
                                "the edge is shutting down or starting: wait, or restart it"))
        except grpc.RpcError as exc:
            reachable[address] = False
            checks.append(Check(FAIL, f"edge {address}", f"unreachable ({exc.code().name}: "
                                f"{(exc.details() or '')[:80]})",
                                "start the platform (`make run`), or point --address / "
                                "VOCREG_ADDRESS at its edge (add --tls if it serves TLS)"))
    for name, declared in registry().items():
        address = settings.address_for(name)
        if not reachable.get(address):
            states[name] = "UNREACHABLE"
            checks.append(Check(SKIP, f"worker {name}", f"its edge {address} is unreachable"))
            continue
        stub = health_pb2_grpc.HealthStub(api.channel(address))
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=declared.proto),
                                timeout=TIMEOUT).status
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                states[name] = "NOT_DEPLOYED"
                checks.append(Check(SKIP, f"worker {name}", f"not deployed at {address}",
                                    f"if it should be: start the edge with --services "
                                    f"including {name}, or name its edge in the profile's "
                                    f"addresses.{name}"))
                continue
            states[name] = exc.code().name
            checks.append(Check(FAIL, f"worker {name}", f"health check failed: {exc.code().name}",
                                "see the edge's log"))
            continue
        states[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        if status == health_pb2.HealthCheckResponse.SERVING:
            checks.append(Check(OK, f"worker {name}", "SERVING (worker and its database answer)"))
        else:
            checks.append(Check(FAIL, f"worker {name}", states[name] + " (no worker consumes its "
                                "queue, or it or its database does not answer)",
                                f"start it: `python -m services.common.worker {name}` "
                                "(`make run` starts every worker); read its log; then "
                                "`vocreg doctor` again"))
    return checks, states


def check_broker(settings: Settings) -> Check:
    uri = settings.amqp_uri or platform_config.amqp_uri()
    shown = _redact(uri)
    try:
        from kombu import Connection  # noqa: PLC0415 (pure-Python AMQP; no eventlet)

        with Connection(uri, connect_timeout=TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=TIMEOUT)
            server = connection.connection.server_properties or {}
        version = server.get("version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        return Check(OK, "broker", f"{shown} answers (RabbitMQ {version})".replace(" ()", ""))
    except Exception as exc:  # socket errors, access refused, no such vhost: all one answer
        return Check(FAIL, "broker", f"{shown}: {type(exc).__name__}: {str(exc)[:100]}",
                     "start RabbitMQ (`rabbitmq-server -detached`), or set AMQP_URI / "
                     "--amqp-uri to the platform's broker and vhost (user and permissions)")


def check_database(settings: Settings) -> Check:
    uri = settings.mongo_uri or platform_config.mongo_uri("filing")
    shown = _redact(uri)
    try:
        from pymongo import MongoClient  # noqa: PLC0415

        client = MongoClient(uri, serverSelectionTimeoutMS=int(TIMEOUT * 1000),
                             connectTimeoutMS=int(TIMEOUT * 1000))
        try:
            started = time.perf_counter()
            client.admin.command("ping")
            elapsed = (time.perf_counter() - started) * 1000
        finally:
            client.close()
        return Check(OK, "database", f"{shown} answers ping in {elapsed:.0f} ms")
    except Exception as exc:  # ServerSelectionTimeoutError, ConfigurationError, auth
        said = str(exc).split(" (configured timeouts")[0]  # pymongo's settings dump: noise
        return Check(FAIL, "database", f"{shown}: {type(exc).__name__}: {said[:100]}",
                     "start it (`make run` starts the local one; "
                     "`python -m services.localdb status`), or set MONGO_URI / --mongo-uri")


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return uri


def metrics_targets(settings: Settings, states: dict[str, str]) -> dict[str, str]:
    """The profile's or --metrics' endpoints; else the local layout (`make run`): the edge on
    9100 and each deployed worker on its declared port, on the edge's host."""
    if settings.metrics:
        return dict(settings.metrics)
    host = _host(settings.address)
    targets = {"edge": f"http://{host}:{platform_config.DEFAULT_EDGE_METRICS_PORT}/metrics"}
    for name, declared in registry().items():
        if states.get(name) not in ("NOT_DEPLOYED",):
            targets[name] = f"http://{host}:{declared.metrics_port}/metrics"
    return targets


def check_metrics(name: str, url: str) -> Check:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 (http only)
            body = answer.read(1 << 20).decode("utf-8", "replace")
        if "# HELP" not in body and "# TYPE" not in body:
            return Check(FAIL, f"metrics {name}", f"{url} answers, but not Prometheus text",
                         "point --metrics at the process's /metrics")
        samples = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        return Check(OK, f"metrics {name}", f"{url} ({samples} samples)")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(FAIL, f"metrics {name}", f"{url}: {reason}",
                     "is the process running with its metrics port (EDGE_METRICS_PORT, "
                     "METRICS_PORT)? or name the endpoint: --metrics NAME=URL")


def _claims(token: str) -> dict:
    import jwt  # noqa: PLC0415

    return jwt.decode(token, options={"verify_signature": False, "verify_exp": False})


def check_token(api: Api, settings: Settings, states: dict[str, str]) -> list[Check]:
    if settings.token is None:
        return [Check(WARN, "token", "none: only public commands will work (verify, register)",
                      "set VOCREG_TOKEN or --token (development: "
                      "`python -m services.common.auth ROLE ...`)")]
    try:
        claims = _claims(settings.token)
    except Exception as exc:  # not a JWT at all
        return [Check(FAIL, "token", f"not a JWT ({type(exc).__name__})",
                      "give the token itself (three base64 parts separated by dots)")]
    who = f"role {claims.get('role', '?')}, sub {claims.get('sub', '?')}"
    if claims.get("institution_id"):
        who += f", institution {claims['institution_id']}"
    if claims.get("party_id"):
        who += f", party {claims['party_id']}"
    checks = []
    expires = claims.get("exp")
    if isinstance(expires, (int, float)):
        left = expires - time.time()
        if left <= 0:
            return [Check(FAIL, "token", f"{who}: expired {_span(-left)} ago",
                          "get a new token (development: `python -m services.common.auth "
                          "ROLE ...`)")]
        checks.append(Check(WARN if left < 600 else OK, "token",
                            f"{who}; expires in {_span(left)}"))
    else:
        checks.append(Check(WARN, "token", f"{who}; no expiry"))
    checks.append(_edge_accepts(api, claims, states))
    return checks


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def _edge_accepts(api: Api, claims: dict, states: dict[str, str]) -> Check:
    """The edge verifies the token before anything else: any answer but UNAUTHENTICATED to a
    call that needs one means it was accepted. A read whose policy leaves the role out is
    refused at the edge (PERMISSION_DENIED) without bothering a worker; failing that, any read
    that needs a token."""
    role = claims.get("role")
    serving = [n for n, state in states.items() if state == "SERVING"]
    candidates = []
    for name in serving:
        for method, policy in access_policies(name).items():
            described = service_proto(name).service_descriptor.methods_by_name[method]
            if policy is None or policy.public or \
                    described.GetOptions().idempotency_level != described.GetOptions().NO_SIDE_EFFECTS:
                continue
            candidates.append((role in policy.roles, name, method))
    if not candidates:
        return Check(SKIP, "token accepted", "no serving service to ask")
    _, name, method = sorted(candidates)[0]  # False (role left out) sorts first
    try:
        api.call(name, method, {}, timeout=TIMEOUT)
    except Refusal as refused:
        if refused.status == grpc.StatusCode.UNAUTHENTICATED:
            return Check(FAIL, "token accepted", f"the edge refuses it: {refused.message}",
                         "a token for this platform (same VOCREG_JWT_SECRET, or the identity "
                         "provider's issuer and audience)")
        if refused.status == grpc.StatusCode.UNAVAILABLE and not refused.reason:
            return Check(SKIP, "token accepted", "the edge is unreachable")
    return Check(OK, "token accepted", f"by the edge ({name}.{method} answered past "
                                       "authentication)")


def run(api: Api, settings: Settings, infrastructure: bool = True) -> list[Check]:
    """Every check, in a stable order. After the edges (the others depend on what they say),
    the checks run side by side: a broken platform answers in one timeout, not in their sum."""
    checks, states = check_edges(api, settings)
    jobs = []
    if infrastructure:
        jobs += [(check_broker, settings), (check_database, settings)]
    jobs += [(check_metrics, name, url) for name, url in metrics_targets(settings, states).items()]
    jobs.append((check_token, api, settings, states))
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="doctor") as pool:
        futures = [pool.submit(job[0], *job[1:]) for job in jobs]
        for future in futures:
            found = future.result()
            checks.extend(found if isinstance(found, list) else [found])
    return checks
