"""The report's storage: the event log, the daily figures and their checkpoint, periods and
editions."""
from __future__ import annotations

from collections.abc import Iterator

from pymongo.errors import DuplicateKeyError

from services.common.uow import Repository
from services.reporting.domain.figures import Logged
from services.reporting.models import (
    ReportCheckpoint,
    ReportEdition,
    ReportEventLog,
    ReportFigure,
    ReportPeriod,
)

PROJECTOR = "figures"
LOG_HEAD = "log"
# Log entries read per query while following or replaying the log.
CHUNK = 200


def _duplicate(exc: Exception) -> bool:
    # mongoengine wraps DuplicateKeyError as NotUniqueError
    return isinstance(exc, DuplicateKeyError) or type(exc).__name__ == "NotUniqueError"


def logged(doc: ReportEventLog) -> Logged:
    return Logged(doc.position, doc.event_id, doc.kind, doc.body)


class ReportingRepository(Repository):
    # --- the event log ------------------------------------------------------------------
    # Only point reads by primary key and unique key here: no sort, no range scan, whatever the
    # size of the log (the local database server scans for those).
    def log_position(self) -> int:
        """The last position taken: the head noted after each append, and any position taken
        after it (a writer stopped between its insert and its note)."""
        head = ReportCheckpoint.objects(name=LOG_HEAD).first()
        position = head.position if head else 0
        found = position
        while ReportEventLog._get_collection().find_one({"_id": found + 1}, {"_id": 1}):
            found += 1
        if found != position:
            self._note_head(found)
        return found

    def _note_head(self, position: int) -> None:
        ReportCheckpoint._get_collection().update_one(
            {"_id": LOG_HEAD}, {"$max": {"position": position}}, upsert=True)

    def logged_event(self, event_id: str) -> Logged | None:
        doc = ReportEventLog.objects(event_id=event_id).first()
        return logged(doc) if doc else None

    def append_event(self, event_id: str, kind: str, body: dict, now) -> tuple[Logged, bool]:
        """The event at the next position, or where it already is: (entry, newly logged)."""
        earlier = self.logged_event(event_id)
        if earlier is not None:
            return earlier, False
        position = self.log_position() + 1
        while True:
            doc = ReportEventLog(position=position, event_id=event_id, kind=kind, body=body,
                                 logged_at=now)
            try:
                doc.save(force_insert=True)
            except Exception as exc:
                if not _duplicate(exc):
                    raise
                earlier = self.logged_event(event_id)
                if earlier is not None:
                    return earlier, False  # a redelivery raced this one
                position += 1  # another writer took this position: the next one
                continue
            self._note_head(position)
            return logged(doc), True

    def entries(self, after: int = 0, up_to: int | None = None) -> Iterator[Logged]:
        """Logged events in position order from `after` on, read by primary key in chunks
        (positions have no gaps: the first one missing is the end)."""
        collection = ReportEventLog._get_collection()
        while True:
            last = after + CHUNK if up_to is None else min(after + CHUNK, up_to)
            if last <= after:
                return
            found = {doc["_id"]: doc for doc in
                     collection.find({"_id": {"$in": list(range(after + 1, last + 1))}})}
            for position in range(after + 1, last + 1):
                doc = found.get(position)
                if doc is None:
                    return
                yield Logged(position, doc["event_id"], doc["kind"], doc["body"])
            after = last

    # --- the projector ------------------------------------------------------------------
    def checkpoint(self) -> int:
        doc = ReportCheckpoint.objects(name=PROJECTOR).first()
        return doc.position if doc else 0

    def advance_checkpoint(self, position: int) -> None:
        ReportCheckpoint._get_collection().update_one(
            {"_id": PROJECTOR}, {"$max": {"position": position}}, upsert=True)

    def apply(self, key: str, figure: str, day: str, contribution: dict, position: int,
              value_after) -> bool:
        """Add one event's contribution to a daily figure, only if the figure has not included
        that position yet: the contribution, the new value and the position in one write.
        False when it had (a redelivery, or another worker following the log)."""
        collection = ReportFigure._get_collection()
        doc = collection.find_one({"_id": key}) or {"contributions": [], "position": 0}
        if int(doc.get("position") or 0) >= position:
            return False
        contributions = list(doc.get("contributions") or []) + [contribution]
        update = {"$push": {"contributions": contribution},
                  "$set": {"figure": figure, "day": day, "position": position,
                           "value": value_after(contributions)}}
        try:
            result = collection.update_one(
                {"_id": key, "position": int(doc.get("position") or 0)}, update,
                upsert=True)
        except DuplicateKeyError:
            return False  # someone else applied it (or a later one) meanwhile
        if result.matched_count == 0 and result.upserted_id is None:
            return False
        return True

    def daily_figures(self, first: str, last: str, figures: list[str] | None) -> list:
        query = ReportFigure.objects(day__gte=first, day__lte=last)
        if figures:
            query = query.filter(figure__in=figures)
        return list(query.order_by("day", "figure"))

    def all_figures(self) -> dict[str, dict]:
        return {doc["_id"]: doc for doc in ReportFigure._get_collection().find({})}

    def replace_figures(self, docs: dict[str, dict], remove: list[str],
                        read: dict[str, dict]) -> int:
        """Write the rebuilt daily figures and delete those without events, each only if it
        is still as it was `read` (a follower that applied a newer event meanwhile wins: its
        figure is left to the next rebuild). How many were written or deleted."""
        collection = ReportFigure._get_collection()
        done = 0
        for key, doc in docs.items():
            before = read.get(key)
            try:
                if before is None:
                    collection.insert_one({"_id": key, **doc})
                    done += 1
                else:
                    done += collection.replace_one(
                        {"_id": key, "position": before.get("position")},
                        {"_id": key, **doc}).modified_count
            except DuplicateKeyError:
                pass  # a follower created it meanwhile
        for key in remove:
            done += collection.delete_one(
                {"_id": key, "position": read[key].get("position")}).deleted_count
        return done

    # --- periods and editions -----------------------------------------------------------
    def period(self, period_id: str) -> ReportPeriod | None:
        held = self.tracked(ReportPeriod, period_id)
        if held is not None:
            return held
        return self.track(ReportPeriod.objects(period_id=period_id).first())

    def periods_of(self, year: int) -> dict[str, ReportPeriod]:
        return {p.period_id: p for p in ReportPeriod.objects(year=year)}

    def edition(self, edition_id: str) -> ReportEdition | None:
        held = self.tracked(ReportEdition, edition_id)
        if held is not None:
            return held
        return ReportEdition.objects(edition_id=edition_id).first()

    def edition_for_change(self, edition_id: str) -> ReportEdition | None:
        return self.track(self.edition(edition_id))

    def editions_of_period(self, period_id: str) -> list[ReportEdition]:
        return list(ReportEdition.objects(period_id=period_id).order_by("revision"))

    def editions_of_year(self, year: int) -> list[ReportEdition]:
        return list(ReportEdition.objects(year=year).exclude("rows", "request_log")
                    .order_by("period_id", "revision"))
