"""`make run`: the local database, every worker and the edge, stopped together on Ctrl-C.

Each is its own process (grpcio and eventlet never share one). A worker or the edge that dies
once it has been running is started again after a pause that doubles from RESTART_DELAY up to
RESTART_DELAY_MAX (reset once it has run STABLE_AFTER seconds), each restart logged, as
Kubernetes restarts a pod's container. One that exits by itself with an error within its first
FIRST_START_GRACE seconds (a configuration or code problem: starting it again would not help)
stops the others, and the exit code says so: a half-running platform is not left behind.

Before starting anything it checks, each in one line naming what to set: every port it will
listen on (GRPC_PORT, HTTP_PORT, EDGE_METRICS_PORT, each worker's metrics port), the broker and the vhost
of AMQP_URI (it creates nothing on the broker: a vhost is made with rabbitmqctl), and that no
other vocreg platform serves that vhost (two platforms on one vhost would share RPC queues and
answer each other's calls).

Unless MONGO_URI names a server, the local database server (services/localdb.py) is started
first, with its data under `.data/`, and stopped last, after the workers have finished their
writes; a server already running from `.data/` (another `make run`) is used and left running.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from services import localdb
from services.common import config, logs
from services.common.spec import registry

log = logging.getLogger("vocreg.run")

STOP_TIMEOUT = 15.0
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0
FIRST_START_GRACE = 5.0


def restart_delay(restarts: int) -> float:
    """The pause before restart number `restarts` (1, 2, ...) of a child in a row."""
    return min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (restarts - 1))


class Child:
    """One process of the platform, started again when it dies (see the module's doc)."""

    def __init__(self, label: str, cmd: list[str], env_extra: dict | None = None):
        self.label, self.cmd, self.env_extra = label, cmd, env_extra
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.starts = 0
        self.restarts_in_a_row = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = start(self.cmd, self.env_extra)
        self.started_at = time.monotonic()
        self.starts += 1
        self.restart_at = None

    def check(self, now: float) -> str | None:
        """Restart what is due; "fatal" when the child died at its first start."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
                log.warning(f"vocreg: {self.label} started again (pid {self.process.pid})")
            return None
        code = self.process.poll()
        if code is None:
            return None
        ran = now - self.started_at
        if self.starts == 1 and ran < FIRST_START_GRACE and code > 0:
            # It stopped itself as it started: a configuration or code problem (killed by a
            # signal, it is restarted like any crash).
            log.error(f"vocreg: {self.label} exited with {code} at start; stopping the rest")
            return "fatal"
        self.restarts_in_a_row = 1 if ran >= STABLE_AFTER else self.restarts_in_a_row + 1
        delay = restart_delay(self.restarts_in_a_row)
        self.restart_at = now + delay
        log.error(f"vocreg: {self.label} exited with {code} after {ran:.1f}s; starting it "
                  f"again in {delay:g}s (restart {self.restarts_in_a_row} in a row)")
        return None

    @property
    def running(self) -> subprocess.Popen | None:
        return self.process if self.restart_at is None else None


def broker_reachable(uri: str) -> bool:
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout=3):
            return True
    except OSError:
        return False


# --- checks before anything starts (each answers one line, or None) -----------------------
def worker_metrics_ports(specs, environ=None) -> dict[str, tuple[int, str]]:
    """Each worker's metrics port and the variable that sets it. METRICS_PORT is the base: the
    first declared service's port (filing, 9101 by default), the others at their declared
    offsets from it (certificates 9104: base + 3); 0 turns worker metrics off.
    <SERVICE>_METRICS_PORT (e.g. CERTIFICATES_METRICS_PORT) sets one worker's port."""
    environ = os.environ if environ is None else environ
    first = min(s.metrics_port for s in specs.values())
    base = _int(environ, "METRICS_PORT", first)
    ports = {}
    for name, declared in specs.items():
        variable = f"{name.upper()}_METRICS_PORT"
        if environ.get(variable):
            ports[name] = (_int(environ, variable, 0), variable)
        else:
            ports[name] = (0 if base == 0 else base + declared.metrics_port - first,
                           f"{variable} or METRICS_PORT")
    return ports


def _int(environ, name: str, default: int) -> int:
    raw = environ.get(name) or ""
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name}={raw!r} is not an integer") from None


def port_in_use(port: int) -> bool:
    """Someone listens on `port` (any interface). SO_REUSEADDR as the servers themselves set
    it, so a port in TIME_WAIT does not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


def port_problem(ports: list[tuple[int, str]]) -> str | None:
    """The first port in use, as one line naming the variable that moves it."""
    for port, variable in ports:
        if port and port_in_use(port):
            return (f"vocreg: port {port} ({variable}) is in use by another program; "
                    f"set {variable.split(' or ')[0]} to a free port")
    return None


def broker_problem(uri: str, services) -> str | None:
    """Why the platform cannot use the broker and vhost of `uri`, or None. Creates nothing:
    it opens a connection and asks, passively, whether each RPC queue has a consumer."""
    from amqp.exceptions import AccessRefused, NotAllowed, NotFound
    from kombu import Connection

    parts = urlsplit(uri)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5672}"
    with Connection(uri, connect_timeout=3) as connection:
        vhost = connection.virtual_host
        try:
            connection.connect()
        except NotAllowed:
            return (f"vocreg: RabbitMQ at {where} has no vhost {vhost!r} (AMQP_URI); create it "
                    f"(rabbitmqctl add_vhost {vhost} && rabbitmqctl set_permissions -p {vhost} "
                    f"{connection.userid} '.*' '.*' '.*') or set AMQP_URI to another vhost")
        except AccessRefused:
            return (f"vocreg: RabbitMQ at {where} refused user {connection.userid!r} on vhost "
                    f"{vhost!r} (AMQP_URI): check the user, password and permissions")
        except OSError:
            return (f"vocreg: RabbitMQ is not reachable at {where}; start it (e.g. "
                    "`rabbitmq-server -detached`) or set AMQP_URI")
        for name in services:
            channel = connection.channel()
            try:
                _, _, consumers = channel.queue_declare(queue=f"rpc-{name}", passive=True)
            except NotFound:
                continue  # the channel is closed by the broker; the next uses a new one
            finally:
                if channel.is_open:
                    channel.close()
            if consumers:
                return (f"vocreg: another vocreg platform is serving on vhost {vhost!r} of "
                        f"{where} (rpc-{name} has {consumers} consumer(s)); stop it, or give "
                        f"this one a vhost of its own: rabbitmqctl add_vhost vocreg2 && "
                        f"rabbitmqctl set_permissions -p vocreg2 {connection.userid} '.*' '.*' "
                        f"'.*', then AMQP_URI=amqp://{connection.userid}:…@{where}/vocreg2")
    return None


def start(cmd: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    """A child in its own process group: Ctrl-C reaches only this process, which then stops
    each child once, with SIGTERM (a nameko worker sent SIGINT and then SIGTERM hangs until
    killed). It gets SIGTERM if this process dies, so none is ever orphaned."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", *cmd], env=env, stdin=subprocess.DEVNULL,
                            process_group=0, preexec_fn=localdb.parent_death_signal())


def start_database() -> tuple[localdb.DatabaseServer | None, str]:
    """The local server, started here (and so stopped here) unless MONGO_URI names one or a
    server from `.data/` is already running; a line saying which."""
    if config.env("MONGO_URI", ""):
        return None, "database: MONGO_URI (no local server started)"
    server = localdb.local_server()
    pid = server.running_pid()
    if pid is not None:
        return None, (f"database: the local server already running from {server.home} "
                      f"(pid {pid}), left running when the platform stops")
    server.start()
    return server, f"database: local server on {server.uri}, data in {server.home}"


def preflight(specs) -> tuple[str | None, dict]:
    """(the first problem as one line or None, each worker's metrics port)."""
    amqp = config.amqp_uri()
    if not broker_reachable(amqp):
        parts = urlsplit(amqp)
        return (f"vocreg: RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672}; "
                "start it (e.g. `rabbitmq-server -detached`) or set AMQP_URI"), {}
    metrics = worker_metrics_ports(specs)
    ports = [(config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT), "GRPC_PORT"),
             (config.env_int("HTTP_PORT", config.DEFAULT_HTTP_PORT), "HTTP_PORT"),
             (config.env_int("EDGE_METRICS_PORT", config.DEFAULT_EDGE_METRICS_PORT),
              "EDGE_METRICS_PORT"), *metrics.values()]
    taken = [p for p, _ in ports if p]
    twice = sorted({p for p in taken if taken.count(p) > 1})
    if twice:
        return (f"vocreg: port {twice[0]} is set for two listeners "
                f"({', '.join(v for p, v in ports if p == twice[0])}); give each its own"), metrics
    return port_problem(ports) or broker_problem(amqp, list(specs)), metrics


def main() -> int:
    logs.configure(config.env("LOG_LEVEL", "INFO"), "run")  # one JSON object per line
    specs = registry()
    problem, metrics = preflight(specs)
    if problem:
        log.critical(problem)
        return 2
    try:
        database, database_line = start_database()
    except localdb.DatabaseServerError as exc:
        log.critical(f"vocreg: the local database did not start: {exc}")
        return 2
    except KeyboardInterrupt:  # Ctrl-C while it started: it was stopped again
        return 130
    try:
        return run_platform(database, database_line, {n: p for n, (p, _) in metrics.items()})
    finally:
        if database is not None:
            code = database.stop()
            log.info(f"vocreg: database stopped ({code})")


def run_platform(database: localdb.DatabaseServer | None, database_line: str,
                 ports: dict[str, int]) -> int:
    # From here on Ctrl-C only asks for a stop: what was started is always stopped below.
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGHUP, request_stop)  # the terminal closed: stop, do not orphan
    specs = registry()
    services = list(specs)
    children = [Child(f"worker:{name}", ["services.common.worker", name],
                      {"METRICS_PORT": str(ports[name])}) for name in services]
    children.append(Child("edge", ["services.common.edge", "--services", ",".join(services)]))
    for child in children:
        child.start()
    port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
    http_port = config.env_int("HTTP_PORT", config.DEFAULT_HTTP_PORT)
    edge_metrics = config.env_int("EDGE_METRICS_PORT", config.DEFAULT_EDGE_METRICS_PORT)
    worker_ports = ", ".join(f"{s} :{ports[s]}" if ports[s] else f"{s} off" for s in services)
    log.info(f"vocreg: workers {', '.join(services)} on {config.amqp_uri().rpartition('@')[2]}; "
             f"gRPC edge on localhost:{port}; "
             + (f"HTTP/JSON and the public page on http://localhost:{http_port}/; "
                if http_port else "HTTP off; ") + "metrics: edge "
             f"{':' + str(edge_metrics) if edge_metrics else 'off'}, {worker_ports}. "
             "Ctrl-C stops everything.")
    log.info(f"vocreg: {database_line}")

    exit_code = 0
    while not stopping:
        for child in children:
            if child.check(time.monotonic()) == "fatal":
                exit_code, stopping = 1, True
                break
        if database is not None and not stopping and not database.alive():
            log.error(f"vocreg: the database server exited with {database.process.returncode}; "
                      f"stopping the rest (its log: {database.log_file})")
            exit_code, stopping = 1, True
        time.sleep(0.2)

    running = {c.label: c.running for c in children if c.running is not None}
    for child in running.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for label, child in running.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(f"vocreg: {label} did not stop in time; killing it")
            child.kill()
            child.wait()
            exit_code = 1
    log.info("vocreg: platform stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
