"""`make run`: the local database, every worker and the edge, stopped together on Ctrl-C.

Each is its own process (grpcio and eventlet never share one). If any of them dies, the
others are stopped and the exit code says so: a half-running platform is not left behind.

Unless MONGO_URI names a server, the local database server (services/localdb.py) is started
first, with its data under `.data/`, and stopped last, after the workers have finished their
writes; a server already running from `.data/` (another `make run`) is used and left running.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from services import localdb
from services.common import config
from services.common.spec import registry

STOP_TIMEOUT = 15.0


def broker_reachable(uri: str) -> bool:
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout=3):
            return True
    except OSError:
        return False


def start(cmd: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    """A child in its own process group: Ctrl-C reaches only this process, which then stops
    each child once, with SIGTERM (a nameko worker sent SIGINT and then SIGTERM hangs until
    killed). It gets SIGTERM if this process dies, so none is ever orphaned."""
    import os
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


def main() -> int:
    amqp = config.amqp_uri()
    if not broker_reachable(amqp):
        print(f"RabbitMQ is not reachable at {urlsplit(amqp).hostname}:{urlsplit(amqp).port or 5672}; "
              "start it (e.g. `rabbitmq-server -detached`) or set AMQP_URI.", file=sys.stderr)
        return 2
    try:
        database, database_line = start_database()
    except localdb.DatabaseServerError as exc:
        print(f"vocreg: the local database did not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while it started: it was stopped again
        return 130
    try:
        return run_platform(database, database_line)
    finally:
        if database is not None:
            code = database.stop()
            print(f"vocreg: database stopped ({code})", flush=True)


def run_platform(database: localdb.DatabaseServer | None, database_line: str) -> int:
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
    # Each worker on its declared metrics port; METRICS_PORT=0 turns the workers' off.
    ports = {name: 0 if config.env("METRICS_PORT", "") == "0" else specs[name].metrics_port
             for name in services}
    children = {}
    for name in services:
        children[f"worker:{name}"] = start(["services.common.worker", name],
                                           {"METRICS_PORT": str(ports[name])})
    children["edge"] = start(["services.common.edge", "--services", ",".join(services)])
    port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
    edge_metrics = config.env_int("EDGE_METRICS_PORT", config.DEFAULT_EDGE_METRICS_PORT)
    print(f"vocreg: workers {', '.join(services)}; gRPC edge on localhost:{port}; "
          f"metrics on :{edge_metrics} (edge) and "
          f"{', '.join(str(ports[s]) for s in services)} (workers). "
          "Ctrl-C stops everything.", flush=True)
    print(f"vocreg: {database_line}", flush=True)

    exit_code = 0
    while not stopping:
        for label, child in children.items():
            if child.poll() is not None:
                print(f"vocreg: {label} exited with {child.returncode}; stopping the rest",
                      file=sys.stderr, flush=True)
                exit_code, stopping = 1, True
                break
        if database is not None and not stopping and not database.alive():
            print(f"vocreg: the database server exited with {database.process.returncode}; "
                  f"stopping the rest (its log: {database.log_file})", file=sys.stderr, flush=True)
            exit_code, stopping = 1, True
        time.sleep(0.2)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for label, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"vocreg: {label} did not stop in time; killing it", file=sys.stderr)
            child.kill()
            child.wait()
            exit_code = 1
    print("vocreg: platform stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
