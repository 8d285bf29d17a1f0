"""`make run` (python -m services.run) honours the documented variables, and says in one line
what stops it: a port in use, a vhost that does not exist, a vhost another platform serves."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.spec import registry
from services.run import worker_metrics_ports
from tests import database
from tests.platform import AUTH, MANAGEMENT, ROOT, Platform, eventually, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def vhost():
    name = f"vocreg-run-{uuid.uuid4().hex[:8]}"
    requests.put(f"{MANAGEMENT}/vhosts/{name}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{MANAGEMENT}/permissions/{name}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    yield name
    requests.delete(f"{MANAGEMENT}/vhosts/{name}", auth=AUTH, timeout=10)


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports, below the ephemeral range (where the OS
    hands out ports to other processes' connections at any moment): make run gives each
    worker METRICS_PORT plus its service's offset."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 30000 - size)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("", port))
            return base
        except OSError:
            continue
    raise AssertionError(f"no {size} consecutive free ports")


def run_env(vhost: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({"AMQP_URI": f"amqp://guest:guest@localhost:5672/{vhost}",
                # The session's test database server: each service its vocreg_<service> there.
                "MONGO_URI": database.server().uri,
                "GRPC_PORT": str(free_port()), "EDGE_METRICS_PORT": str(free_port()),
                "HTTP_PORT": str(free_port()), "EDGE_HEALTH_INTERVAL": "0.5",
                "METRICS_PORT": str(free_port_block(
                    max(s.metrics_port for s in registry().values()) - 9101 + 1))})
    env.update(extra)
    return env


def refused(env: dict) -> list[str]:
    """make run's stderr lines, when it refuses to start (exit code 2)."""
    done = subprocess.run([sys.executable, "-m", "services.run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("", port))
    sock.listen()
    return sock


def test_metrics_port_is_a_base_and_each_worker_may_have_its_own():
    specs = registry()
    assert worker_metrics_ports(specs, {}) == {
        name: (s.metrics_port, f"{name.upper()}_METRICS_PORT or METRICS_PORT")
        for name, s in specs.items()}
    moved = worker_metrics_ports(specs, {"METRICS_PORT": "19101",
                                         "CERTIFICATES_METRICS_PORT": "20000"})
    assert moved["filing"][0] == 19101 and moved["certificates"] == (20000,
                                                                       "CERTIFICATES_METRICS_PORT")
    assert {p for p, _ in worker_metrics_ports(specs, {"METRICS_PORT": "0"}).values()} == {0}


def test_make_run_listens_where_the_variables_say_and_stops_cleanly(vhost):
    env = run_env(vhost)
    base = int(env["METRICS_PORT"])
    proc = subprocess.Popen([sys.executable, "-m", "services.run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        channel = grpc.insecure_channel(f"localhost:{env['GRPC_PORT']}")
        health = health_pb2_grpc.HealthStub(channel)

        def serving():
            try:
                return all(health.Check(health_pb2.HealthCheckRequest(service=s.proto),
                                        timeout=1).status == health_pb2.HealthCheckResponse.SERVING
                           for s in registry().values())
            except grpc.RpcError:
                return False

        # Every declared service starts its worker at once: on 2 busy cores, importing and
        # connecting eight of them takes a while; a quiet machine serves in ~15 s.
        eventually(serving, timeout=180, what="every service SERVING on GRPC_PORT")
        first = min(s.metrics_port for s in registry().values())
        for spec in registry().values():
            port = base + spec.metrics_port - first
            assert requests.get(f"http://localhost:{port}/metrics", timeout=5).ok
        assert requests.get(f"http://localhost:{env['EDGE_METRICS_PORT']}/metrics",
                            timeout=5).ok
        # make run serves HTTP/JSON and the public page on HTTP_PORT.
        page = requests.get(f"http://localhost:{env['HTTP_PORT']}/", timeout=5)
        assert page.ok and "证书" in page.text
        assert requests.get(f"http://localhost:{env['HTTP_PORT']}/v1/areas", timeout=10).ok
        channel.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"gRPC edge on localhost:{env['GRPC_PORT']}" in out


@pytest.mark.parametrize("variable", ["GRPC_PORT", "HTTP_PORT", "EDGE_METRICS_PORT", "METRICS_PORT",
                                      "CERTIFICATES_METRICS_PORT"])
def test_a_port_in_use_is_one_line_naming_the_port_and_the_variable(vhost, variable):
    port = free_port()
    env = run_env(vhost, **{variable: str(port)})
    with listening(port):
        [line] = refused(env)
    name = "FILING_METRICS_PORT" if variable == "METRICS_PORT" else variable
    assert f"port {port} (" in line and name in line and "in use" in line


def test_one_port_for_two_listeners_is_refused(vhost):
    port = str(free_port())
    [line] = refused(run_env(vhost, GRPC_PORT=port, EDGE_METRICS_PORT=port))
    assert f"port {port} is set for two listeners (GRPC_PORT, EDGE_METRICS_PORT)" in line


def test_a_vhost_that_does_not_exist_is_named_and_not_created():
    missing = f"vocreg-missing-{uuid.uuid4().hex[:8]}"
    [line] = refused(run_env(missing))
    assert f"no vhost '{missing}'" in line and "rabbitmqctl add_vhost" in line
    assert requests.get(f"{MANAGEMENT}/vhosts/{missing}", auth=AUTH, timeout=10).status_code \
        == 404


def test_a_second_platform_on_the_same_vhost_is_refused(tmp_path):
    first = Platform(tmp_path).start()
    try:
        [line] = refused(run_env(first.vhost))
        assert "another vocreg platform is serving" in line and first.vhost in line
        assert "rpc-filing" in line
    finally:
        first.stop()


def test_a_worker_starts_with_inline_calendar_overrides(tmp_path):
    """VOCREG_CALENDAR_OVERRIDES as inline JSON (it used to be read as a path and killed the
    filing worker at start)."""
    table = '{"2027": {"holidays": ["2027-01-01"], "workdays": ["2027-02-06"]}}'
    plat = Platform(tmp_path, VOCREG_CALENDAR_OVERRIDES=table).start()
    try:
        assert plat.health("vocreg.filing.v1.FilingService") == \
            health_pb2.HealthCheckResponse.SERVING
    finally:
        assert plat.stop() == {"edge": 0, "worker": 0}


def children_of(pid: int) -> dict[int, str]:
    """{pid: command line} of a process's children (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    found[int(entry)] = cmdline.read().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_make_run_starts_a_dead_worker_again_and_says_so(vhost):
    env = run_env(vhost)
    proc = subprocess.Popen([sys.executable, "-m", "services.run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    filing = registry()["filing"].proto
    try:
        channel = grpc.insecure_channel(f"localhost:{env['GRPC_PORT']}")
        health = health_pb2_grpc.HealthStub(channel)

        def status():
            assert proc.poll() is None, f"make run exited with {proc.returncode}"
            try:
                return health.Check(health_pb2.HealthCheckRequest(service=filing),
                                    timeout=1).status
            except grpc.RpcError:
                return None

        serving = health_pb2.HealthCheckResponse.SERVING
        # Every worker starting at once on 2 busy cores: minutes, not seconds.
        eventually(lambda: status() == serving, timeout=180, what="filing SERVING")

        def worker_pid():
            return next((pid for pid, cmd in children_of(proc.pid).items()
                         if "services.common.worker filing" in cmd), None)

        first = worker_pid()
        os.kill(first, signal.SIGKILL)
        eventually(lambda: worker_pid() not in (None, first), timeout=60,
                   what="a new filing worker")
        eventually(lambda: status() == serving, timeout=180, what="filing SERVING again")
        channel.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker:filing exited with -9" in out and "starting it again in 1s" in out, out
    assert "worker:filing started again" in out, out
