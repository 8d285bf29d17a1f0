"""The course review's queries. Aggregates handed out for change are tracked (the unit of work
writes them); signatures, item statistics and score views are written here directly, each by
an operation that can be applied twice without changing more."""
from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument

from services.common.bus import utcnow
from services.common.repository import keyset_page
from services.common.uow import Repository
from services.courses.domain.reuse import SIGNATURE_SCHEME, Signature
from services.courses.models import (
    CheatingCase,
    CourseItemStats,
    CourseProvider,
    CourseRating,
    CourseRecord,
    CourseScoreView,
    CourseSignature,
    EmployerStanding,
    TraineeLearning,
)

# How many learning records a course's statistics remember having counted (a retry of a
# count within the last this-many first attempts changes nothing).
COUNTED_KEPT = 2000
SUMMARY_FIELDS = ("course_id", "provider_id", "state", "title", "class_hours", "question_count",
                  "findings", "submitted_on")


def stat_field(question_id: str) -> str:
    """A question id as a document field name ('.' would be a path separator)."""
    return question_id.replace("%", "%25").replace(".", "%2E")


def question_of(field: str) -> str:
    return field.replace("%2E", ".").replace("%25", "%")


class CoursesRepository(Repository):
    # --- courses (aggregates) -------------------------------------------------------------
    def course(self, course_id: str) -> CourseRecord | None:
        return self.tracked(CourseRecord, course_id) or self.track(
            CourseRecord.objects(pk=course_id).first())

    def read_course(self, course_id: str) -> CourseRecord | None:
        """For reading only (not written by the call)."""
        return self.tracked(CourseRecord, course_id) or CourseRecord.objects(pk=course_id).first()

    def courses_by_hash(self, content_hash: str) -> list[dict]:
        return list(CourseRecord._get_collection().find(
            {"content_hash": content_hash}, {"provider_id": 1, "state": 1, "title": 1}))

    def courses_with_keys(self, keys: list[str]) -> list[dict]:
        """Courses holding any of these resource keys: id, provider, state, their keys and
        resources' keys by id."""
        if not keys:
            return []
        return list(CourseRecord._get_collection().find(
            {"resource_keys": {"$in": keys}},
            {"provider_id": 1, "state": 1, "resource_keys": 1, "content.resources.resource_id": 1,
             "content.resources.content_hash": 1}))

    def course_facts(self, course_ids) -> dict[str, dict]:
        """id -> {provider_id, state, title} of the courses that exist."""
        found = CourseRecord._get_collection().find(
            {"_id": {"$in": list(course_ids)}}, {"provider_id": 1, "state": 1, "title": 1})
        return {d["_id"]: d for d in found}

    def provider_courses(self, provider_id: str, states=None, ids=None) -> list[CourseRecord]:
        query = CourseRecord.objects(provider_id=provider_id)
        if states is not None:
            query = query.filter(state__in=list(states))
        if ids:
            query = query.filter(course_id__in=list(ids))
        return self.track_all(query.order_by("course_id"))

    def course_summaries(self, provider_id: str) -> list[CourseRecord]:
        return list(CourseRecord.objects(provider_id=provider_id).only(*SUMMARY_FIELDS)
                    .order_by("course_id"))

    def list_page(self, filters: dict, size: int, after: str | None):
        query = CourseRecord.objects(**filters).only(*SUMMARY_FIELDS)
        return keyset_page(query, "course_id", size, after)

    def delete_course(self, course: CourseRecord) -> bool:
        """Delete the course (if still at the version read) and its signature; whether a
        signature was deleted."""
        self.check_writable()
        CourseRecord._get_collection().delete_one({"_id": course.course_id,
                                                   "version": course.version})
        self.seen = [a for a in self.seen if a is not course]
        return CourseSignature._get_collection().delete_one(
            {"_id": course.course_id}).deleted_count == 1

    # --- signatures ----------------------------------------------------------------------------
    def store_signature(self, course_id: str, provider_id: str, sig: Signature) -> None:
        self.check_writable()
        minhash, shingles = sig.to_bytes()
        CourseSignature._get_collection().replace_one({"_id": course_id}, {
            "_id": course_id, "provider_id": provider_id, "scheme": SIGNATURE_SCHEME,
            "size": sig.size, "minhash": minhash, "shingles": shingles,
            "stored_at": utcnow()}, upsert=True)

    def signatures(self, course_ids) -> dict[str, Signature]:
        found = CourseSignature._get_collection().find(
            {"_id": {"$in": list(course_ids)}, "scheme": SIGNATURE_SCHEME})
        return {d["_id"]: Signature.from_bytes(d["minhash"], d["shingles"]) for d in found}

    def signature_entries(self, since: datetime | None = None, batch: int = 1000):
        """(course id, minhash, size, stored_at) of stored signatures (since a time), without
        the shingle sets: what the containment index is built from."""
        query = {"scheme": SIGNATURE_SCHEME}
        if since is not None:
            query["stored_at"] = {"$gte": since}
        cursor = CourseSignature._get_collection().find(
            query, {"minhash": 1, "size": 1, "stored_at": 1}).batch_size(batch)
        for d in cursor:
            yield d["_id"], d["minhash"], d["size"], d["stored_at"]

    # --- providers -------------------------------------------------------------------------------
    def read_provider(self, provider_id: str) -> CourseProvider | None:
        return self.tracked(CourseProvider, provider_id) or CourseProvider.objects(
            pk=provider_id).first()

    def provider(self, provider_id: str) -> CourseProvider | None:
        return self.tracked(CourseProvider, provider_id) or self.track(
            CourseProvider.objects(pk=provider_id).first())

    # --- learning, cases, employers -------------------------------------------------------------
    def learning(self, key: str) -> TraineeLearning | None:
        return self.tracked(TraineeLearning, key) or self.track(
            TraineeLearning.objects(pk=key).first())

    def case(self, case_id: str) -> CheatingCase | None:
        return self.tracked(CheatingCase, case_id) or self.track(
            CheatingCase.objects(pk=case_id).first())

    def cases(self, case_ids) -> list[CheatingCase]:
        found = {c.case_id: c for c in CheatingCase.objects(case_id__in=list(case_ids))}
        return [found[i] for i in case_ids if i in found]

    def employer(self, employer_id: str) -> EmployerStanding | None:
        return self.tracked(EmployerStanding, employer_id) or self.track(
            EmployerStanding.objects(pk=employer_id).first())

    # --- item statistics -------------------------------------------------------------------------
    def count_first_attempt(self, course_id: str, learning_key: str, passed: bool,
                            increments: dict[str, dict[str, int]]) -> bool:
        """Add one first attempt to the course's running sums, unless this learning record
        was counted already; whether it was counted now."""
        self.check_writable()
        inc = {"first_attempts": 1, "passed": 1 if passed else 0}
        for question_id, sums in increments.items():
            for name, value in sums.items():
                inc[f"items.{stat_field(question_id)}.{name}"] = value
        collection = CourseItemStats._get_collection()
        collection.update_one({"_id": course_id}, {"$setOnInsert": {"counted": []}},
                              upsert=True)
        result = collection.find_one_and_update(
            {"_id": course_id, "counted": {"$ne": learning_key}},
            {"$inc": inc, "$push": {"counted": {"$each": [learning_key],
                                                "$slice": -COUNTED_KEPT}}},
            projection={"_id": 1}, return_document=ReturnDocument.AFTER)
        return result is not None

    def item_stats(self, course_id: str) -> dict:
        doc = CourseItemStats._get_collection().find_one({"_id": course_id}, {"counted": 0})
        if not doc:
            return {"first_attempts": 0, "passed": 0, "items": {}}
        doc["items"] = {question_of(k): v for k, v in (doc.get("items") or {}).items()}
        return doc

    # --- ratings -------------------------------------------------------------------------------
    def rating(self, key: str) -> CourseRating | None:
        return self.tracked(CourseRating, key) or self.track(CourseRating.objects(pk=key).first())

    def refresh_score(self, course: CourseRecord, key: str, stars: int) -> dict:
        """Recompute the course's rating sums from its ratings, with the rating `key` at
        `stars` (written by this call's end), and store them: the same answer however often
        it runs."""
        rows = list(CourseRating._get_collection().aggregate([
            {"$match": {"course_id": course.course_id, "_id": {"$ne": key}}},
            {"$group": {"_id": None, "count": {"$sum": 1}, "total": {"$sum": "$stars"},
                        "squares": {"$sum": {"$multiply": ["$stars", "$stars"]}}}}]))
        sums = rows[0] if rows else {"count": 0, "total": 0, "squares": 0}
        sums = {"count": sums["count"] + 1, "total": sums["total"] + stars,
                "squares": sums["squares"] + stars * stars}
        view = {"provider_id": course.provider_id, "title": course.title,
                "listed": course.state == "COURSE_STATE_LISTED", "count": int(sums["count"]),
                "total": float(sums["total"]), "squares": float(sums["squares"])}
        CourseScoreView._get_collection().update_one({"_id": course.course_id}, {"$set": view},
                                                     upsert=True)
        return {"course_id": course.course_id, **view}

    def set_listed(self, course_id: str, listed: bool) -> None:
        CourseScoreView._get_collection().update_one({"_id": course_id},
                                                     {"$set": {"listed": listed}})

    def scores(self) -> list[dict]:
        """Every rated course's sums (listed or not: the prior is the mean of all courses)."""
        found = CourseScoreView._get_collection().find({"count": {"$gt": 0}})
        return [{"course_id": d["_id"], **{k: v for k, v in d.items() if k != "_id"}}
                for d in found]

    def delete_views(self, course_id: str) -> None:
        CourseScoreView._get_collection().delete_one({"_id": course_id})

