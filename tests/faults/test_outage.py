"""The broker goes away under load, and a worker is killed: the workers serve again by
themselves, and nothing a client was told is done is lost or done twice."""
from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from services.common.spec import spec
from tests import database
from tests.e2e.grpc_client import Filing
from tests.faults.conftest import FIGURES, SERVICES
from tests.faults.load import Load, check_nothing_lost
from tests.platform import eventually

pytestmark = pytest.mark.faults

# Each test files its own institutions (numbers from here on).
FIRST = {5: 10_000, 30: 20_000, "kill": 30_000, "database": 40_000}


def workers_alive(plat) -> None:
    for service in SERVICES:
        proc = plat.procs[plat.worker_key(service)]
        if proc.poll() is not None:
            FIGURES["worker_exits"] += 1
            raise AssertionError(f"the {service} worker exited with {proc.returncode}:\n"
                                 f"{plat.logs()}")


@pytest.mark.parametrize("seconds", [5, 30])
def test_the_workers_serve_again_after_a_broker_outage_under_load(plat, node, seconds):
    with Load(plat, FIRST[seconds]) as load:
        time.sleep(2.0)  # steady load, filings under way
        node.stop_app()
        time.sleep(seconds)
        back = time.monotonic()  # start_app returns once the broker is up: a second or two
        node.start_app()
        recovery = load.first_read_after(back, timeout=60, check=lambda: workers_alive(plat))
        FIGURES["recovery_seconds"][f"a {seconds} s broker outage (from start_app)"] = recovery
        time.sleep(3.0)  # and they keep serving
        workers_alive(plat)
        before = len(load.filed)
        eventually(lambda: len(load.filed) > before, timeout=30, what="a filing after it")
    assert load.failures == [], load.failures[:5]
    workers_alive(plat)
    assert load.filed, "the writer filed nothing"
    check_nothing_lost(plat, load.filed)


def test_a_killed_worker_fails_fast_and_serves_again_when_started(plat):
    public = Filing(plat.channel)
    with Load(plat, FIRST["kill"]) as load:
        time.sleep(1.0)
        plat.kill_process(plat.worker_key("filing"))
        killed = time.monotonic()
        # The edge notices at once: calls are UNAVAILABLE, not held to their deadline.
        code = eventually(lambda: _code(public), timeout=5, what="UNAVAILABLE")
        assert code == grpc.StatusCode.UNAVAILABLE
        started = time.monotonic()
        try:
            public.CheckName({"name": "x"}, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.0, "a call to a dead worker waited"
        FIGURES["recovery_seconds"]["a killed worker, noticed by the edge"] = started - killed
        plat.start_worker("filing")
        plat.wait_for_health(spec("filing").proto, health_pb2.HealthCheckResponse.SERVING)
        restarted = time.monotonic()
        FIGURES["recovery_seconds"]["a killed worker, from the kill to serving (restarted "
                                    "by the test)"] = \
            load.first_read_after(restarted - 0.001, timeout=30) + (restarted - killed)
        before = len(load.filed)
        eventually(lambda: len(load.filed) > before, timeout=30, what="a filing after it")
    assert load.failures == [], load.failures[:5]
    check_nothing_lost(plat, load.filed)


def _code(public):
    try:
        public.CheckName({"name": "x"}, timeout=10)
        return None
    except grpc.RpcError as exc:
        return exc.code() if exc.code() == grpc.StatusCode.UNAVAILABLE else None


def test_the_workers_ride_out_a_database_outage_under_load(plat):
    server = database.server()
    if server.storage is None:
        pytest.skip("the session's database server keeps its store in memory")
    with Load(plat, FIRST["database"]) as load:
        time.sleep(2.0)
        server.stop()
        time.sleep(5.0)
        server.start()
        back = time.monotonic()
        before = len(load.filed)
        eventually(lambda: len(load.filed) > before, timeout=60, what="a filing after it")
        FIGURES["recovery_seconds"]["a 5 s database outage (the next filing)"] = \
            time.monotonic() - back
        workers_alive(plat)
    assert load.failures == [], load.failures[:5]
    workers_alive(plat)
    check_nothing_lost(plat, load.filed)
