"""What a worker does when the broker fails it mid-call: a reply that cannot be published puts
the request back (answered on its next delivery), and an acknowledgement on a dropped
connection never kills the container (services/common/api.py, services/common/consumer.py)."""
from __future__ import annotations

import time

import eventlet
from kombu.exceptions import OperationalError

from services.common import api
from services.common.consumer import QueueConsumer


def test_a_reply_the_broker_refused_is_sent_when_the_request_comes_back(filing, rpc_as,
                                                                       monkeypatch):
    original = api._Responder.send_response
    attempts = []

    def flaky(self, result, exc_info):
        attempts.append(self.message.delivery_info.get("redelivered"))
        if len(attempts) == 1:
            raise OperationalError("the broker went away")
        return original(self, result, exc_info)

    monkeypatch.setattr(api._Responder, "send_response", flaky)
    answer = rpc_as().filing.CheckName({"name": "安阳市文峰区职业技能培训学校"})
    assert "acceptable" in answer
    assert attempts == [False, True]  # put back once, answered on its second delivery
    assert filing.max_workers  # the container is alive and serving
    assert rpc_as().filing.CheckName({"name": "安阳市北关区职业技能培训学校"})


def test_a_reply_that_fails_twice_is_dropped_and_the_worker_serves_on(filing, rpc_as,
                                                                    monkeypatch):
    original = api._Responder.send_response
    failed = []

    def failing_for_one_name(self, result, exc_info):
        body = self.message.body
        if "first" in (body.decode() if isinstance(body, bytes) else body):
            failed.append(1)
            raise OperationalError("the broker went away")
        return original(self, result, exc_info)

    monkeypatch.setattr(api._Responder, "send_response", failing_for_one_name)
    proxy = rpc_as().filing
    proxy.CheckName.call_async({"name": "first"})
    assert proxy.CheckName({"name": "second"}) is not None
    deadline = time.monotonic() + 5
    while len(failed) < 2 and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    eventlet.sleep(0.3)
    assert len(failed) == 2  # delivered twice, then dropped: not put back for ever


class FakeChannel:
    def __init__(self, connected: bool):
        self.connection = object() if connected else None


class FakeMessage:
    def __init__(self, connected=True, error=None):
        self.channel = FakeChannel(connected)
        self.error = error
        self.settled = []

    def ack(self):
        if self.error:
            raise self.error
        self.settled.append("ack")

    def requeue(self):
        if self.error:
            raise self.error
        self.settled.append("requeue")


class FakeContainer:
    service_name = "filing"


def test_an_ack_or_requeue_on_a_dropped_connection_never_raises():
    consumer = QueueConsumer()
    consumer.container = FakeContainer()
    for error in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(),
                  OperationalError("gone"), OSError("Server unexpectedly closed connection")):
        message = FakeMessage(error=error)
        consumer.ack_message(message)
        consumer.requeue_message(message)
    closed = FakeMessage(connected=False)
    consumer.ack_message(closed)
    assert closed.settled == []
    live = FakeMessage()
    consumer.ack_message(live)
    consumer.requeue_message(live)
    assert live.settled == ["ack", "requeue"]
