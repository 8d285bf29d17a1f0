"""`make run`: every worker and the edge on the local broker, stopped together on Ctrl-C.

Each is its own process (grpcio and eventlet never share one). If any of them dies, the
others are stopped and the exit code says so: a half-running platform is not left behind.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

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
    import os
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", *cmd], env=env)


def main() -> int:
    amqp = config.amqp_uri()
    if not broker_reachable(amqp):
        print(f"RabbitMQ is not reachable at {urlsplit(amqp).hostname}:{urlsplit(amqp).port or 5672}; "
              "start it (e.g. `rabbitmq-server -detached`) or set AMQP_URI.", file=sys.stderr)
        return 2
    specs = registry()
    services = list(specs)
    children = {}
    for name in services:
        children[f"worker:{name}"] = start(["services.common.worker", name],
                                           {"METRICS_PORT": str(specs[name].metrics_port)})
    children["edge"] = start(["services.common.edge", "--services", ",".join(services)])
    port = config.env_int("GRPC_PORT", config.DEFAULT_GRPC_PORT)
    print(f"vocreg: workers {', '.join(services)}; gRPC edge on localhost:{port}; "
          f"metrics on :{config.DEFAULT_EDGE_METRICS_PORT} (edge) and "
          f"{', '.join(str(specs[s].metrics_port) for s in services)} (workers). "
          "Ctrl-C stops everything.", flush=True)

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
                print(f"vocreg: {label} exited with {child.returncode}; stopping the rest",
                      file=sys.stderr, flush=True)
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
            print(f"vocreg: {label} did not stop in time; killing it", file=sys.stderr)
            child.kill()
            child.wait()
    print("vocreg: stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
