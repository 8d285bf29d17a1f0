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
token's cost, and the split of a throughput row into the edge's path and the database:
  edge ListAreas   the same path to the same worker for a method that reads no database (the
                   configured areas): edge ListAreas calls/s against the bare nameko echo is
                   the edge's path against nameko's floor, with nothing else in between;
  nameko ListRegister at 8 and 32 callers: the same worker method over nameko's own client;
  CPU per call     at 8 callers, the milliseconds of CPU each process spends per call (the
                   edge, the worker, the nameko echo worker, the database server, the broker,
                   the callers): on two saturated cores, throughput is about 2 s / the sum,
                   so the sums say what a ratio can reach, and which process to make cheaper.
Callers are threads of this process, each with its own client (a nameko ClusterRpcProxy, or a
stub on a shared grpc channel), after a warm-up.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nameko.standalone.rpc import ClusterRpcProxy

from tests.bench.certificates_bench import cpu_seconds
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
               slices: int = SLICES, pids: dict | None = None) -> dict:
    """Calls/s of each load (label -> make_call, one call function per caller thread) with
    `callers` concurrent callers, over `seconds` each, in alternating slices; with `pids`
    (name -> pid), each figure also has `cpu_ms`: each process's CPU per call."""
    calls = {label: [make() for _ in range(callers)] for label, make in loads.items()}
    for own in calls.values():
        for call in own:
            for _ in range(5):
                call()
    totals = {label: [0, [], 0.0] for label in loads}
    cpu = {label: dict.fromkeys(pids or (), 0.0) for label in loads}
    order = list(loads)
    for i in range(slices):
        for label in (order if i % 2 == 0 else order[::-1]):
            before = cpu_now(pids or {})
            count, samples, elapsed = _slice(calls[label], seconds / slices)
            for name, used in cpu_now(pids or {}).items():
                cpu[label][name] += used - before[name]
            totals[label][0] += count
            totals[label][1].extend(samples)
            totals[label][2] += elapsed
    out = {}
    for label, (count, samples, elapsed) in totals.items():
        out[label] = summary(label, samples, count, elapsed, callers=callers)
        if pids:
            out[label]["cpu_ms"] = {name: used * 1000 / count for name, used in cpu[label].items()}
    return out


def cpu_now(pids: dict) -> dict:
    """CPU seconds so far of each named process (a process gone counts as 0)."""
    used = {}
    for name, pid in pids.items():
        try:
            used[name] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            used[name] = 0.0
    return used


def broker_pid() -> int | None:
    """The local RabbitMQ node's Erlang VM (shared: other users of the broker count too)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None


def process_pids(plat, echo_pid: int, database_pid: int | None) -> dict:
    """The processes whose CPU a throughput figure is split into."""
    pids = {"edge": plat.procs["edge"].pid, "worker": plat.procs["worker"].pid,
            "echo worker": echo_pid, "database": database_pid, "broker": broker_pid(),
            "callers": os.getpid()}
    return {name: pid for name, pid in pids.items() if pid is not None}


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


CPU_CALLERS = 8  # the concurrency at which each process's CPU per call is reported


def run_round(plat, echo_port: int, pids: dict | None = None) -> dict:
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
            "edge->worker+auth": lambda: with_token.ListRegister({}),
            "nameko ListAreas": lambda: cluster.filing.ListAreas({}),
            "edge ListAreas": lambda: public.ListAreas({})}))

        def echo_caller():
            own = nameko.new()
            return lambda: own.bench_echo.echo({"x": 1})

        def nameko_register_caller():
            own = nameko.new()
            return lambda: own.filing.ListRegister({})

        for callers in CALLERS:
            loads = {"bare nameko": echo_caller,
                     "edge->worker": lambda: (lambda: public.ListRegister({})),
                     "edge ListAreas": lambda: (lambda: public.ListAreas({}))}
            if callers > 1:
                loads["nameko ListRegister"] = nameko_register_caller
            measured = concurrent(loads, callers,
                                  pids=pids if callers == CPU_CALLERS else None)
            for label, figure in measured.items():
                results[f"{label} x{callers}"] = figure
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
    for callers in CALLERS:
        path = results[f"edge ListAreas x{callers}"]["calls_per_s"]
        bare = results[f"bare nameko x{callers}"]["calls_per_s"]
        out.append({"row": f"  (context) edge ListAreas, no database / echo, {callers} callers",
                    "figure": path, "unit": "calls/s", "baseline": bare, "ratio": path / bare,
                    "goal": "(context)"})
    for callers in CALLERS[1:]:
        edge = results[f"edge->worker x{callers}"]["calls_per_s"]
        nameko = results[f"nameko ListRegister x{callers}"]["calls_per_s"]
        out.append({"row": f"  (context) edge ListRegister / nameko's ListRegister, {callers}",
                    "figure": edge, "unit": "calls/s", "baseline": nameko,
                    "ratio": edge / nameko, "goal": "(context)"})
    out.append({"row": "  (context) edge ListAreas p50 / nameko ListAreas p50",
                "figure": results["edge ListAreas"]["p50_ms"], "unit": "ms",
                "baseline": results["nameko ListAreas"]["p50_ms"], "goal": "(context)",
                "ratio": results["edge ListAreas"]["p50_ms"] / results["nameko ListAreas"]["p50_ms"]})
    return out


def cpu_split(rounds: list[dict]) -> list[dict]:
    """Per load at CPU_CALLERS callers: each process's CPU per call (median of the rounds),
    their sum, and the throughput ratio to the echo that the sums allow on saturated cores."""
    labels = [label for label, figure in rounds[0].items() if "cpu_ms" in figure]
    split = []
    for label in labels:
        names = rounds[0][label]["cpu_ms"]
        per = {name: statistics.median(r[label]["cpu_ms"][name] for r in rounds)
               for name in names}
        split.append({"load": label, "cpu_ms": per, "total_ms": sum(per.values())})
    echo = next((s["total_ms"] for s in split if s["load"].startswith("bare nameko")), None)
    for entry in split:
        entry["ratio_allowed"] = echo / entry["total_ms"] if echo and entry["total_ms"] else None
    return split


def print_cpu_split(split: list[dict]) -> None:
    if not split:
        return
    names = list(split[0]["cpu_ms"])
    print(f"CPU per call at {CPU_CALLERS} callers, ms (median of rounds; the broker is shared "
          "with anything else on it):")
    print(f"{'load':<28}" + "".join(f"{n:>13}" for n in names) + f"{'sum':>9}{'echo/sum':>10}")
    for entry in split:
        allowed = entry["ratio_allowed"]
        print(f"{entry['load']:<28}" + "".join(f"{entry['cpu_ms'][n]:>13.2f}" for n in names)
              + f"{entry['total_ms']:>9.2f}" + (f"{allowed:>9.2f}x" if allowed else ""))
