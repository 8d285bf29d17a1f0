"""Events with ids, stored with the state change that caused them, published after the write.

A state change and its events go into ONE document write: the aggregate carries its own
`pending_events` list. MongoDB writes one document atomically, so a crash after the write
keeps the events and a crash before it loses both: never one without the other. After the
write the service publishes them (with publisher confirms) and pulls each one it published.
A timer relays whatever is left, e.g. after a crash, a broker outage or a failed confirm.
So an event may be published twice (crash after publish, before the pull) but never lost,
and handlers are idempotent on the event id (entrypoints.Worker.handle_event): a redelivery
changes nothing.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

from nameko.events import EventDispatcher

from services.common.metrics import EVENTS_PUBLISHED, OUTBOX_PENDING, PUBLISH_FAILURES
from services.common.protos import from_dict

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_event(events_module, source: str, event_type: str, payload: dict, actor: str,
              now: datetime, aggregate_id: str = "", sequence: int = 0) -> dict:
    """An event ready to store: checked against its message in events.proto first, so a
    malformed event fails the write that would have caused it, not a consumer later."""
    message_class = getattr(events_module, event_type, None)
    if message_class is None:
        raise LookupError(f"{event_type} is not a message of {events_module.__name__}")
    event_id = uuid.uuid4().hex
    body = {"meta": {"event_id": event_id,
                     "occurred_at": now.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
                     "source": source, "actor": actor},
            **payload}
    if aggregate_id:
        body["meta"].update(aggregate_id=aggregate_id, sequence=sequence)
    from_dict(body, message_class)
    return {"event_id": event_id, "event_type": event_type, "body": body}


class OutboxPublisher:
    """What a worker gets from `Outbox`: publish a document's pending events, or relay all."""

    def __init__(self, provider: Outbox, headers: dict):
        self.provider = provider
        self.headers = headers

    def publish_pending(self, document) -> int:
        """Publish the pending events of one saved document; returns how many went out.

        Failures are logged and left for the relay: the caller's write already succeeded.
        """
        sent = 0
        collection = type(document)._get_collection()
        for event in list(document.pending_events or ()):
            try:
                self.provider.send(event, self.headers)
            except Exception:  # broker down, confirm refused, injected fault: the relay retries
                PUBLISH_FAILURES.labels(self.provider.container.service_name).inc()
                log.warning("publishing %s %s failed; left for the relay",
                            event["event_type"], event["event_id"], exc_info=True)
                return sent
            collection.update_one({"_id": document.pk},
                                  {"$pull": {"pending_events": {"event_id": event["event_id"]}}})
            sent += 1
        return sent

    def relay(self, *document_classes, limit: int = 500) -> int:
        """Publish events left pending in any of these collections (oldest documents first)."""
        sent = pending = 0
        for cls in document_classes:
            for document in cls.objects(pending_events__0__exists=True).order_by("id")[:limit]:
                pending += len(document.pending_events)
                sent += self.publish_pending(document)
        OUTBOX_PENDING.labels(self.provider.container.service_name).set(pending - sent)
        return sent


class Outbox(EventDispatcher):
    """nameko's event dispatcher (exchange `<service>.events`, confirms on), used as an outbox.

    FAULT_INJECT_PUBLISH_FAILURES (config, default 0) makes the first N publish attempts of
    the process fail as a crash between store and publish would; the e2e tests use it.
    """

    def setup(self):
        super().setup()
        self._faults_left = int(self.container.config.get("FAULT_INJECT_PUBLISH_FAILURES", 0) or 0)

    def send(self, event: dict, headers: dict) -> None:
        if self._faults_left > 0:
            self._faults_left -= 1
            raise ConnectionError("injected publish failure (FAULT_INJECT_PUBLISH_FAILURES)")
        self.publisher.publish(event["body"], exchange=self.exchange,
                               routing_key=event["event_type"],
                               extra_headers={**headers, "vocreg.event_id": event["event_id"]})
        EVENTS_PUBLISHED.labels(self.container.service_name, event["event_type"]).inc()

    def get_dependency(self, worker_ctx):
        return OutboxPublisher(self, self.get_message_headers(worker_ctx))

