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
# Log entries read per query while following or replaying the log.
CHUNK = 500


def _duplicate(exc: Exception) -> bool:
    # mongoengine wraps DuplicateKeyError as NotUniqueError
    return isinstance(exc, DuplicateKeyError) or type(exc).__name__ == "NotUniqueError"


def logged(doc: ReportEventLog) -> Logged:
    return Logged(doc.position, doc.event_id, doc.kind, doc.body)


class ReportingRepository(Repository):
    # --- the event log ------------------------------------------------------------------
    def log_position(self) -> int:
        last = ReportEventLog.objects.order_by("-position").only("position").first()
        return last.position if last else 0

    def logged_event(self, event_id: str) -> Logged | None:
        doc = ReportEventLog.objects(event_id=event_id).first()
        return logged(doc) if doc else None

    def append_event(self, event_id: str, kind: str, body: dict, now) -> tuple[Logged, bool]:
        """The event at the next position, or where it already is: (entry, newly logged)."""
        while True:
            earlier = self.logged_event(event_id)
            if earlier is not None:
                return earlier, False
            doc = ReportEventLog(position=self.log_position() + 1, event_id=event_id,
                                 kind=kind, body=body, logged_at=now)
            try:
                doc.save(force_insert=True)
                return logged(doc), True
            except Exception as exc:
                if not _duplicate(exc):
                    raise
                # Another writer took this position (or logged this very event): look again.

    def entries(self, after: int = 0, up_to: int | None = None) -> Iterator[Logged]:
        """Logged events in position order, read in chunks."""
        while True:
            query = ReportEventLog.objects(position__gt=after)
            if up_to is not None:
                query = query.filter(position__lte=up_to)
            chunk = list(query.order_by("position").limit(CHUNK))
            if not chunk:
                return
            for doc in chunk:
                yield logged(doc)
            after = chunk[-1].position

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

    def replace_figures(self, docs: dict[str, dict], remove: list[str]) -> None:
        collection = ReportFigure._get_collection()
        for key, doc in docs.items():
            collection.replace_one({"_id": key}, {"_id": key, **doc}, upsert=True)
        if remove:
            collection.delete_many({"_id": {"$in": remove}})

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
