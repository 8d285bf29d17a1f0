"""The aggregate document: versioned, carrying the events its last change caused.

Every change is one conditional write (`save_condition` on the version the change was
computed from), so two writers never both win and a sweep that runs twice, or in two
workers at once, changes a document once. Its events ride in the same write (see bus.py).
"""
from __future__ import annotations

from mongoengine import DictField, Document, IntField, ListField
from mongoengine.errors import NotUniqueError, SaveConditionError

from services.common.errors import AlreadyExists, Conflict


class Aggregate(Document):
    # The index serves a retried request's look-up of its key (services/common/idempotency.py)
    # in every aggregate collection of the service.
    meta = {"abstract": True, "indexes": ["request_log.key"]}

    version = IntField(default=0, required=True)
    pending_events = ListField(DictField())
    # Events recorded so far: the next one's meta.sequence (see types.proto EventMeta).
    event_sequence = IntField(default=0)
    # The requests (request_id) whose change this document carries, written in the same write
    # as the change: {key, digest, at, answer?} (services/common/idempotency.py).
    request_log = ListField(DictField())

    def next_event_sequence(self) -> int:
        self.event_sequence = (self.event_sequence or 0) + 1
        return self.event_sequence

    def record(self, event: dict) -> None:
        self.pending_events.append(event)

    def insert(self) -> None:
        try:
            self.save(force_insert=True)
        except NotUniqueError as exc:
            raise AlreadyExists(f"{type(self).__name__.lower()} already exists") from exc

    def commit(self) -> None:
        """Write this change if nobody changed the document since it was read."""
        read_version = self.version
        self.version = read_version + 1
        try:
            self.save(save_condition={"version": read_version})
        except SaveConditionError:
            self.version = read_version
            raise Conflict(f"{type(self).__name__.lower()} was changed concurrently; "
                           "read it again and retry") from None
