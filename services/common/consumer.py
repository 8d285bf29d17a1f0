"""A worker that outlives the broker: nameko's queue consumer, made to survive a lost
connection under load.

nameko 2.14 reconnects its consumer by itself (kombu's ConsumerMixin catches connection
errors and connects again), but what the worker greenthreads do with the messages they took
before the drop does not: each one acks its message on the connection it came from when it
finishes, and an RPC first publishes its reply. With the broker gone, the ack meets a reset
socket (ConnectionResetError, BrokenPipeError: not the amqp ConnectionError nameko ignores;
nameko#511 guards with `message.channel.connection`, which is still set until the consumer
thread notices the drop) and the reply's publish gives up after its retries (kombu
OperationalError). Either escapes into the container's handling of the worker thread, which
logs "thread exited with error" and kills the container: the process exits 1.

Here nothing a worker does on the way out can kill the container:
- an ack or requeue that cannot reach the broker is dropped with a warning: the broker has
  already taken the message back (unacknowledged messages of a closed connection return to
  their queue) and delivers it again, to this worker once it has reconnected or to another;
- an RPC whose reply cannot be published is put back on its queue (services/common/api.py):
  the work is done, and a mutating RPC is idempotent on its request_id, so running it again
  answers the same; a request that already came back once is dropped (its caller's reply
  queue is gone with the connection that made it);
- the consumer connects again every RECONNECT_INTERVAL_MAX seconds at most (kombu's default
  grows to 30 s, so a worker would serve up to half a minute after the broker is back).

Every queue consumer of a worker is this one class, so they share one connection (nameko
shares an extension per class): the RPC consumer (services/common/api.py), the event
handlers (services/common/entrypoints.py) and the reply listener of the RPCs a worker makes
(services/common/service_rpc.py).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

from nameko import messaging
from prometheus_client import Counter

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_START = 0.25
RECONNECT_INTERVAL_STEP = 0.5
RECONNECT_INTERVAL_MAX = 2.0

UNSETTLED = Counter(
    "vocreg_unsettled_messages_total",
    "Messages a worker could not ack or requeue because its broker connection was gone; the "
    "broker delivers them again.", ["action"])


class QueueConsumer(messaging.QueueConsumer):
    """nameko's QueueConsumer whose acks and requeues never raise, and which reconnects
    quickly."""

    def ack_message(self, message):
        self._settle(message, "ack")

    def requeue_message(self, message):
        self._settle(message, "requeue")

    def _settle(self, message, action: str) -> None:
        channel = message.channel
        if channel is None or not channel.connection:
            UNSETTLED.labels(action).inc()
            log.info("message not %sed: its connection is closed; the broker delivers it "
                     "again", action)
            return
        try:
            getattr(message, action)()
        except Exception as exc:  # a reset socket, a closed channel: never the container's end
            UNSETTLED.labels(action).inc()
            log.warning("message not %sed (%s: %s); the broker delivers it again", action,
                        type(exc).__name__, str(exc)[:200])

    def on_decode_error(self, message, exc):
        """A message whose body cannot be decoded (not JSON, a content type not accepted):
        kombu's default logs it and acks it, gone. An event goes to its handler's dead
        letters instead (entrypoints.EventHandler.undecodable); anything else is logged and
        acked as before (the edge and nameko only ever send JSON)."""
        provider = self.provider_of(message)
        keep = getattr(provider, "undecodable", None)
        if keep is not None:
            try:
                keep(message, exc)
                return
            except Exception:
                log.exception("an undecodable message could not be kept")
                self.requeue_message(message)
                return
        log.error("an undecodable message was dropped (%s: %s)", type(exc).__name__,
                  str(exc)[:200])
        self.ack_message(message)

    def provider_of(self, message):
        """The entrypoint whose consumer received `message`, or None."""
        tag = (message.delivery_info or {}).get("consumer_tag")
        for provider, consumer in self._consumers.items():
            if tag in getattr(consumer, "_active_tags", {}).values():
                return provider
        return None

    @contextmanager
    def establish_connection(self):
        # kombu's ConsumerMixin.establish_connection with a short retry interval.
        with self.create_connection() as conn:
            conn.ensure_connection(self.on_connection_error, self.connect_max_retries,
                                   interval_start=RECONNECT_INTERVAL_START,
                                   interval_step=RECONNECT_INTERVAL_STEP,
                                   interval_max=RECONNECT_INTERVAL_MAX)
            yield conn

    def on_connection_error(self, exc, interval):
        log.warning("broker unreachable (%s); connecting again in %.2fs",
                    type(exc).__name__, interval)
