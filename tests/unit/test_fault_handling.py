"""What a worker does with a failure it meets (services/common/entrypoints.py,
services/common/consumer.py) and how `make run` restarts a dead process (services/run.py)."""
from __future__ import annotations

import pymongo.errors
import pytest
from kombu.exceptions import OperationalError

from services import run
from services.common.entrypoints import event_disposition, retry_delay, retry_queue_for
from services.common.errors import Conflict, ContractViolation, NotFound, Unavailable


@pytest.mark.parametrize("exc, delivery, outcome", [
    (None, 1, "ack"),
    (None, 10, "ack"),
    (Conflict("raced"), 1, "retry"),
    (Conflict("raced"), 9, "retry"),
    (Conflict("raced"), 10, "retries_exhausted"),
    (pymongo.errors.ServerSelectionTimeoutError("no server"), 3, "retry"),
    (pymongo.errors.AutoReconnect("lost"), 3, "retry"),
    (OperationalError("broker away"), 3, "retry"),
    (ConnectionResetError(), 3, "retry"),
    (Unavailable("filing did not answer"), 3, "retry"),
    (ContractViolation("no event id"), 1, "contract_violation"),
    (NotFound("no such thing"), 1, "handler_failed"),
    (KeyError("status"), 1, "handler_failed"),
])
def test_an_event_is_acked_retried_or_kept_as_a_dead_letter(exc, delivery, outcome):
    assert event_disposition(exc, delivery, max_deliveries=10) == outcome


def test_the_pause_before_a_redelivery_doubles_up_to_its_maximum():
    assert [retry_delay(n, 0.5, 30) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_copies_of_one_delay_wait_in_a_queue_of_their_own_that_hands_them_back():
    """The broker expires only a queue's head: copies that wait different times must not
    share a queue (a long wait would hold the short ones behind it)."""
    queues = [retry_queue_for("evt-filing-InstitutionFiled--certificates.on_filed",
                              retry_delay(n, 0.5, 30)) for n in range(1, 10)]
    assert [q.name.rsplit(".", 1)[1] for q in queues] == [
        "500ms", "1000ms", "2000ms", "4000ms", "8000ms", "16000ms", "30000ms", "30000ms",
        "30000ms"]
    assert [q.queue_arguments["x-message-ttl"] for q in queues[:7]] == [
        500, 1000, 2000, 4000, 8000, 16000, 30000]
    assert all(q.durable and q.queue_arguments["x-dead-letter-exchange"] == "" and
               q.queue_arguments["x-dead-letter-routing-key"] ==
               "evt-filing-InstitutionFiled--certificates.on_filed" for q in queues)
    assert retry_queue_for("q", 0).queue_arguments["x-message-ttl"] == 0  # at once
    assert retry_queue_for("q", 0.0504).name == "q.retry.50ms"


class FakeProcess:
    def __init__(self, code=None, pid=1):
        self.code, self.pid = code, pid

    def poll(self):
        return self.code


def test_make_run_restarts_a_dead_child_with_a_growing_pause(monkeypatch):
    started = []
    monkeypatch.setattr(run, "start", lambda cmd, env=None: started.append(cmd) or
                        FakeProcess(pid=len(started)))
    child = run.Child("worker:filing", ["services.common.worker", "filing"])
    child.start()
    now = child.started_at
    assert child.check(now + 1) is None and len(started) == 1  # running
    child.process.code = -9
    assert child.check(now + 100) is None and child.restart_at == now + 101  # 1 s
    assert child.running is None
    child.check(now + 101)
    assert len(started) == 2 and child.running is child.process
    child.process.code = 1  # dies again at once: 2 s
    child.check(child.started_at + 1)
    assert child.restart_at == child.started_at + 1 + 2
    child.check(child.restart_at)
    child.process.code = 1
    child.check(child.started_at + run.STABLE_AFTER)  # ran a minute: back to 1 s
    assert child.restart_at == child.started_at + run.STABLE_AFTER + 1


def test_make_run_stops_when_a_child_fails_at_its_first_start(monkeypatch):
    monkeypatch.setattr(run, "start", lambda cmd, env=None: FakeProcess(code=2))
    child = run.Child("edge", ["services.common.edge"])
    child.start()
    assert child.check(child.started_at + 1) == "fatal"


def test_make_run_restarts_a_child_killed_right_after_its_start(monkeypatch):
    monkeypatch.setattr(run, "start", lambda cmd, env=None: FakeProcess(code=-9))
    child = run.Child("worker:filing", ["services.common.worker", "filing"])
    child.start()
    assert child.check(child.started_at + 1) is None
    assert child.restart_at == child.started_at + 2


def test_the_restart_pause_is_capped():
    assert [run.restart_delay(n) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 30, 30, 30]


def test_a_worker_that_cannot_reach_its_backend_is_unavailable_not_internal():
    import builtins

    import amqp.exceptions
    import grpc
    import kombu.exceptions

    from services.common.errors import BACKEND_UNAVAILABLE, grpc_status_for

    modules = (pymongo.errors, kombu.exceptions, amqp.exceptions, builtins)
    for name in BACKEND_UNAVAILABLE:  # each is the name of a real exception type
        assert any(isinstance(getattr(m, name, None), type) for m in modules), name
        assert grpc_status_for(name) == grpc.StatusCode.UNAVAILABLE
