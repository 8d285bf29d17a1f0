"""The platform as subprocesses: a worker and the edge, on a RabbitMQ vhost of their own.

Used by the e2e tests and the benchmark. Each platform gets its own vhost (made through the
management API), its own in-memory database and free ports, so it never meets `make run`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.spec import spec

ROOT = Path(__file__).resolve().parents[1]
MANAGEMENT = "http://localhost:15672/api"
AUTH = ("guest", "guest")
FILING = "vocreg.filing.v1.FilingService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(probe, timeout=10.0, what="condition", interval=0.1):
    """Poll `probe` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        time.sleep(interval)


class Platform:
    """services: the workers to run behind one edge. clock: give the workers a time the test
    sets with set_clock() (they read it from a file on every call)."""

    def __init__(self, tmp_path: Path, services=("filing",), clock: bool = False, **worker_env):
        self.vhost = f"vocreg-e2e-{uuid.uuid4().hex[:8]}"
        self.services = tuple(services)
        self.grpc_port, self.edge_metrics_port = free_port(), free_port()
        self.worker_metrics_ports = {name: free_port() for name in self.services}
        self.worker_metrics_port = self.worker_metrics_ports.get("filing")
        self.tmp_path = tmp_path
        self.clock_file = tmp_path / "clock.txt" if clock else None
        self.worker_env = worker_env
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()
        self.channel: grpc.Channel | None = None
        self.edge_env: dict = {}  # the edge's own variables (e.g. TLS, JWKS)
        self.tls_root: bytes | None = None  # trust this certificate: the edge serves TLS

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@localhost:5672/{self.vhost}"

    def _env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update({"AMQP_URI": self.amqp_uri, "LOG_LEVEL": "INFO",
                    "GRPC_PORT": str(self.grpc_port),
                    "EDGE_METRICS_PORT": str(self.edge_metrics_port),
                    "MONGO_URI": f"mongomock://localhost/e2e_{uuid.uuid4().hex[:8]}",
                    "EDGE_HEALTH_INTERVAL": "0.5",
                    "VOCREG_CLOCK_FILE": str(self.clock_file) if self.clock_file else ""})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def worker_key(self, service: str) -> str:
        return "worker" if service == "filing" else f"worker-{service}"

    def start_worker(self, service: str = "filing"):
        key = self.worker_key(service)
        log = open(self.tmp_path / f"{key}.log", "ab")
        self.stopped.discard(key)
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", "services.common.worker", service], cwd=ROOT,
            env=self._env(METRICS_PORT=self.worker_metrics_ports[service], **self.worker_env),
            stdout=log, stderr=subprocess.STDOUT)

    def set_clock(self, when) -> None:
        """Move the workers' clock: a timezone-aware datetime."""
        assert self.clock_file is not None, "start the platform with clock=True"
        if when.tzinfo is None:
            raise ValueError("use a timezone-aware datetime")
        self.clock_file.write_text(when.isoformat())

    def start(self):
        """Start both processes and wait until the service is SERVING; on any failure,
        stop what was started, so a broken start never leaves processes behind."""
        try:
            resp = requests.put(f"{MANAGEMENT}/vhosts/{self.vhost}", auth=AUTH, timeout=10)
            resp.raise_for_status()
            requests.put(f"{MANAGEMENT}/permissions/{self.vhost}/guest", auth=AUTH, timeout=10,
                         json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
            for service in self.services:
                self.start_worker(service)
            log = open(self.tmp_path / "edge.log", "ab")
            self.procs["edge"] = subprocess.Popen(
                [sys.executable, "-m", "services.common.edge", "--services",
                 ",".join(self.services)], cwd=ROOT,
                env=self._env(EDGE_MAX_MESSAGE_BYTES=1024 * 1024, **self.edge_env), stdout=log,
                stderr=subprocess.STDOUT)
            self.channel = self.open_channel()
            for service in self.services:
                self.wait_for_health(spec(service).proto, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            self.stop()
            raise
        return self

    def open_channel(self) -> grpc.Channel:
        target = f"localhost:{self.grpc_port}"
        if self.tls_root is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(self.tls_root))

    def health(self, service: str = ""):
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status

    def wait_for_health(self, service, status, timeout=40.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if name not in self.stopped and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
            try:
                last = self.health(service)
                if last == status:
                    return
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.2)
        raise TimeoutError(f"{service or 'edge'} health stayed {last}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.tmp_path.glob("*.log")))

    def stop_process(self, name: str, timeout: float = 20.0) -> int:
        proc = self.procs[name]
        self.stopped.add(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return -9
        return proc.returncode

    def stop(self) -> dict[str, int]:
        codes = {}
        if self.channel is not None:
            self.channel.close()
        for name in ["edge"] + [self.worker_key(s) for s in self.services]:
            if name in self.procs:
                codes[name] = self.stop_process(name)
        requests.delete(f"{MANAGEMENT}/vhosts/{self.vhost}", auth=AUTH, timeout=10)
        return codes


