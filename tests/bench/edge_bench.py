"""The edge's rows of `make bench` (issue 18), each against its baseline measured in the same
round, on the same broker, by the same process:

  sequential p50   edge -> worker (ListRegister through gRPC, the edge and the bus) against
                   nameko -> worker (the same worker method over nameko's own RPC client):
                   the edge's share of a call. Goal <= 1.2x.
  throughput       edge ListRegister calls/s with 1, 8 and 32 concurrent callers against a bare
                   nameko echo (a worker method that returns its argument, called with nameko's
                   client) at the same concurrency: the edge's path against the floor of any
                   nameko call. Goal >= 0.9x at 8 and 32.

Also printed for context: bare grpcio echo, the edge answering health by itself, a bearer
token's cost. Callers are threads of this process, each with its own client (a nameko
ClusterRpcProxy, or a stub on a shared grpc channel), after a warm-up.
"""
from __future__ import annotations

import statistics
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.grpc_client import Filing

SEQUENTIAL_CALLS = 400
WARMUP = 40
CONCURRENT_SECONDS = 3.0
CALLERS = (1, 8, 32)
# A figure and its baseline are measured in alternating slices (A B B A A B ...), so the drift
# of a shared machine falls on both alike.
SLICES = 6


def summary(label: str, samples: list[float], calls: int, elapsed: float, **extra) -> dict:
    samples = sorted(samples)
    return {"label": label, **extra, "calls_per_s": calls / elapsed,
            "p50_ms": statistics.median(samples) * 1000,
            "p99_ms": samples[max(0, int(len(samples) * 0.99) - 1)] * 1000}


def sequential(label: str, call, calls: int = SEQUENTIAL_CALLS) -> dict:
    """One call at a time, after a warm-up."""
    return interleaved({label: call}, calls, slices=1)[label]


def interleaved(calls_by_label: dict, calls: int = SEQUENTIAL_CALLS, slices: int = SLICES,
                warmup: int = WARMUP) -> dict:
    """Each call one at a time, `calls` of each in `slices` alternating runs."""
    for call in calls_by_label.values():
        for _ in range(warmup):
            call()
    samples = {label: [] for label in calls_by_label}
    elapsed = dict.fromkeys(calls_by_label, 0.0)
    order = list(calls_by_label)
    for i in range(slices):
        for label in (order if i % 2 == 0 else order[::-1]):
            call, own = calls_by_label[label], samples[label]
            started = time.perf_counter()
            for _ in range(calls // slices):
                t0 = time.perf_counter()
                call()
                own.append(time.perf_counter() - t0)
            elapsed[label] += time.perf_counter() - started
    return {label: summary(label, samples[label], len(samples[label]), elapsed[label])
            for label in calls_by_label}


def _slice(calls: list, seconds: float):
    """Every call of `calls` looping in its own thread for `seconds`: (count, samples)."""
    start, stop = threading.Barrier(len(calls) + 1), threading.Event()
    counts, latencies, failures = [0] * len(calls), [[] for _ in calls], []

    def loop(i: int) -> None:
        call, own = calls[i], latencies[i]
        start.wait()
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                call()
                own.append(time.perf_counter() - t0)
                counts[i] += 1
        except Exception as exc:  # a failed call invalidates the figure: report it
            failures.append(exc)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if failures:
        raise RuntimeError(f"{len(failures)} callers failed: {failures[0]!r}")
    return sum(counts), [s for own in latencies for s in own], time.perf_counter() - began


def concurrent(loads: dict, callers: int, seconds: float = CONCURRENT_SECONDS,
               slices: int = SLICES) -> dict:
    """Calls/s of each load (label -> make_call, one call function per caller thread) with
    `callers` concurrent callers, over `seconds` each, in alternating slices."""
    calls = {label: [make() for _ in range(callers)] for label, make in loads.items()}
    for own in calls.values():
        for call in own:
            for _ in range(5):
                call()
    totals = {label: [0, [], 0.0] for label in loads}
    order = list(loads)
    for i in range(slices):
        for label in (order if i % 2 == 0 else order[::-1]):
            count, samples, elapsed = _slice(calls[label], seconds / slices)
            totals[label][0] += count
            totals[label][1].extend(samples)
            totals[label][2] += elapsed
    return {label: summary(label, samples, count, elapsed, callers=callers)
            for label, (count, samples, elapsed) in totals.items()}


class NamekoClients:
    """ClusterRpcProxies, one per caller thread, closed together."""

    def __init__(self, amqp_uri: str):
        self.config = {"AMQP_URI": amqp_uri}
        self.proxies = []

    def new(self):
        proxy = ClusterRpcProxy(self.config, timeout=30)
        cluster = proxy.start()
        self.proxies.append(proxy)
        return cluster

    def close(self):
        for proxy in self.proxies:
            proxy.stop()


def wait_for_echo(cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.bench_echo.echo({"x": 1})
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def run_round(plat, echo_port: int) -> dict:
    """One round of every edge row and its baselines: {name: figure dict}."""
    results = {}
    echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_port}")
    grpc.channel_ready_future(echo_channel).result(timeout=20)
    echo = echo_channel.unary_unary("/bench.Echo/Echo")
    payload = b"x" * 64
    health = health_pb2_grpc.HealthStub(plat.channel)
    public = Filing(plat.channel)
    with_token = Filing(plat.channel, "regulator")
    nameko = NamekoClients(plat.amqp_uri)
    try:
        cluster = nameko.new()
        wait_for_echo(cluster)
        results["bare grpcio"] = sequential("bare grpcio", lambda: echo(payload, timeout=5))
        results["edge health"] = sequential("edge health", lambda: health.Check(
            health_pb2.HealthCheckRequest(), timeout=5))
        results.update(interleaved({
            "bare nameko": lambda: cluster.bench_echo.echo({"x": 1}),
            "nameko->worker": lambda: cluster.filing.ListRegister({}),
            "edge->worker": lambda: public.ListRegister({}),
            "edge->worker+auth": lambda: with_token.ListRegister({})}))

        def echo_caller():
            own = nameko.new()
            return lambda: own.bench_echo.echo({"x": 1})

        for callers in CALLERS:
            measured = concurrent({"bare nameko": echo_caller,
                                   "edge->worker": lambda: (lambda: public.ListRegister({}))},
                                  callers)
            results[f"bare nameko x{callers}"] = measured["bare nameko"]
            results[f"edge->worker x{callers}"] = measured["edge->worker"]
    finally:
        nameko.close()
        echo_channel.close()
    return results


def rows(results: dict) -> list[dict]:
    """The goal rows: figure, baseline, ratio, goal."""
    out = [{"row": "edge->worker p50 / nameko->worker p50 (sequential)",
            "figure": results["edge->worker"]["p50_ms"], "unit": "ms",
            "baseline": results["nameko->worker"]["p50_ms"], "goal": "<= 1.2",
            "ratio": results["edge->worker"]["p50_ms"] / results["nameko->worker"]["p50_ms"]}]
    for callers in CALLERS:
        edge = results[f"edge->worker x{callers}"]["calls_per_s"]
        bare = results[f"bare nameko x{callers}"]["calls_per_s"]
        out.append({"row": f"edge ListRegister calls/s / bare nameko echo, {callers} callers",
                    "figure": edge, "unit": "calls/s", "baseline": bare, "ratio": edge / bare,
                    "goal": ">= 0.9" if callers > 1 else "(context)"})
    return out
