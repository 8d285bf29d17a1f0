"""Prometheus metrics: RPC latency and errors for workers and the edge, events per type.

One registry per process (prometheus_client's default). Workers serve it on METRICS_PORT,
the edge on EDGE_METRICS_PORT; port 0 serves nothing (tests run several containers at once).
"""
from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Label names: a worker process runs one service, and Prometheus attaches the service as a
# target label (deploy/prometheus/prometheus.yml, the PodMonitors in k8s/), so no metric here
# carries a `service` label of its own: one would collide with the target's and come out as
# `exported_service`. Outcomes are spelled as gRPC status code names everywhere (OK,
# INVALID_ARGUMENT, ..., INTERNAL), at the edge and in the workers alike.
WORKER_CALLS = Counter(
    "vocreg_worker_handled_total",
    "Worker entrypoint calls (RPC, event handlers, timers) by their outcome as a gRPC code.",
    ["entrypoint", "grpc_code"])
WORKER_LATENCY = Histogram(
    "vocreg_worker_handling_seconds", "Worker entrypoint latency.", ["entrypoint"],
    buckets=LATENCY_BUCKETS)
# The edge's metrics under the names of the gRPC ecosystem's interceptors (go-grpc-prometheus,
# py-grpc-prometheus), so their dashboards and alerts work unchanged.
GRPC_STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"])
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, whatever their status.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"])
GRPC_HANDLING = Histogram(
    "grpc_server_handling_seconds", "Latency of the RPCs the server handled.",
    ["grpc_type", "grpc_service", "grpc_method"], buckets=LATENCY_BUCKETS)
SERVICE_SERVING = Gauge(
    "vocreg_edge_service_serving",
    "1 while the edge sees a worker of the service consuming and answering its health check "
    "(what its gRPC health service reports for the service), else 0.", ["grpc_service"])
HTTP_CALLS = Counter(
    "vocreg_http_calls_total", "HTTP/JSON calls answered by the edge's gateway, by RPC (or "
    "page) and the gRPC code of the answer.", ["method", "grpc_code"])
HTTP_LATENCY = Histogram(
    "vocreg_http_call_seconds", "HTTP/JSON latency at the edge's gateway.", ["method"],
    buckets=LATENCY_BUCKETS)
RATE_LIMITED = Counter(
    "vocreg_rate_limited_total", "Calls of public RPCs refused over the per-address rate limit "
    "(RESOURCE_EXHAUSTED / HTTP 429), gRPC and HTTP together.", ["method"])
EVENTS_PUBLISHED = Counter(
    "vocreg_events_total", "Business events published, by type (each state change is one).",
    ["event_type"])
OUTBOX_PENDING = Gauge(
    "vocreg_outbox_pending", "Events stored but not yet published, seen by the last relay.")
PUBLISH_FAILURES = Counter(
    "vocreg_event_publish_failures_total", "Publish attempts that failed; the relay retries.")
WRITE_CONFLICTS = Counter(
    "vocreg_write_conflicts_total",
    "Conditional writes refused because another writer changed the document first (a racing "
    "call, or two workers sweeping at once); the loser reads again or skips.", ["document"])

_served_ports: set[int] = set()


def serve(port: int) -> None:
    """Serve /metrics on `port` once per process; 0 disables."""
    if port and port not in _served_ports:
        start_http_server(port)
        _served_ports.add(port)
        log.info("metrics on :%d/metrics", port)


def __getattr__(name):
    # WorkerMetrics is a nameko dependency (and so imports eventlet); it lives with the worker
    # base in services/common/entrypoints.py, so the edge can import this module without either.
    if name == "WorkerMetrics":
        from services.common.entrypoints import WorkerMetrics

        return WorkerMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
