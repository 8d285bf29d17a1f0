"""The fault suite (`make test-faults`): the platform on a RabbitMQ node of the suite's own,
which it stops and starts under load, workers killed, every method fuzzed. Plain pytest
(grpcio never shares a process with eventlet).

Its figures (calls, refused by code, INTERNAL, lost, duplicated, recovery seconds) are
printed at the end of the run.
"""
from __future__ import annotations

import atexit
from collections import Counter

import pytest

from services.common.spec import registry
from tests import database
from tests.faults import broker
from tests.platform import Platform

# What the tests found, printed by pytest_terminal_summary.
FIGURES: dict = {"calls": 0, "codes": Counter(), "internal": 0, "lost": 0, "duplicated": 0,
                 "recovery_seconds": {}, "worker_exits": 0}

# Every declared service runs (and must survive the outages, and is fuzzed); the load is on
# filing and certificates.
SERVICES = tuple(registry())


@pytest.fixture(scope="session")
def node():
    why = broker.available()
    if why:
        pytest.skip(f"no RabbitMQ node of our own: {why}")
    started = broker.BrokerNode()
    atexit.register(started.stop)  # even if the session dies, the node does not outlive it
    try:
        started.start()
    except Exception:
        started.stop()
        raise
    yield started
    started.stop()


@pytest.fixture(scope="session")
def plat(node, tmp_path_factory):
    # The session's database server keeps its store on disk, so the suite can stop and start
    # it (tests/database.py starts it on first use).
    database.server(on_disk=True)
    # Every filing of the suite is in one district for one occupation: lift its quota.
    made = Platform(tmp_path_factory.mktemp("faults"), services=SERVICES, broker=node.amqp_uri,
                    FILING_DISTRICT_QUOTA=100000, EVENT_RETRY_DELAY=0.2,
                    # Events a broker outage left unpublished go out with the relay's next
                    # rounds: every 2 s here, not every 30 s.
                    SWEEP_INTERVAL=2)
    # The load and the fuzz call public RPCs anonymously from one address, far more often
    # than the edge's per-address limit allows: the limit is not what this suite tests.
    made.edge_env = {"PUBLIC_RATE_LIMIT": "0"}
    started = made.start()
    yield started
    started.stop()


def record(code_name: str) -> None:
    FIGURES["calls"] += 1
    FIGURES["codes"][code_name] += 1
    if code_name in ("INTERNAL", "UNKNOWN"):
        FIGURES["internal"] += 1


def pytest_terminal_summary(terminalreporter):
    if not FIGURES["calls"]:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault suite figures")
    write(f"calls: {FIGURES['calls']}")
    write("answered by code: " + ", ".join(f"{code} {n}" for code, n in
                                           FIGURES["codes"].most_common()))
    write(f"INTERNAL or UNKNOWN: {FIGURES['internal']}")
    write(f"lost: {FIGURES['lost']}    duplicated: {FIGURES['duplicated']}    "
          f"worker exits: {FIGURES['worker_exits']}")
    for what, seconds in FIGURES["recovery_seconds"].items():
        write(f"recovery after {what}: {seconds:.2f} s")
