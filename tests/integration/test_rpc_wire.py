"""The RPC wire between the edge and the workers, on the real broker: the edge's client speaks
nameko's protocol, and the workers answer it lean (not persistent, no confirms)."""
from __future__ import annotations

import json
import uuid

import amqp
import pytest
from nameko.rpc import Rpc as NamekoRpc

from services.common import amqp_rpc
from services.common.api import Rpc
from services.common.errors import grpc_status_for
from services.common.spec import registry
from tests.support import token


@pytest.mark.parametrize("service", list(registry()))
def test_every_rpc_entrypoint_of_a_service_answers_through_the_lean_consumer(service):
    """Two RPC consumer classes in one service would both consume its queue and each refuse
    the other's methods."""
    cls = registry()[service].load_class()
    entrypoints = [e for attr in dir(cls)
                   for e in getattr(getattr(cls, attr, None), "nameko_entrypoints", ())]
    rpcs = [e for e in entrypoints if isinstance(e, NamekoRpc)]
    assert rpcs and all(isinstance(e, Rpc) for e in rpcs), [type(e) for e in rpcs]


def test_the_edge_client_calls_a_worker_and_the_reply_is_lean(filing, rabbit_config):
    uri = rabbit_config["AMQP_URI"]
    client = amqp_rpc.RpcClient(uri)
    try:
        assert client.call("filing", "ListRegister", {}, None, 10)["entries"] == []
        with pytest.raises(amqp_rpc.RemoteCallError) as refused:
            client.call("filing", "GetApplication", {"application_id": "none"},
                        {"auth_token": token("regulator")}, 10)
        assert grpc_status_for(refused.value.exc_type).name == "NOT_FOUND"
        assert refused.value.exc_args[1]["reason"] == "NOT_FOUND"  # the structure crossed
    finally:
        client.close()

    # The reply itself, as the broker delivers it.
    params = amqp_rpc.connection_params(uri)
    connection = amqp.Connection(**params)
    connection.connect()
    try:
        channel = connection.channel()
        key = uuid.uuid4().hex
        queue, _, _ = channel.queue_declare(f"test-reply-{key}", exclusive=True, auto_delete=True)
        channel.queue_bind(queue, amqp_rpc.RPC_EXCHANGE, routing_key=key)
        replies = []
        channel.basic_consume(queue, no_ack=True, callback=replies.append)
        channel.basic_publish(amqp_rpc.request_message({}, {}, key, "c-1", 10),
                              exchange=amqp_rpc.RPC_EXCHANGE, routing_key="filing.ListRegister")
        while not replies:
            connection.drain_events(timeout=10)
        reply = replies[0]
        assert reply.properties["correlation_id"] == "c-1"
        assert reply.properties["delivery_mode"] == 1
        answer = json.loads(reply.body)
        assert answer["error"] is None and answer["result"]["entries"] == []
    finally:
        connection.close()


def test_a_dead_service_is_noticed_by_the_consumer_watch(filing, rabbit_config):
    watch = amqp_rpc.ConsumerWatch(rabbit_config["AMQP_URI"], ["filing", "nobody"])
    changes = []
    watch.on_change = lambda service, present: changes.append((service, present))
    watch.check_once()
    assert watch.present("filing") and not watch.present("nobody")
    assert not watch.stranded("nobody")  # no queue, so nothing waits in it
    filing.stop()
    watch.check_once()
    assert not watch.present("filing") and changes == [("nobody", False), ("filing", False)]
    watch._reset()
