"""The registry's queries. Certificates are written in bulk and changed by conditional
update_many (never loaded one by one to be saved); Operations are the aggregates, tracked."""
from __future__ import annotations

from pymongo.errors import BulkWriteError

from services.certificates import public
from services.certificates.models import Certificate, InstitutionView, Operation
from services.common.repository import keyset_page
from services.common.uow import Repository

PENDING, DONE = "PENDING", "DONE"
# Certificates per insert: pymongo encodes a whole insert_many before it sends it (10,000
# documents held the worker's hub for about 30 ms); 1,000 a round trip cost no measurable
# throughput on the local server.
INSERT_CHUNK = 1_000


class CertificatesRepository(Repository):
    # --- operations (the aggregates) ---------------------------------------------------
    def pending_operations(self, limit: int = 500) -> list[Operation]:
        """PENDING operations, oldest first: running now, or cut short by a crash."""
        return self.track_all(Operation.objects(state=PENDING).order_by("started_at")
                              .limit(limit))

    def operation(self, operation_id: str) -> Operation | None:
        return self.tracked(Operation, operation_id) or self.track(
            Operation.objects(pk=operation_id).first())

    # --- certificates -----------------------------------------------------------------
    def certificate(self, number: str) -> Certificate | None:
        return Certificate.objects(certificate_number=number).first()

    def verification_record(self, number: str):
        """What public verification reads (public.py: the edge runs the same query)."""
        return public.find(Certificate._get_collection(), number)

    def session_numbers(self, institution_id: str, exam_session_id: str) -> dict:
        """(holder id, occupation, level) -> number, for one exam session's certificates."""
        found = Certificate.objects(
            institution_id=institution_id, exam_session_id=exam_session_id).only(
            "certificate_number", "holder_id_number", "occupation_code", "skill_level")
        return {(c.holder_id_number, c.occupation_code, c.skill_level): c.certificate_number
                for c in found}

    def batch_numbers(self, batch_id: str) -> dict:
        """(holder id, occupation, level) -> number, for the certificates of one batch."""
        found = Certificate.objects(batch_id=batch_id).only(
            "certificate_number", "holder_id_number", "occupation_code", "skill_level")
        return {(c.holder_id_number, c.occupation_code, c.skill_level): c.certificate_number
                for c in found}

    def count_changed_by(self, operation_id: str) -> int:
        """Certificates an invalidation or withdrawal changed."""
        return Certificate.objects(operation_id=operation_id).count()

    def insert_certificates(self, docs: list[dict], batch_id: str) -> set:
        """Insert in round trips of INSERT_CHUNK documents (between them, and while the database
        writes, the worker's other calls get their turn); return the numbers actually written
        (a concurrent upload of the same rows wins the duplicate keys)."""
        if not docs:
            return set()
        collection = Certificate._get_collection()
        lost = False
        for start in range(0, len(docs), INSERT_CHUNK):
            try:
                collection.insert_many(docs[start:start + INSERT_CHUNK], ordered=False)
            except BulkWriteError:
                lost = True
        if not lost:
            return {d["certificate_number"] for d in docs}
        return {c["certificate_number"]
                for c in collection.find({"batch_id": batch_id}, {"certificate_number": 1})}

    def counts(self, match: dict, by_institution: bool) -> list[dict]:
        """Certificates matching `match` counted per (institution,) occupation and level."""
        group = {"o": "$occupation_code", "l": "$skill_level"}
        if by_institution:
            group["i"] = "$institution_id"
        pipeline = [{"$match": match},
                    {"$group": {"_id": group, "n": {"$sum": 1},
                                "late": {"$sum": {"$cond": ["$late_reported", 1, 0]}}}}]
        rows = list(Certificate._get_collection().aggregate(pipeline))
        rows.sort(key=lambda r: (r["_id"].get("i", ""), r["_id"]["o"], r["_id"]["l"]))
        return rows

    def list_page(self, filters: dict, size: int, after):
        """A page of certificates by number, or, for a period (issued_on__gte/__lte), by issue
        date then number: `after` is then [issue date, number]. The next page of a period is
        the rest of the last day after the last number, then the days after it, each one
        range of an index, where "the period, and numbers after the last" would be two ranges
        (the local server then scans the collection: tests/integration/test_list_indexes.py).
        The rest of an institution's day is read whole and cut here: an index (institution_id,
        issued_on, certificate_number) would serve it, but the local server answers a range
        with `$lte` on the middle field of such an index wrongly (it leaves out the bound's own
        day), and every period query has one."""
        if not any(k.startswith("issued_on__") for k in filters):
            return keyset_page(Certificate.objects(**filters), "certificate_number", size, after)
        in_order = ("issued_on", "certificate_number")
        if after is None:
            rows = list(Certificate.objects(**filters).order_by(*in_order).limit(size + 1))
        else:
            day, number = after
            others = {k: v for k, v in filters.items() if not k.startswith("issued_on__")}
            if "institution_id" in others:
                rows = sorted((c for c in Certificate.objects(**others, issued_on=day)
                               if c.certificate_number > number),
                              key=lambda c: c.certificate_number)[:size + 1]
            else:
                rows = list(Certificate.objects(**others, issued_on=day,
                                                certificate_number__gt=number)
                            .order_by("certificate_number").limit(size + 1))
            if len(rows) <= size:
                later = {**others, "issued_on__gt": day}
                if "issued_on__lte" in filters:
                    later["issued_on__lte"] = filters["issued_on__lte"]
                rows += list(Certificate.objects(**later).order_by(*in_order)
                             .limit(size + 1 - len(rows)))
        more = len(rows) > size
        rows = rows[:size]
        return rows, ([rows[-1].issued_on, rows[-1].certificate_number] if more and rows
                      else None)

    def stats(self, match: dict, statuses: dict) -> list[dict]:
        """Per institution, occupation and level: issued, each status, late reported."""

        def count_if(status):
            return {"$sum": {"$cond": [{"$eq": ["$status", status]}, 1, 0]}}

        group = {"_id": {"i": "$institution_id", "o": "$occupation_code", "l": "$skill_level"},
                 "issued": {"$sum": 1},
                 "late": {"$sum": {"$cond": ["$late_reported", 1, 0]}}}
        group.update({name: count_if(status) for name, status in statuses.items()})
        return sorted(Certificate._get_collection().aggregate([{"$match": match},
                                                               {"$group": group}]),
                      key=lambda g: (g["_id"]["i"], g["_id"]["o"], g["_id"]["l"]))

    def _selected(self, selection):
        if selection.kind == "numbers":
            found = Certificate.objects(certificate_number__in=list(selection.numbers))
            # an inspection decision names numbers of the institution it decided on only
            return found.filter(institution_id=selection.institution_id) \
                if selection.institution_id else found
        if selection.kind == "session":
            return Certificate.objects(institution_id=selection.institution_id,
                                       exam_session_id=selection.exam_session_id)
        return Certificate.objects(institution_id=selection.institution_id,
                                   issued_on__gte=selection.issued_from.isoformat(),
                                   issued_on__lte=selection.issued_to.isoformat())

    def count_selected(self, selection) -> int:
        """How many certificates a selection (numbers, an exam session, a period) names."""
        return self._selected(selection).count()

    def present_numbers(self, selection) -> set:
        return {c.certificate_number for c in self._selected(selection).only("certificate_number")}

    def end_valid(self, selection, valid: str, status: str, record: dict,
                  operation_id: str) -> int:
        """Set `status` on the selection's VALID certificates only (one conditional
        update_many: it cannot apply twice); returns how many changed."""
        return self._selected(selection).filter(status=valid).update(
            set__status=status, set__invalidation=record, set__operation_id=operation_id)

    def restore(self, operation_id: str, valid: str, entry: dict) -> int:
        """Make the certificates an operation voided or withdrawn valid again, with a history
        entry (only those still ended: applied again, it changes nothing); how many changed."""
        return Certificate.objects(operation_id=operation_id, status__ne=valid).update(
            set__status=valid, unset__invalidation=True, push__history=entry)

    # --- filing's status of institutions -------------------------------------------------
    def institution_view(self, institution_id: str) -> InstitutionView | None:
        return InstitutionView.objects(pk=institution_id).first()

    def record_status_event(self, institution_id: str, entry: dict) -> None:
        """Append to the view's history (a redelivered entry is not added twice)."""
        InstitutionView._get_collection().update_one(
            {"_id": institution_id}, {"$addToSet": {"history": entry}}, upsert=True)

    def set_status(self, institution_id: str, status: str, reason: str, changed_at: str,
                   sequence: int, event_id: str, read: InstitutionView | None) -> bool:
        """Set the status if no other event was applied since `read`; False if one was."""
        condition = {"_id": institution_id,
                     "event_id": read.event_id if read is not None and read.event_id
                     else {"$exists": False}}
        result = InstitutionView._get_collection().update_one(condition, {"$set": {
            "status": status, "reason": reason, "changed_at": changed_at,
            "sequence": sequence, "event_id": event_id}})
        return result.matched_count == 1
