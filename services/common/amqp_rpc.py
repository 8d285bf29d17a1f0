"""The edge's RPC client: nameko's RPC protocol spoken directly over AMQP, for threads (no
eventlet, no nameko).

nameko's standalone ClusterRpcProxy built a new kombu Connection and publisher for every
publish, and published every request persistent with publisher confirms (to detect an unknown
service), though a request is worthless once its caller's deadline passes. Measured here that
was 15 % of the edge's CPU and most of its share of a call's latency. This client keeps one
AMQP connection per calling thread, with its own exclusive reply queue, and publishes each
request non-persistent, without confirms, expiring with the caller's deadline.

The messages are nameko 2.14's (nameko/rpc.py), so the workers need nothing new:
  request  exchange `nameko-rpc` (durable topic), routing key `<service>.<method>`,
           properties reply_to (the routing key our reply queue is bound with), correlation_id,
           content_type application/json; headers `nameko.<key>` carry the context data
           (`nameko.auth_token`, `nameko.call_id_stack`); body {"args": [...], "kwargs": {}}
  reply    to `nameko-rpc` with our routing key and the same correlation_id:
           {"result": ..., "error": null | {"exc_type", "exc_path", "exc_args", "value"}}

Liveness (`ConsumerWatch`): a worker consumes from its service's queue `rpc-<service>`; a
passive queue.declare answers with that queue's consumer count in one cheap round trip. When a
worker process dies, the broker drops its consumer at once (the TCP connection closes), so the
edge knows within one watch interval that nobody will take a call: new calls fail fast, and a
call already waiting fails as soon as its request is back on a queue nobody consumes.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import amqp
from amqp.transport import TCPTransport
from kombu.utils.url import parse_url

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
RPC_QUEUE = "rpc-{}"
CONTENT_TYPE = "application/json"
HEADER_PREFIX = "nameko."
# Context the edge adds: "<service>.<Method>" of a call whose answer it parses into its
# message, so the worker does not check its response again (services/common/api.py). Bound to
# the method: if nameko carries it on to a call that method makes (context data travels with
# downstream calls), it matches nothing there.
CHECKED_CONTEXT_KEY = "vocreg_checked"
# A connection unused for this long is checked with one round trip before it carries a call:
# heartbeats are off (an idle thread cannot answer them), and a connection silently dropped
# by a middlebox would otherwise swallow a request and leave the caller waiting.
IDLE_CHECK_SECONDS = 30.0
# How often a waiting call looks at its service's liveness.
WAIT_SLICE_SECONDS = 0.1


# What one read takes from the socket at most (see _BufferedTransport).
READ_CHUNK = 65536


class _BufferedTransport(TCPTransport):
    """py-amqp reads exactly the bytes it needs next, one recv each: a reply (three frames)
    cost about ten recv calls, each releasing and retaking the GIL among the edge's threads.
    This reads what has arrived (up to READ_CHUNK) and keeps the rest for the next frame,
    in the buffer py-amqp already keeps between reads."""

    def _read(self, n, initial=False, _errnos=(errno.EAGAIN, errno.EINTR)):
        recv = self._quick_recv
        rbuf = self._read_buffer
        try:
            while len(rbuf) < n:
                try:
                    s = recv(max(n - len(rbuf), READ_CHUNK))
                except OSError as exc:
                    if exc.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise TimeoutError() from None
                        continue
                    raise
                if not s:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += s
        except BaseException:
            self._read_buffer = rbuf
            raise
        result, self._read_buffer = rbuf[:n], rbuf[n:]
        return result


class _Connection(amqp.Connection):
    """amqp.Connection with buffered reads over plain TCP (TLS keeps py-amqp's own)."""

    def Transport(self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None,
                  socket_settings=None, **kwargs):
        if ssl:
            return super().Transport(host, connect_timeout, ssl=ssl, read_timeout=read_timeout,
                                     write_timeout=write_timeout,
                                     socket_settings=socket_settings, **kwargs)
        return _BufferedTransport(host, connect_timeout=connect_timeout,
                                  read_timeout=read_timeout, write_timeout=write_timeout,
                                  socket_settings=socket_settings, **kwargs)


class RemoteCallError(Exception):
    """The worker answered with an error: nameko's serialised exception."""

    def __init__(self, exc_type: str | None, value: str, exc_args: list):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type, self.value, self.exc_args = exc_type, value, exc_args


class CallTimeout(Exception):
    """No answer before the caller's deadline."""


class ServiceDown(Exception):
    """Nobody consumes the service's queue: its worker is not running."""


class BusError(Exception):
    """The broker could not be reached or the connection broke mid-call."""


def connection_params(uri: str) -> dict:
    """amqp.Connection keyword arguments for an AMQP URI (the same parsing as nameko's kombu)."""
    parts = parse_url(uri)
    if parts["transport"] not in ("amqp", "amqps", "pyamqp"):
        raise ValueError(f"AMQP_URI must be amqp:// or amqps://, not {parts['transport']}://")
    secure = parts["transport"] == "amqps"
    return {"host": f"{parts['hostname'] or 'localhost'}:{parts['port'] or (5671 if secure else 5672)}",
            "userid": parts["userid"] or "guest", "password": parts["password"] or "guest",
            "virtual_host": parts["virtual_host"] or "/", "ssl": secure,
            "connect_timeout": 5, "heartbeat": 0,
            "client_properties": {"connection_name": f"vocreg-edge {socket.gethostname()}"}}


def request_message(payload, context: dict, reply_to: str, correlation_id: str,
                    timeout: float) -> amqp.Message:
    """A nameko RPC request: the payload as the method's one positional argument."""
    body = json.dumps({"args": [] if payload is None else [payload], "kwargs": {}},
                      ensure_ascii=False, separators=(",", ":")).encode()
    headers = {HEADER_PREFIX + key: value for key, value in context.items() if value is not None}
    return amqp.Message(
        body, content_type=CONTENT_TYPE, content_encoding="utf-8", reply_to=reply_to,
        correlation_id=correlation_id, application_headers=headers,
        # Not persistent, no confirms: a request lives only as long as its caller waits.
        delivery_mode=1, expiration=str(max(1, int(timeout * 1000))))


def parse_reply(body):
    """The result of a nameko reply body, or RemoteCallError (a reply that is not one is the
    worker's bug: "MalformedReply", which the edge answers as INTERNAL)."""
    try:
        reply = json.loads(body)
        if not isinstance(reply, dict):
            raise ValueError("not an object")
    except ValueError:
        raise RemoteCallError("MalformedReply", "the worker's reply is not JSON", []) from None
    error = reply.get("error")
    if error:
        args = error.get("exc_args")
        raise RemoteCallError(error.get("exc_type"), str(error.get("value") or ""),
                              args if isinstance(args, list) else [])
    return reply.get("result")


class _ThreadChannel:
    """One thread's connection: a channel, an exclusive reply queue, one call at a time."""

    def __init__(self, params: dict):
        self.reply_key = uuid.uuid4().hex
        self.connection = _Connection(**params)
        self.connection.connect()
        self.channel = self.connection.channel()
        self.channel.exchange_declare(RPC_EXCHANGE, "topic", durable=True, auto_delete=False)
        queue, _, _ = self.channel.queue_declare(f"rpc.reply-edge-{self.reply_key}",
                                                 exclusive=True, auto_delete=True)
        self.channel.queue_bind(queue, RPC_EXCHANGE, routing_key=self.reply_key)
        self.channel.basic_consume(queue, no_ack=True, callback=self._on_reply)
        self.channel.events["basic_return"].add(self._on_return)
        self.waiting_for: str | None = None
        self.reply = None
        self.returned = False
        self.used_at = time.monotonic()

    def _on_reply(self, message) -> None:
        if message.properties.get("correlation_id") == self.waiting_for:
            self.reply = message.body
        # else: the late answer to a call that already gave up; dropped.

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        if message.properties.get("correlation_id") == self.waiting_for:
            self.returned = True

    def check(self, service: str) -> int:
        """One round trip: the service queue's consumer count (ChannelError if no queue)."""
        _, _, consumers = self.channel.queue_declare(RPC_QUEUE.format(service), passive=True)
        return consumers

    def call(self, service, method, payload, context, timeout, correlation_id, gone):
        """Publish and wait; `gone()` says the service can no longer answer."""
        deadline = time.monotonic() + timeout
        self.waiting_for, self.reply, self.returned = correlation_id, None, False
        try:
            self.channel.basic_publish(
                request_message(payload, context, self.reply_key, correlation_id, timeout),
                exchange=RPC_EXCHANGE, routing_key=f"{service}.{method}", mandatory=True)
            while self.reply is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CallTimeout(f"{service}.{method}: no answer within {timeout:.3f}s")
                try:
                    self.connection.drain_events(timeout=min(remaining, WAIT_SLICE_SECONDS))
                except TimeoutError:
                    pass
                if self.returned:
                    raise ServiceDown(service)
                if self.reply is None and gone():
                    raise ServiceDown(service)
            return parse_reply(self.reply)
        finally:
            self.waiting_for, self.reply = None, None
            self.used_at = time.monotonic()

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # already broken: nothing left to release
            log.debug("closing a broken AMQP connection failed", exc_info=True)


class RpcClient:
    """Calls a service's worker method from any thread: each thread has its own connection
    (amqp connections are not thread-safe, and no hand-off between threads costs latency).
    A broken connection is dropped and the next call on that thread opens a new one."""

    def __init__(self, amqp_uri: str, watch: ConsumerWatch | None = None):
        self.params = connection_params(amqp_uri)
        self.watch = watch
        self._local = threading.local()
        self._all: set[_ThreadChannel] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _channel(self) -> _ThreadChannel:
        channel = getattr(self._local, "channel", None)
        if channel is None:
            if self._closed:
                raise BusError("the client is closed")
            try:
                channel = _ThreadChannel(self.params)
            except (OSError, amqp.exceptions.AMQPError) as exc:
                raise BusError(f"cannot reach the broker: {type(exc).__name__}") from exc
            with self._lock:
                self._all.add(channel)
            self._local.channel = channel
        return channel

    def _drop(self, channel: _ThreadChannel) -> None:
        self._local.channel = None
        with self._lock:
            self._all.discard(channel)
        channel.close()

    def call(self, service: str, method: str, payload, context: dict | None, timeout: float,
             call_id: str | None = None):
        """`service.method(payload)` with nameko context data (e.g. auth_token); the result,
        or RemoteCallError, CallTimeout, ServiceDown, BusError."""
        correlation_id = call_id or uuid.uuid4().hex
        context = {"call_id_stack": [f"edge.{method}.{correlation_id}"], **(context or {})}
        watch = self.watch
        if watch is not None and not watch.present(service):
            raise ServiceDown(service)
        channel = self._channel()
        try:
            if time.monotonic() - channel.used_at > IDLE_CHECK_SECONDS:
                channel.check(service)
            return channel.call(service, method, payload, context, timeout, correlation_id,
                                gone=(lambda: watch.stranded(service)) if watch else (lambda: False))
        except (RemoteCallError, CallTimeout, ServiceDown):
            raise
        except amqp.exceptions.NotFound:  # the idle check: the service's queue does not exist
            self._drop(channel)
            raise ServiceDown(service) from None
        except (OSError, amqp.exceptions.AMQPError) as exc:
            self._drop(channel)
            raise BusError(f"{type(exc).__name__} on the bus") from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            channels, self._all = list(self._all), set()
        for channel in channels:
            channel.close()


@dataclass
class QueueState:
    consumers: int | None = None  # None: not known (the watch cannot reach the broker)
    ready: int = 0                # messages waiting in the queue, taken by nobody yet


class ConsumerWatch(threading.Thread):
    """Reads every `interval` seconds how many consumers each service's RPC queue has (a
    passive queue.declare, one round trip each). `present(service)`: a worker consumes it.
    `stranded(service)`: nobody consumes it and requests wait in it, so a call waiting for
    an answer from it would wait out its deadline. A service whose queue does not exist (its
    worker never started on this vhost) has no consumer. While the watch cannot reach the
    broker it knows nothing and holds no call back (the calls meet the outage themselves).

    `on_change(service, present)` is called when a service's presence changes."""

    def __init__(self, amqp_uri: str, services, interval: float = 0.25, on_change=None):
        super().__init__(name="consumer-watch", daemon=True)
        self.params = connection_params(amqp_uri)
        self.services = tuple(services)
        self.interval = interval
        self.on_change = on_change
        self.states = {name: QueueState() for name in self.services}
        self.stopping = threading.Event()
        self._connection = None
        self._channel = None

    def present(self, service: str) -> bool:
        return self.states.get(service, QueueState()).consumers != 0

    def stranded(self, service: str) -> bool:
        state = self.states.get(service, QueueState())
        return state.consumers == 0 and state.ready > 0

    def _read(self, service: str) -> QueueState:
        if self._channel is None:
            if self._connection is None:
                self._connection = _Connection(**self.params)
                self._connection.connect()
            self._channel = self._connection.channel()
        try:
            _, ready, consumers = self._channel.queue_declare(RPC_QUEUE.format(service),
                                                              passive=True)
        except amqp.exceptions.NotFound:
            self._channel = None  # the broker closed the channel with the 404
            ready, consumers = 0, 0
        return QueueState(consumers, ready)

    def check_once(self) -> None:
        before = {service: self.present(service) for service in self.services}
        try:
            self.states = {service: self._read(service) for service in self.services}
        except (OSError, amqp.exceptions.AMQPError) as exc:
            if any(state.consumers is not None for state in self.states.values()):
                log.warning("consumer watch: the broker is unreachable (%s)", type(exc).__name__)
            self._reset()
            self.states = {service: QueueState() for service in self.services}
        for service, was in before.items():
            now = self.present(service)
            if now != was:
                log.log(logging.INFO if now else logging.WARNING, "%s worker %s", service,
                        "consuming" if now else "gone: nobody consumes its queue")
                if self.on_change is not None:
                    self.on_change(service, now)

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                log.debug("closing the watch connection failed", exc_info=True)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.check_once()
        self._reset()
