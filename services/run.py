"""`make run`: every worker and the edge on the local broker, stopped together on Ctrl-C.

Each is its own process (grpcio and eventlet never share one). If any of them dies, the
others are stopped and the exit code says so: a half-running platform is not left behind.
"""
from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from services.common import config, logs
from services.common.spec import registry

log = logging.getLogger("vocreg.run")

STOP_TIMEOUT = 15.0


def broker_reachable(uri: str) -> bool:
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout=3):
            return True
    except OSError:
        return False


def start(cmd: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    import os
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", *cmd], env=env)


def main() -> int:
    logs.configure(config.env("LOG_LEVEL", "INFO"), "run")
    amqp = config.amqp_uri()
    if not broker_reachable(amqp):
        log.critical(f"RabbitMQ is not reachable at {urlsplit(amqp).hostname}:"
                     f"{urlsplit(amqp).port or 5672}; start it (e.g. `rabbitmq-server -detached`) "
                     "or set AMQP_URI.")
        return 2
    specs = registry()
    services = list(specs)
    children = {}
    for name in services:
        children[f"worker:{name}"] = start(["services.common.worker", name],
                                           {"METRICS_PORT": str(specs[name].metrics_port)})
    children["edge"] = start(["services.common.edge", "--services", ",".join(services)])
    port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
    log.info(f"vocreg: workers {', '.join(services)}; gRPC edge on localhost:{port}; "
             f"metrics on :{config.DEFAULT_EDGE_METRICS_PORT} (edge) and "
             f"{', '.join(str(specs[s].metrics_port) for s in services)} (workers). "
             "Ctrl-C stops everything.")

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for label, child in children.items():
            if child.poll() is not None:
                log.error(f"vocreg: {label} exited with {child.returncode}; stopping the rest")
                exit_code, stopping = 1, True
                break
        time.sleep(0.2)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for label, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(f"vocreg: {label} did not stop in time; killing it")
            child.kill()
            child.wait()
    log.info("vocreg: stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
