"""The platform as subprocesses: a worker and the edge, on a RabbitMQ vhost of their own.

Used by the e2e tests and the benchmark. Each platform gets its own vhost (made through the
management API), its own database per service on the session's database server
(tests/database.py) and free ports, so it never meets `make run`. Workers can be stopped,
killed (SIGKILL) and started again on the same databases, and a service can run two workers.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.spec import spec
from tests import database
from tests.database import free_port  # noqa: F401 (the benchmark imports it from here)

ROOT = Path(__file__).resolve().parents[1]
MANAGEMENT = "http://localhost:15672/api"
AUTH = ("guest", "guest")
FILING = "vocreg.filing.v1.FilingService"


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


def make_vhost(vhost: str) -> None:
    """A RabbitMQ vhost of the test's own (guest may use it), through the management API."""
    requests.put(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{MANAGEMENT}/permissions/{vhost}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()


def delete_vhost(vhost: str) -> None:
    requests.delete(f"{MANAGEMENT}/vhosts/{vhost}", auth=AUTH, timeout=10)


class Platform:
    """services: the workers to run behind one edge. clock: give the workers a time the test
    sets with set_clock() (they read it from a file on every call)."""

    def __init__(self, tmp_path: Path, services=("filing",), clock: bool = False,
                 broker: str | None = None, **worker_env):
        # broker: the AMQP URI of a broker of the caller's own (the fault suite's node), used
        # as it is; by default a vhost of this platform's own on the local broker.
        self.broker = broker
        self.vhost = f"vocreg-e2e-{uuid.uuid4().hex[:8]}"
        self.services = tuple(services)
        self.databases = database.Databases("e2e")
        self.mongo_uris = {name: self.databases.uri(name) for name in self.services}
        self.grpc_port, self.edge_metrics_port = free_port(), free_port()
        self.http_port = free_port()
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
        return self.broker or f"amqp://guest:guest@localhost:5672/{self.vhost}"

    def _env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update({"AMQP_URI": self.amqp_uri, "LOG_LEVEL": "INFO",
                    "GRPC_PORT": str(self.grpc_port),
                    "HTTP_PORT": str(self.http_port),
                    "EDGE_METRICS_PORT": str(self.edge_metrics_port),
                    # The edge asks each worker every second and waits as long for the
                    # answer: tight enough for the tests of a worker going down, loose enough
                    # for a busy worker on a busy machine (0.5 s flagged those as down).
                    "EDGE_HEALTH_INTERVAL": "1.0",
                    "VOCREG_CLOCK_FILE": str(self.clock_file) if self.clock_file else ""})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def edge_database_env(self) -> dict:
        """The databases of the services whose reads the edge answers itself (SPEC
        edge_reads): the edge serves several services here, so each gets its own variable
        (config.read_mongo_uri), naming the database its worker writes."""
        return {f"{name.upper()}_READ_MONGO_URI": self.mongo_uris[name]
                for name in self.services if spec(name).edge_reads}

    def worker_key(self, service: str) -> str:
        return "worker" if service == "filing" else f"worker-{service}"

    def start_worker(self, service: str = "filing", key: str | None = None, **env):
        """Start (or start again) the service's worker on its database. `key` names a second
        worker of the same service (its metrics port is then free_port()); `env` overrides
        the platform's worker environment for this start only (e.g. a fault knob)."""
        key = key or self.worker_key(service)
        metrics_port = self.worker_metrics_ports[service] if key == self.worker_key(service) \
            else self.worker_metrics_ports.setdefault(key, free_port())
        log = open(self.tmp_path / f"{key}.log", "ab")
        self.stopped.discard(key)
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", "services.common.worker", service], cwd=ROOT,
            env=self._env(METRICS_PORT=metrics_port, MONGO_URI=self.mongo_uris[service],
                          **{**self.worker_env, **env}),
            stdout=log, stderr=subprocess.STDOUT)
        return key

    def db(self, service: str = "filing"):
        """The service's database, to look inside (pymongo)."""
        from services.common.mongo import database_name

        return database.client()[database_name(self.mongo_uris[service], "")]

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
            if self.broker is None:
                make_vhost(self.vhost)
            for service in self.services:
                self.start_worker(service)
            log = open(self.tmp_path / "edge.log", "ab")
            self.procs["edge"] = subprocess.Popen(
                [sys.executable, "-m", "services.common.edge", "--services",
                 ",".join(self.services)], cwd=ROOT,
                env=self._env(EDGE_MAX_MESSAGE_BYTES=1024 * 1024,
                              **{**self.edge_database_env(), **self.edge_env}),
                stdout=log, stderr=subprocess.STDOUT)
            self.channel = self.open_channel()
            for service in self.services:
                self.wait_for_health(spec(service).proto, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def http_url(self) -> str:
        """The edge's HTTP/JSON gateway and public page."""
        return f"http://localhost:{self.http_port}"

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
        self._terminate(name)
        return self._await_exit(name, timeout)

    def _terminate(self, name: str) -> None:
        self.stopped.add(name)
        if self.procs[name].poll() is None:
            self.procs[name].send_signal(signal.SIGTERM)

    def _await_exit(self, name: str, timeout: float = 20.0) -> int:
        """The exit code; SIGKILL (and -9) if it did not stop within `timeout`."""
        proc = self.procs[name]
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9

    def kill_process(self, name: str) -> int:
        """SIGKILL: the process dies where it is, with no chance to clean up."""
        proc = self.procs[name]
        self.stopped.add(name)
        if proc.poll() is None:
            proc.kill()
        return proc.wait(timeout=20)

    def wait_exit(self, name: str, timeout: float = 20.0) -> int:
        """Wait for a process that ends by itself (e.g. a fault knob's SIGKILL); its code."""
        self.stopped.add(name)
        return self.procs[name].wait(timeout=timeout)

    def restart_worker(self, service: str, stop: bool = True, **env) -> None:
        """Stop the service's worker (unless it is already down), start it again on the same
        database with `env` for this start, and wait until it serves again."""
        proto = spec(service).proto
        key = self.worker_key(service)
        if stop:
            self.stop_process(key)
        self.wait_for_health(proto, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.start_worker(service, **env)
        self.wait_for_health(proto, health_pb2.HealthCheckResponse.SERVING)

    def metrics(self, key: str) -> str:
        """The /metrics text of a process by its key ("edge", "worker-certificates", ...)."""
        port = self.edge_metrics_port if key == "edge" else self.worker_metrics_ports.get(key)
        for service in self.services:
            if key == self.worker_key(service):
                port = self.worker_metrics_ports[service]
        return requests.get(f"http://localhost:{port}/metrics", timeout=5).text

    def stop(self) -> dict[str, int]:
        """Stop everything (SIGTERM, the edge first); each process's exit code. The
        platform's databases are dropped."""
        codes = {}
        if self.channel is not None:
            self.channel.close()
        workers = [self.worker_key(s) for s in self.services]
        workers += [k for k in self.procs if k != "edge" and k not in workers]
        if "edge" in self.procs:
            codes["edge"] = self.stop_process("edge")  # no new calls reach the workers
        workers = [n for n in workers if n in self.procs]
        for name in workers:  # then every worker at once: each takes seconds to drain
            self._terminate(name)
        for name in workers:
            codes[name] = self._await_exit(name)
        if self.broker is None:
            delete_vhost(self.vhost)
        self.databases.drop_all()
        return codes


class EventTap:
    """Every event a service publishes, as the bus delivers it: an exclusive queue bound to
    the service's exchange, so a test sees what went out and how many times.

        with EventTap(plat.amqp_uri, "certificates") as tap:
            ...
            tap.wait_for(lambda events: ..., what="the batch's event")
            tap.drain(1.0)
        tap.events("CertificatesIssued")
    """

    def __init__(self, amqp_uri: str, service: str):
        self.amqp_uri = amqp_uri
        self.service = service
        self.received: list[tuple[str, dict]] = []

    def __enter__(self):
        from kombu import Connection, Exchange, Queue

        self.connection = Connection(self.amqp_uri)
        exchange = Exchange(f"{self.service}.events", type="topic", durable=True)
        queue = Queue(exclusive=True, exchange=exchange, routing_key="#")
        self.consumer = self.connection.Consumer(queue, callbacks=[self._got])
        self.consumer.consume()
        return self

    def __exit__(self, *exc):
        self.consumer.cancel()
        self.connection.release()

    def _got(self, body, message):
        self.received.append((message.delivery_info["routing_key"], body))
        message.ack()

    def drain(self, seconds: float) -> None:
        """Take whatever arrives during `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.connection.drain_events(timeout=min(left, 0.2))
            except TimeoutError:
                pass

    def wait_for(self, probe, timeout: float = 20.0, what: str = "events"):
        """Drain until probe(self.received) is truthy; that value, or AssertionError."""
        return eventually(lambda: (self.drain(0.1), probe(self.received))[1], timeout, what,
                          interval=0)

    def events(self, event_type: str, **fields) -> list[dict]:
        """Bodies of the deliveries of `event_type` whose fields equal `fields`."""
        return [body for kind, body in self.received if kind == event_type
                and all(body.get(k) == v for k, v in fields.items())]

