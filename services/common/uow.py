"""The unit of work: the aggregates one call loaded or created, written when the call ends,
and the events they recorded published after the write.

A handler never commits, publishes or lists aggregates for the relay: it loads aggregates
through `uow.repo` (which tracks them), creates new ones with `uow.add` (their ids from
`uow.new_id()`), records events with `uow.emit`, and returns. The worker then calls `flush()` (each changed aggregate written in one
conditional document write, its events inside it, see storage.py and bus.py) and `publish()`.
The relay timer covers every aggregate the service declares in its ServiceSpec. This is
cosmicpython's unit of work with MongoDB's one-document atomicity in place of a transaction.

A call with a request_id (services/common/idempotency.py) has its record written into every
aggregate the call writes, in that same write: the answer inside the last write.

`FakeUnitOfWork` (tests/fakes.py) has the same interface in memory, so handlers are tested
without a broker or a database.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from contextlib import contextmanager
from datetime import timezone

import mongoengine
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common import config, idempotency
from services.common.auth import Identity
from services.common.bus import Outbox, new_event, utcnow
from services.common.errors import AlreadyExists, Conflict, InvalidArgument
from services.common.mongo import configured_uri, connect, disconnect, ensure_indexes
from services.common.spec import spec as service_spec
from services.common.storage import Aggregate

log = logging.getLogger(__name__)

PROCESSED_EVENTS = "processed_events"
WORKERS = "workers"

# This worker process, as the work it owns names it: a call that writes a record before a long
# side-write (a batch's operation) stores it, and a retry or the sweep takes the work over only
# once its owner has stopped beating (services/common/entrypoints.py Worker.heartbeat), so a
# crash holds a request up for seconds, while a busy worker is never overtaken.
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
# How often a worker says it is alive, and how long its silence means it is gone.
HEARTBEAT_INTERVAL = config.env_float("WORKER_HEARTBEAT_INTERVAL", 2.0)
OWNER_GONE_AFTER = 5 * HEARTBEAT_INTERVAL
COUNTERS = "counters"


class Repository:
    """Base of a service's repository: its queries live in the subclass; every aggregate a
    query hands out for change is tracked here, so the unit of work knows what to write."""

    def __init__(self, alias: str):
        self.alias = alias
        self.seen: list[Aggregate] = []
        # Set while the call's request_id is missing or malformed: nothing may be loaded for
        # change or written (see UnitOfWork.refuse_writes).
        self.refusal: str | None = None

    # --- tracking -----------------------------------------------------------------------
    def track(self, aggregate):
        """Hand out `aggregate` (or None) tracked: whatever the handler changes is written."""
        self.check_writable()
        if aggregate is not None and not any(a is aggregate for a in self.seen):
            if not isinstance(aggregate, Aggregate):
                raise TypeError(f"{type(aggregate).__name__} is not an Aggregate")
            self.seen.append(aggregate)
        return aggregate

    def check_writable(self) -> None:
        if self.refusal is not None:
            raise InvalidArgument([self.refusal])

    def track_all(self, aggregates) -> list:
        return [self.track(a) for a in aggregates]

    def tracked(self, cls, pk):
        """The aggregate of this class and key this call already holds, or None. A query for
        one aggregate asks here first, so a call that loads it twice changes one copy."""
        return next((a for a in self.seen if type(a) is cls and a.pk == pk), None)

    # --- what every service needs of its database --------------------------------------
    def db(self):
        return mongoengine.get_db(self.alias)

    def next_values(self, key: str, n: int = 1) -> int:
        """Reserve n values of the counter `key` atomically; returns the first. A counter only
        goes up: values reserved by a call that fails later are never handed out again."""
        self.check_writable()
        doc = self.db()[COUNTERS].find_one_and_update(
            {"_id": key}, {"$inc": {"value": n}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return int(doc["value"]) - n + 1

    def counter_value(self, key: str) -> int:
        doc = self.db()[COUNTERS].find_one({"_id": key})
        return int(doc["value"]) if doc else 0

    def handled(self, key: str) -> bool:
        return self.db()[PROCESSED_EVENTS].find_one({"_id": key}, {"_id": 1}) is not None

    def mark_handled(self, key: str) -> None:
        try:
            self.db()[PROCESSED_EVENTS].insert_one({"_id": key, "handled_at": utcnow()})
        except DuplicateKeyError:
            pass  # a concurrent redelivery finished first; the effect is the same

    def request_entries(self, key: str) -> list[dict]:
        """The request records under `key` in any aggregate of the service (a retried request
        looks for its first run's, services/common/idempotency.py)."""
        entries = []
        for cls in service_spec(self.alias).aggregate_classes():
            for doc in cls._get_collection().find({"request_log.key": key},
                                                  {"request_log": 1}):
                entries.extend(e for e in doc.get("request_log") or () if e.get("key") == key)
        return entries

    def ping(self) -> None:
        self.db().command("ping")

    # --- which worker processes are alive (wall-clock time: liveness is physical) -------------
    def beat(self, instance: str = INSTANCE_ID) -> None:
        self.db()[WORKERS].update_one({"_id": instance}, {"$set": {"seen_at": utcnow()}},
                                      upsert=True)

    def alive(self, instance: str | None, within_seconds: float) -> bool:
        """The instance beat within the last `within_seconds` (None or unknown: not alive)."""
        if not instance:
            return False
        doc = self.db()[WORKERS].find_one({"_id": instance}, {"seen_at": 1})
        if doc is None:
            return False
        seen = doc["seen_at"] if doc["seen_at"].tzinfo else doc["seen_at"].replace(
            tzinfo=timezone.utc)
        return (utcnow() - seen).total_seconds() <= within_seconds


class UnitOfWork:
    def __init__(self, repository: Repository, events_module, source: str, clock,
                 publisher=None):
        self.repo = repository
        self.events_module = events_module
        self.source = source
        self.clock = clock
        self.publisher = publisher
        self.instance_id = INSTANCE_ID
        self._written: list[Aggregate] = []
        self._reset_request()

    def _reset_request(self) -> None:
        # The call's request (request_id), set by idempotency.run; its answer, set once the
        # handler returned, goes into the call's last write.
        self.request: idempotency.RequestRecord | None = None
        self.answer: dict | None = None
        self._ids_made = 0
        self._explanations: dict[int, object] = {}
        self.repo.refusal = None

    def refuse_writes(self, problem: str) -> None:
        """The request is invalid (`problem`, e.g. a malformed request_id): the handler may still
        read and check the rest of the request, so every problem is reported at once, but its
        first load for change or write raises InvalidArgument([problem])."""
        self.repo.refusal = problem

    def new_id(self) -> str:
        """The id of an aggregate this call creates: derived from the request_id when the call
        has one (the same request creates the same ids, so two copies of it collide on the
        primary key and never both apply), random otherwise."""
        self._ids_made += 1
        return idempotency.new_id(self.request, self._ids_made)

    def owner_alive(self, owner: str | None) -> bool:
        """The worker that owns some work (its INSTANCE_ID) is still beating."""
        return owner == self.instance_id or self.repo.alive(owner, OWNER_GONE_AFTER)

    def add(self, aggregate, on_duplicate=None):
        """A new aggregate: inserted when the call ends (or at `flush(aggregate)`). A duplicate
        key is AlreadyExists, or what `on_duplicate()` returns (an exception that explains it,
        e.g. naming the open application that holds a unique key)."""
        self.repo.check_writable()
        if on_duplicate is not None:
            self._explanations[id(aggregate)] = on_duplicate
        return self.repo.track(aggregate)

    def emit(self, aggregate: Aggregate, event_type: str, payload: dict,
             actor: Identity | str) -> dict:
        """Record an event on the aggregate it belongs to: stored in the aggregate's own write,
        checked against its message in the service's events.proto first."""
        self.repo.track(aggregate)
        name = actor.audit_name() if isinstance(actor, Identity) else actor
        event = new_event(self.events_module, self.source, event_type, payload, name,
                          self.clock.now(), str(aggregate.pk), aggregate.next_event_sequence())
        aggregate.record(event)
        return event

    # --- writing --------------------------------------------------------------------------
    def flush(self, *aggregates: Aggregate) -> None:
        """Write what changed: every tracked aggregate, or just these ones now (when one write
        must land before another, e.g. a record before a bulk side-write that refers to it).
        Raises Conflict if a document changed since it was read, AlreadyExists on a new one
        whose key is taken; what was written before stays written."""
        self.repo.check_writable()
        for aggregate in (aggregates or tuple(self.repo.seen)):
            self.repo.track(aggregate)
            if self._write(aggregate):
                self._written.append(aggregate)

    def _write(self, aggregate: Aggregate) -> bool:
        """Write one aggregate if it is new or changed, the call's request record inside."""
        if not (aggregate._created or aggregate._get_changed_fields()):
            return False
        if self.request is not None:
            now = self.clock.now()
            aggregate.request_log = idempotency.remember(
                aggregate.request_log, self.request.entry(now, self.answer), now)
        try:
            self._save(aggregate)
        except AlreadyExists:
            explain = self._explanations.get(id(aggregate))
            if explain is None:
                raise
            raise explain() from None
        return True

    def _save(self, aggregate: Aggregate) -> None:
        """The database write: an insert of a new aggregate, else a conditional update."""
        if aggregate._created:
            aggregate.insert()
        else:
            aggregate.commit()

    def publish(self) -> int:
        """Publish the events of what this call wrote; what fails is left to the relay."""
        sent = 0
        written, self._written = self._written, []
        if self.publisher is None:
            return 0
        for aggregate in {id(a): a for a in written}.values():
            if aggregate.pending_events:
                sent += self.publisher.publish_pending(aggregate)
        return sent

    def forget(self, aggregates) -> None:
        gone = {id(a) for a in aggregates}
        self.repo.seen = [a for a in self.repo.seen if id(a) not in gone]

    @contextmanager
    def step(self, what: str = "step"):
        """One item of a sweep: what it changed is written when the block ends. If another
        writer changed the same document meanwhile (two workers sweeping at once), the item is
        skipped: the next sweep sees the new state. `step.done` says which happened.

        "What it changed" is every tracked aggregate with unwritten changes when the block
        ends (earlier steps wrote theirs), however it was loaded: a sweep's query tracks all
        its items before the first step begins."""
        result = StepResult()
        yield result
        changed = [a for a in self.repo.seen if a._created or a._get_changed_fields()]
        try:
            self.flush(*changed)
            result.done = True
        except Conflict:
            log.info("%s: changed concurrently; skipped until the next sweep", what)
            self.forget(changed)


class StepResult:
    done = False


class UnitOfWorkProvider(Outbox):
    """The service's database (connected at setup, under the service's name as alias), its
    repository and its outbox (this provider is nameko's event dispatcher for the service's
    `<service>.events` exchange), handed to each call as a UnitOfWork factory."""

    def __init__(self, repository_class: type[Repository], **dispatcher_options):
        super().__init__(**dispatcher_options)
        self.repository_class = repository_class

    def setup(self):
        super().setup()
        self.alias = self.container.service_name
        self.spec = service_spec(self.alias)
        disconnect(self.alias)
        connect(self.alias, configured_uri(self.container.config, self.alias))
        ensure_indexes(self.alias)
        from services.common.protos import service_proto
        self.events_module = service_proto(self.alias).events

    def get_dependency(self, worker_ctx):
        return UnitOfWorkFactory(self, super().get_dependency(worker_ctx))


class UnitOfWorkFactory:
    def __init__(self, provider: UnitOfWorkProvider, publisher):
        self.provider = provider
        self.publisher = publisher

    def begin(self, clock) -> UnitOfWork:
        p = self.provider
        return UnitOfWork(p.repository_class(p.alias), p.events_module, p.alias, clock,
                          self.publisher)

    def relay(self) -> int:
        """Publish events left pending in any aggregate the service declares."""
        return self.publisher.relay(*self.provider.spec.aggregate_classes())

    def ping(self) -> None:
        self.provider.repository_class(self.provider.alias).ping()

    def heartbeat(self) -> None:
        self.provider.repository_class(self.provider.alias).beat()
