"""An event is handled, delivered again after a transient failure, or kept as a dead letter:
never acked and forgotten (services/common/entrypoints.py EventHandler). On the real broker,
with the certificate registry's handlers of filing's events, made to fail on purpose."""
from __future__ import annotations

import functools
import time

import eventlet
import pytest
from mongoengine.connection import get_db
from nameko.standalone.events import event_dispatcher
from prometheus_client import REGISTRY

from services.certificates import handlers
from services.certificates.service import CertificateRegistryService
from services.common.dead_letters import replay, select
from services.common.entrypoints import DEAD_LETTERS, DELIVERY_HEADER
from services.common.errors import Conflict
from tests.support import uscc


def eventually(probe, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        eventlet.sleep(0.05)
    return value


def filed(event_id: str, n: int = 1, **body) -> dict:
    return {"meta": {"event_id": event_id, "occurred_at": "2026-11-21T01:00:00Z",
                     "source": "filing", "sequence": 1},
            "institution_id": uscc(n), **body}


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def registry(start_service):
    return start_service(CertificateRegistryService, EVENT_RETRY_DELAY=0.05,
                         EVENT_RETRY_MAX_DELAY=0.2, EVENT_MAX_DELIVERIES=3)


@pytest.fixture
def failing(monkeypatch):
    """Make filing_status_changed fail: failing(exc, times) raises exc the first `times`
    calls (None: every call); the calls are counted."""
    original = handlers.filing_status_changed
    calls = []

    def install(exc, times=None):
        @functools.wraps(original)
        def wrapper(event, *args):
            calls.append(event.meta.event_id)
            if times is None or len(calls) <= times:
                raise exc
            return original(event, *args)
        monkeypatch.setattr(handlers, "filing_status_changed", wrapper)
        return calls

    return install


def dead_letters() -> list[dict]:
    return list(get_db("certificates")[DEAD_LETTERS].find())


def test_a_conflict_is_delivered_again_until_it_is_handled(registry, rabbit_config, failing):
    calls = failing(Conflict("status kept changing"), times=2)
    before = metric("vocreg_event_retries_total", event_type="filing.InstitutionFiled")
    event_dispatcher(rabbit_config)("filing", "InstitutionFiled", filed("ev-retry"))
    eventually(lambda: len(calls) >= 3, what="three deliveries")
    eventually(lambda: get_db("certificates")["processed_events"].find_one(
        {"_id": "filing_status_changed:ev-retry"}), what="the event handled")
    assert calls == ["ev-retry"] * 3
    assert metric("vocreg_event_retries_total", event_type="filing.InstitutionFiled") == before + 2
    assert dead_letters() == []


def test_a_transient_failure_that_lasts_is_kept_as_a_dead_letter(registry, rabbit_config,
                                                                 failing):
    calls = failing(Conflict("status kept changing"))
    event_dispatcher(rabbit_config)("filing", "InstitutionFiled", filed("ev-stuck"))
    [letter] = eventually(dead_letters, what="a dead letter")
    assert len(calls) == 3  # EVENT_MAX_DELIVERIES
    assert letter["reason"] == "retries_exhausted" and letter["deliveries"] == 3
    assert letter["event_id"] == "ev-stuck" and letter["handler"] == "on_institution_filed"
    assert letter["error"].startswith("Conflict: status kept changing")
    assert DELIVERY_HEADER in letter["headers"] and '"ev-stuck"' in letter["body"]
    eventlet.sleep(0.5)
    assert len(calls) == 3  # acked once kept: not delivered again


def test_an_event_that_breaks_its_contract_is_kept_as_a_dead_letter(registry, rabbit_config):
    before = metric("vocreg_dead_letters_total", event_type="filing.InstitutionFiled",
                    reason="contract_violation")
    dispatch = event_dispatcher(rabbit_config)
    dispatch("filing", "InstitutionFiled", {"meta": {"occurred_at": "2026-11-21T01:00:00Z"},
                                            "institution_id": uscc(1)})  # no event id
    dispatch("filing", "InstitutionFiled", filed("ev-noid", institution_id=""))
    dispatch("filing", "InstitutionFiled", filed("ev-type", institution_id=["not", "a", "str"]))
    letters = eventually(lambda: len(dead_letters()) == 3 and dead_letters(),
                         what="three dead letters")
    assert {d["reason"] for d in letters} == {"contract_violation"}
    assert {d["event_id"] for d in letters} == {"", "ev-noid", "ev-type"}
    assert all(d["deliveries"] == 1 for d in letters)  # never retried: it would fail again
    assert metric("vocreg_dead_letters_total", event_type="filing.InstitutionFiled",
                  reason="contract_violation") == before + 3


def test_a_handler_bug_is_kept_as_a_dead_letter_at_once(registry, rabbit_config, failing):
    calls = failing(KeyError("status"))
    event_dispatcher(rabbit_config)("filing", "InstitutionSuspended",
                                    filed("ev-bug", reason="order 7"))
    [letter] = eventually(dead_letters, what="a dead letter")
    assert letter["reason"] == "handler_failed" and letter["error"].startswith("KeyError")
    assert letter["handler"] == "on_institution_suspended" and calls == ["ev-bug"]


def test_a_dead_letter_replayed_once_the_cause_is_fixed_is_handled(registry, rabbit_config,
                                                                   failing, monkeypatch):
    calls = failing(KeyError("status"))
    event_dispatcher(rabbit_config)("filing", "InstitutionFiled", filed("ev-replay"))
    [letter] = eventually(dead_letters, what="a dead letter")
    monkeypatch.undo()  # the bug is fixed
    letters = get_db("certificates")[DEAD_LETTERS]
    assert replay(letters, rabbit_config["AMQP_URI"], select(reason="handler_failed")) == 1
    eventually(lambda: get_db("certificates")["processed_events"].find_one(
        {"_id": "filing_status_changed:ev-replay"}), what="the replayed event handled")
    assert dead_letters() == [] and calls == ["ev-replay"]
    view = get_db("certificates")["institution_status"].find_one({"_id": uscc(1)})
    assert view["status"] == "INSTITUTION_STATUS_ACTIVE"


def test_an_undecodable_event_is_kept_as_a_dead_letter(registry, rabbit_config):
    from kombu import Connection, Exchange

    with Connection(rabbit_config["AMQP_URI"]) as connection:
        producer = connection.Producer()
        exchange = Exchange("filing.events", type="topic", durable=True)
        producer.publish(b"{not json", exchange=exchange, routing_key="InstitutionFiled",
                         content_type="application/json", content_encoding="utf-8")
        producer.publish(b"plain words", exchange=exchange, routing_key="FilingExpired",
                         content_type="text/plain", content_encoding="utf-8")
    letters = eventually(lambda: len(dead_letters()) == 2 and dead_letters(),
                         what="two dead letters")
    assert {(d["handler"], d["reason"], d["body"]) for d in letters} == {
        ("on_institution_filed", "contract_violation", "{not json"),
        ("on_filing_expired", "contract_violation", "plain words")}
    assert all(d["error"].startswith("ContractViolation: undecodable body") for d in letters)
