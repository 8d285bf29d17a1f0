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
import os
import signal
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

    def publish_pending(self, document, only: set | None = None) -> int:
        """Publish the pending events of one saved document (in order; with `only`, the first
        ones whose ids are in it); returns how many went out.

        Failures are logged and left for the relay: the caller's write already succeeded.
        """
        sent = 0
        collection = type(document)._get_collection()
        for event in list(document.pending_events or ()):
            if only is not None and event["event_id"] not in only:
                break  # newer than the relay's last round: its own call is publishing it
            self.provider.crash_point(BEFORE_PUBLISH, event)
            try:
                self.provider.send(event, self.headers)
            except Exception:  # broker down, confirm refused, injected fault: the relay retries
                PUBLISH_FAILURES.inc()
                log.warning("publishing %s %s failed; left for the relay",
                            event["event_type"], event["event_id"], exc_info=True)
                return sent
            self.provider.crash_point(AFTER_PUBLISH, event)
            collection.update_one({"_id": document.pk},
                                  {"$pull": {"pending_events": {"event_id": event["event_id"]}}})
            sent += 1
        return sent

    def relay(self, *document_classes, limit: int = 500) -> int:
        """Publish events left pending in any of these collections (oldest documents first),
        once they have been pending for a whole round: each round notes what is pending and
        publishes what the previous round of this worker already saw. An event just written
        is being published by its own call; sending it here too would race that call (with a
        real database the write, the publish and the pull take milliseconds) and deliver it
        twice. What a crash, an outage or a failed confirm left goes out one round later."""
        seen_before = self.provider.pending_seen
        seen_now: set[str] = set()
        sent = pending = 0
        for cls in document_classes:
            for document in cls.objects(pending_events__0__exists=True).order_by("id")[:limit]:
                ids = [e["event_id"] for e in document.pending_events]
                pending += len(ids)
                seen_now.update(ids)
                if ids[0] in seen_before:
                    sent += self.publish_pending(document, only=seen_before)
        self.provider.pending_seen = seen_now
        OUTBOX_PENDING.set(pending - sent)
        return sent


# Where FAULT_INJECT_KILL stops the worker: its events are stored (the state change's own
# write) and not yet published; or published and confirmed, not yet pulled from the outbox.
BEFORE_PUBLISH, AFTER_PUBLISH = "before_publish", "after_publish"


class Outbox(EventDispatcher):
    """nameko's event dispatcher (exchange `<service>.events`, confirms on), used as an outbox.

    Two fault knobs for the e2e tests (config; off by default):
    - FAULT_INJECT_PUBLISH_FAILURES=N: the first N publish attempts of the process fail as a
      broker outage would (the write stands; the relay publishes later);
    - FAULT_INJECT_KILL=before_publish|after_publish: at its first event publish the worker
      kills itself with SIGKILL at that point (no cleanup, no reply, no acknowledgement), so a
      test can crash it exactly between the store and the publish, or after the publish.
    """

    def setup(self):
        super().setup()
        self.pending_seen: set[str] = set()  # event ids the last relay round found pending
        self._faults_left = int(self.container.config.get("FAULT_INJECT_PUBLISH_FAILURES", 0) or 0)
        self._kill_at = self.container.config.get("FAULT_INJECT_KILL") or ""
        if self._kill_at not in ("", BEFORE_PUBLISH, AFTER_PUBLISH):
            raise SystemExit(f"configuration error: FAULT_INJECT_KILL={self._kill_at!r} is not "
                             f"{BEFORE_PUBLISH} or {AFTER_PUBLISH}")

    def crash_point(self, point: str, event: dict) -> None:
        if self._kill_at == point:
            log.critical("FAULT_INJECT_KILL: killing the worker %s %s %s", point,
                         event["event_type"], event["event_id"])
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def send(self, event: dict, headers: dict) -> None:
        if self._faults_left > 0:
            self._faults_left -= 1
            raise ConnectionError("injected publish failure (FAULT_INJECT_PUBLISH_FAILURES)")
        self.publisher.publish(event["body"], exchange=self.exchange,
                               routing_key=event["event_type"],
                               extra_headers={**headers, "vocreg.event_id": event["event_id"]})
        EVENTS_PUBLISHED.labels(event["event_type"]).inc()

    def get_dependency(self, worker_ctx):
        return OutboxPublisher(self, self.get_message_headers(worker_ctx))

