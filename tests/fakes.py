"""In-memory fakes of the unit of work and the repository base, for handler unit tests: no
database, no broker, milliseconds per test (cosmicpython's FakeUnitOfWork).

A service's fake repository subclasses its real repository and FakeRepository, and answers
each query from `self.store`; a query the fake does not override fails loudly (it would reach
for a database connection the unit tests never make).
"""
from __future__ import annotations

from datetime import datetime, timezone

from services.common import idempotency
from services.common.auth import PARTY_ROLES, issue_token, verify_token
from services.common.entrypoints import Command
from services.common.errors import AlreadyExists, Conflict
from services.common.storage import Aggregate
from services.common.uow import Repository, UnitOfWork


class FakeClock:
    def __init__(self, now: datetime | None = None):
        self.current = now or datetime(2025, 9, 15, 2, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.current

    def set(self, *args, hour: int = 2):
        """A date (Asia/Shanghai 10:00 is 02:00 UTC)."""
        self.current = datetime(*args, hour, tzinfo=timezone.utc)


class FakeRepository(Repository):
    """What every repository has (counters, handled-event marks, tracking), in memory."""

    def __init__(self, alias: str = "fake"):
        super().__init__(alias)
        self.store: dict[tuple, object] = {}
        self.counters: dict[str, int] = {}
        self.handled_keys: set[str] = set()
        self.live_workers: set[str] = set()  # worker instances beating (uow.owner_alive)

    def all(self, cls) -> list:
        return [doc for (kind, _), doc in self.store.items() if kind is cls]

    def get(self, cls, pk):
        return self.store.get((cls, pk))

    def load(self, cls, pk):
        """What a query hands out: a copy of the stored document, tracked (the one the call
        already holds, if any), so a call that fails leaves the store as it was."""
        held = self.tracked(cls, pk)
        if held is not None:
            return held
        stored = self.get(cls, pk)
        return None if stored is None else self.track(_copy(stored))

    def load_all(self, cls, keep=lambda doc: True) -> list:
        return [self.load(cls, doc.pk) for doc in self.all(cls) if keep(doc)]

    def next_values(self, key: str, n: int = 1) -> int:
        self.counters[key] = self.counters.get(key, 0) + n
        return self.counters[key] - n + 1

    def counter_value(self, key: str) -> int:
        return self.counters.get(key, 0)

    def handled(self, key: str) -> bool:
        return key in self.handled_keys

    def mark_handled(self, key: str) -> None:
        self.handled_keys.add(key)

    def request_entries(self, key: str) -> list[dict]:
        return [e for (kind, _), doc in self.store.items() if isinstance(doc, Aggregate)
                for e in doc.request_log or () if e.get("key") == key]

    def ping(self) -> None:
        return None

    def beat(self, instance: str = "fake") -> None:
        self.live_workers.add(instance)

    def alive(self, instance, within_seconds) -> bool:
        return instance in self.live_workers


def _copy(doc):
    copy = type(doc)._from_son(doc.to_mongo())
    copy._clear_changed_fields()
    return copy


def _unique_keys(cls) -> list[tuple[tuple[str, ...], bool]]:
    """The document's unique indexes: (fields, sparse). A partial index is treated as sparse:
    the models' partial filters leave out documents without a value."""
    found = []
    for index in cls._meta.get("index_specs") or []:
        if index.get("unique"):
            found.append((tuple(f for f, _ in index["fields"]),
                          bool(index.get("sparse") or index.get("partialFilterExpression"))))
    return found


def _index_keys(doc, fields) -> set:
    """The keys a document has in a unique index: one per element of a list value (MongoDB's
    multikey index), else the tuple of values."""
    values = tuple(getattr(doc, f) for f in fields)
    if len(fields) == 1 and isinstance(values[0], list):
        return {(v,) for v in values[0]}
    return {values}


class FakeUnitOfWork(UnitOfWork):
    """Writes into the fake repository's store and keeps what it would have published."""

    def __init__(self, repository: FakeRepository, events_module, clock, source: str = "test"):
        super().__init__(repository, events_module, source, clock, publisher=None)
        self.published: list[dict] = []
        # Keys of documents another writer changes meanwhile: their next write is a Conflict.
        self.concurrent: set = set()

    def _save(self, aggregate) -> None:
        key = (type(aggregate), aggregate.pk)
        if aggregate._created:
            if key in self.repo.store:
                raise AlreadyExists(f"{type(aggregate).__name__.lower()} already exists")
            self._check_unique(aggregate)
            aggregate._created = False
        else:
            if key in self.concurrent:
                self.concurrent.discard(key)
                raise Conflict(f"{type(aggregate).__name__.lower()} was changed concurrently")
            self._check_unique(aggregate)
            aggregate.version = (aggregate.version or 0) + 1
        aggregate._clear_changed_fields()
        self.repo.store[key] = aggregate

    def begin(self) -> FakeUnitOfWork:
        """A new call: it holds nothing yet (the worker begins a unit of work per call)."""
        self.repo.seen = []
        self._written = []
        self._reset_request()
        return self

    def _check_unique(self, aggregate) -> None:
        """The model's unique indexes, as the database enforces them."""
        cls = type(aggregate)
        for fields, sparse in _unique_keys(cls):
            keys = {k for k in _index_keys(aggregate, fields)
                    if not (sparse and all(v is None for v in k))}
            if sparse and not keys:
                continue
            if any(other.pk != aggregate.pk and keys & _index_keys(other, fields)
                   for other in self.repo.all(cls)):
                raise AlreadyExists(f"{cls.__name__.lower()} already exists")

    def publish(self) -> int:
        written, self._written = self._written, []
        sent = 0
        for aggregate in {id(a): a for a in written}.values():
            for event in aggregate.pending_events:
                self.published.append(event)
                sent += 1
            aggregate.pending_events = []
            aggregate._clear_changed_fields()
        return sent

    def events(self, event_type: str | None = None) -> list[dict]:
        """Bodies of the events published so far (of one type, if given)."""
        return [e["body"] for e in self.published
                if event_type is None or e["event_type"] == event_type]


def run(handler, uow: FakeUnitOfWork, clock, settings, request: dict | None = None,
        caller=None, rpc: str | None = None, **ports):
    """Call an RPC handler as the worker does (services/common/idempotency.run: its request_id
    looked up, then flush and publish). The RPC is the handler's name in CamelCase
    (submit_application: SubmitApplication) of the service the unit of work is for."""
    uow.begin()
    rpc = rpc or "".join(part.title() for part in handler.__name__.split("_"))
    return idempotency.run(handler, Command(request or {}, caller, "", rpc), uow, clock,
                           settings, **ports)


def caller(role: str, institution_id: str | None = None, sub: str | None = None,
           party_id: str | None = None):
    if role in PARTY_ROLES and party_id is None:
        party_id = f"{role}-1"
    return verify_token(issue_token(role, sub or role, institution_id, party_id=party_id))


def page_of(docs, key: str, size: int, after: str | None) -> tuple[list, str | None]:
    """services.common.repository.keyset_page over a list."""
    docs = sorted((d for d in docs if after is None or getattr(d, key) > after),
                  key=lambda d: getattr(d, key))
    rows = docs[:size]
    return rows, (getattr(rows[-1], key) if len(docs) > size and rows else None)
