"""`make bench`: a gRPC call through the edge to the worker, against its baselines, in one run.

Baselines measured in the same run on the same machine (absolute times drift here):
  bare grpcio   - a grpcio echo server, bytes in and out (the floor of any gRPC call);
  bare nameko   - a nameko RPC echo over the same RabbitMQ (the floor of any bus call);
  edge health   - the edge answering by itself (its own gRPC cost, no bus);
  nameko->worker - ListRegister straight over nameko RPC (the worker's own cost);
  edge->worker  - ListRegister through the edge and the bus to the filing worker (public);
  edge->worker+auth - GetInstitution with a bearer token (verified at edge and worker).
Calls are sequential, one at a time, after a warm-up. The ratios are what to watch.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.grpc_client import Filing
from tests.platform import ROOT, Platform, free_port

CALLS = 400
WARMUP = 40


def measure(label: str, call, calls: int = CALLS) -> dict:
    for _ in range(WARMUP):
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    samples.sort()
    return {"label": label, "calls_per_s": calls / elapsed,
            "p50_ms": statistics.median(samples) * 1000,
            "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000}


def print_table(rows: list[dict]) -> None:
    print(f"{'path':<22}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(f"{r['label']:<22}{r['calls_per_s']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")


def wait_grpc(channel: grpc.Channel, timeout: float = 20) -> None:
    grpc.channel_ready_future(channel).result(timeout=timeout)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-"))
    plat = Platform(tmp).start()
    echo_port = free_port()
    grpc_echo = subprocess.Popen([sys.executable, "-m", "tests.bench.echo_service", str(echo_port)],
                                 cwd=ROOT)
    nameko_echo = subprocess.Popen(
        [sys.executable, "-m", "services.common.nameko_cli", "run", "--broker", plat.amqp_uri,
         "tests.bench.echo_service:EchoService"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_port}")
        wait_grpc(echo_channel)
        echo = echo_channel.unary_unary("/bench.Echo/Echo")
        payload = b"x" * 64
        health = health_pb2_grpc.HealthStub(plat.channel)
        public = Filing(plat.channel)
        with_token = Filing(plat.channel, "regulator")
        rows = [measure("bare grpcio", lambda: echo(payload, timeout=5))]
        with ClusterRpcProxy({"AMQP_URI": plat.amqp_uri}, timeout=10) as cluster:
            deadline = time.monotonic() + 30
            while True:
                try:
                    cluster.bench_echo.echo({"x": 1})
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            rows.append(measure("bare nameko", lambda: cluster.bench_echo.echo({"x": 1})))
            # The same worker call without the edge: separates the edge's cost from the worker's.
            rows.append(measure("nameko->worker", lambda: cluster.filing.ListRegister({})))
        rows.append(measure("edge health", lambda: health.Check(health_pb2.HealthCheckRequest(),
                                                               timeout=5)))
        rows.append(measure("edge->worker", lambda: public.ListRegister({})))
        rows.append(measure("edge->worker+auth", lambda: with_token.ListRegister({})))
        print_table(rows)
        by = {r["label"]: r for r in rows}
        edge = by["edge->worker"]
        print()
        print(f"edge->worker p50 / bare nameko p50: {edge['p50_ms'] / by['bare nameko']['p50_ms']:.2f}x")
        print(f"edge->worker p50 / bare grpcio p50: {edge['p50_ms'] / by['bare grpcio']['p50_ms']:.2f}x")
        print(f"edge->worker calls/s vs bare nameko: "
              f"{edge['calls_per_s'] / by['bare nameko']['calls_per_s']:.2f}")
        print(f"edge's own share of edge->worker (p50): "
              f"{edge['p50_ms'] - by['nameko->worker']['p50_ms']:+.2f} ms")
        print(f"auth overhead (p50): {by['edge->worker+auth']['p50_ms'] - edge['p50_ms']:+.2f} ms")
        extra = ROOT / "tests" / "bench" / "certificates_bench.py"
        if extra.exists():
            from tests.bench import certificates_bench
            certificates_bench.run(print)
    finally:
        for proc in (grpc_echo, nameko_echo):
            proc.terminate()
            proc.wait(timeout=10)
        plat.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
