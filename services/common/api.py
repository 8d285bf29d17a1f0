"""The `api` entrypoint: one worker RPC method per proto RPC, named after it.

It takes the request message as a dict and returns the response message as a dict. Before
the method runs: the caller's token (nameko `auth_token` context) is verified, the RPC's
access policy from the proto is enforced, and the request is checked against its proto
message, so internal callers on the bus meet the same rules as gRPC clients at the edge.

A message is checked once. The request here, for every caller (its field limits are checked
on the parsed message, which the handlers use too). The response by whoever receives it: the
edge parses it into its message to answer, so for a call the edge sends (context
`vocreg_checked` naming this very method) the worker does not check its response again; for
anyone else it does (a 10,000-row answer takes about 0.1 s to check).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.json_format import ParseError
from nameko import rpc as nameko_rpc
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    AUTH_TOKEN_CONTEXT_KEY,
    DEFAULT_SERIALIZER,
    DEFAULT_TRANSPORT_OPTIONS,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.extensions import DependencyProvider
from prometheus_client import Counter

from services.common import limits
from services.common.amqp_rpc import CHECKED_CONTEXT_KEY
from services.common.auth import Identity, authorize, verify_token
from services.common.consumer import QueueConsumer
from services.common.errors import DELIBERATE_ERRORS, InvalidArgument
from services.common.protos import access_policies, from_dict, from_dict_in_turns, service_proto

log = logging.getLogger(__name__)


class _ReplyPublisher(Publisher):
    """Replies go out like the edge's requests: not persistent, without publisher confirms. A
    reply is worth something only while its caller waits on its exclusive, non-durable reply
    queue; a confirm would tell the worker nothing it could act on (a reply it cannot deliver
    is one the caller will not get either way), and cost the worker and the broker a round
    trip per call: measured here, 11 % of the worker's CPU per call, 24 % of the broker's."""

    use_confirms = False
    delivery_mode = 1  # non-persistent
    # A dict of its own. nameko's Publisher keeps transport_options in a class attribute that
    # every publisher of the process shares and writes `confirm_publish` into on each publish,
    # and kombu's pooled connections read that same dict when they connect: a reply's False
    # was left in it under the confirmed publishers' pool (events, the outbox, event retries),
    # whose next new connection came up without confirms (tests/integration/
    # test_event_delivery.py), so an event could count as published that the broker never had.
    transport_options = DEFAULT_TRANSPORT_OPTIONS.copy()


class _Responder(nameko_rpc.Responder):
    publisher_cls = _ReplyPublisher


REPLIES_UNSENT = Counter(
    "vocreg_rpc_replies_unsent_total",
    "RPC replies a worker could not publish (the broker was gone): the request went back to "
    "its queue, or was dropped if it had already come back once.", ["outcome"])


class _RpcConsumer(nameko_rpc.RpcConsumer):
    queue_consumer = QueueConsumer()

    def handle_result(self, message, result, exc_info):
        # nameko 2.14's RpcConsumer.handle_result with the responder above, and a reply that
        # cannot be published put back instead of killing the container (consumer.py).
        config = self.container.config
        responder = _Responder(config[AMQP_URI_CONFIG_KEY], nameko_rpc.get_rpc_exchange(config),
                               config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
                               ssl=config.get(AMQP_SSL_CONFIG_KEY),
                               login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except Exception as exc:  # the broker is gone, after the publisher's own retries
            again = not message.delivery_info.get("redelivered")
            REPLIES_UNSENT.labels("requeued" if again else "dropped").inc()
            log.warning("reply to %s not sent (%s); the request is %s",
                        message.delivery_info.get("routing_key"), type(exc).__name__,
                        "put back on its queue" if again else "dropped (it came back once)")
            if again:
                self.queue_consumer.requeue_message(message)
            else:
                self.queue_consumer.ack_message(message)
            return result, exc_info
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(nameko_rpc.Rpc):
    """nameko's RPC entrypoint answering through _RpcConsumer. Every RPC entrypoint of a
    service must use it (`rpc` below): the consumer is shared per class, and two consumers on
    one service queue would each take calls meant for the other's methods."""

    rpc_consumer = _RpcConsumer()


rpc = Rpc.decorator


@dataclass(frozen=True)
class CallInfo:
    token: str | None
    call_id: str
    checked: str | None = None  # "<service>.<Method>" whose messages the edge checks


class CallContext(DependencyProvider):
    """Gives the method what the call carried: the caller's token and the call id."""

    def get_dependency(self, worker_ctx):
        return CallInfo(token=worker_ctx.data.get(AUTH_TOKEN_CONTEXT_KEY),
                        call_id=worker_ctx.call_id,
                        checked=worker_ctx.data.get(CHECKED_CONTEXT_KEY))


# A parse error quotes the offending value; this much of the message is kept.
MAX_PARSE_ERROR_CHARS = 300


def check_message(request, service: str, message_name: str, what: str):
    """The request as its proto message, or InvalidArgument: it must parse (no unknown field,
    no wrong type) and keep every limit its fields declare (services/common/limits.py:
    lengths, control characters, entries of lists), each violation with its field path."""
    if not isinstance(request, dict):
        raise InvalidArgument(f"{what} must be an object, not {type(request).__name__}")
    message_class = getattr(service_proto(service).messages, message_name)
    try:
        message = from_dict_in_turns(request, message_class)
    except ParseError as exc:
        text = str(exc)
        if len(text) > MAX_PARSE_ERROR_CHARS:
            text = text[:MAX_PARSE_ERROR_CHARS] + "..."
        raise InvalidArgument(f"{what}: {text}") from None
    limits.check(message)
    return message


def api(method):
    """Decorate `def Rpc(self, request: dict, caller: Identity) -> dict` on a service class
    that declares `call = CallContext()`; the proto RPC of the same name gives the types."""
    name = method.__name__

    def entrypoint(self, request=None):
        caller: Identity = verify_token(self.call.token)
        authorize(access_policies(self.name).get(name), caller, f"{self.name}.{name}")
        descriptor = service_proto(self.name).service_descriptor.methods_by_name[name]
        request = {} if request is None else request
        # nameko makes a service instance per call: this call's RPC and its parsed request
        self.request_message = check_message(request, self.name, descriptor.input_type.name,
                                             "request")
        self.rpc_name = name
        checked_by_edge = getattr(self.call, "checked", None) == f"{self.name}.{name}"
        response = method(self, request, caller)
        if not checked_by_edge:
            # A response that does not fit its message is a bug here, not the caller's fault.
            from_dict(response, getattr(service_proto(self.name).messages,
                                        descriptor.output_type.name))
        return response

    entrypoint.__name__ = name
    entrypoint.__qualname__ = method.__qualname__
    entrypoint.__doc__ = method.__doc__
    return rpc(expected_exceptions=DELIBERATE_ERRORS)(entrypoint)

