"""Grading's queries. Aggregates handed out for change are tracked (the unit of work writes
them); a year's scoring reads its inputs as plain projected rows (10,000 institutions in one
pass each, no document objects), and its preview is written in bulk."""
from __future__ import annotations

from services.common.repository import keyset_page
from services.common.uow import Repository
from services.grading.models import (
    GradeComputation,
    GradeRecord,
    GradingInstitution,
    GradingYearDoc,
    IndicatorSystemDoc,
    IntegrityListing,
    SelfAssessmentDoc,
)

# Documents per round trip when a year's inputs are read: between two batches the worker's
# other calls get their turn (the decoding of one batch is a few tens of milliseconds).
BATCH = 1000


def grade_id(year: int, institution_id: str) -> str:
    return f"{year}:{institution_id}"


class GradingRepository(Repository):
    def _one(self, cls, pk):
        return self.tracked(cls, pk) or self.track(cls.objects(pk=pk).first())

    # --- indicator systems ----------------------------------------------------------------
    def system_doc(self, system_id: str) -> IndicatorSystemDoc | None:
        return self._one(IndicatorSystemDoc, system_id)

    def systems_page(self, include_drafts: bool, size: int, after: str | None):
        query = IndicatorSystemDoc.objects if include_drafts else \
            IndicatorSystemDoc.objects(state="SYSTEM_STATE_PUBLISHED")
        return keyset_page(query, "system_id", size, after)

    # --- years ----------------------------------------------------------------------------
    def year(self, year: int) -> GradingYearDoc | None:
        return self._one(GradingYearDoc, str(year))

    # --- self-assessments -------------------------------------------------------------------
    def assessment(self, year: int, institution_id: str) -> SelfAssessmentDoc | None:
        return self._one(SelfAssessmentDoc, grade_id(year, institution_id))

    def assessment_rows(self, year: int) -> dict[str, dict]:
        """institution id -> {declared, reviewed, offences, overall, submitted_at} of every
        assessment of the year."""
        rows = SelfAssessmentDoc._get_collection().find(
            {"year": year}, {"institution_id": 1, "declared": 1, "reviewed": 1, "offences": 1,
                             "overall": 1, "submitted_at": 1}).batch_size(BATCH)
        return {r["institution_id"]: r for r in rows}

    # --- institutions -----------------------------------------------------------------------
    def institution(self, institution_id: str) -> GradingInstitution | None:
        return self._one(GradingInstitution, institution_id)

    def institution_rows(self, last_day: str) -> list[dict]:
        """Institutions filed by `last_day`, with what a year's scoring reads of them."""
        return list(GradingInstitution._get_collection().find(
            {"filed_on": {"$ne": None, "$lte": last_day}},
            {"district_code": 1, "filed_on": 1, "ended_on": 1, "end_kind": 1,
             "facts": 1}).sort("_id", 1).batch_size(BATCH))

    # --- grades -----------------------------------------------------------------------------
    def grade(self, year: int, institution_id: str) -> GradeRecord | None:
        return self._one(GradeRecord, grade_id(year, institution_id))

    def grade_ids(self, year: int) -> set[str]:
        return {r["_id"] for r in GradeRecord._get_collection().find({"year": year}, {"_id": 1})}

    def grade_by_appeal(self, appeal_id: str) -> GradeRecord | None:
        found = GradeRecord.objects(appeals__appeal_id=appeal_id).first()
        return None if found is None else (self.tracked(GradeRecord, found.pk) or
                                           self.track(found))

    def grades_of(self, institution_id: str) -> list[GradeRecord]:
        return [self.tracked(GradeRecord, g.pk) or self.track(g)
                for g in GradeRecord.objects(institution_id=institution_id).order_by("year")]

    def grades_page(self, filters: dict, size: int, after: str | None):
        return keyset_page(GradeRecord.objects(**filters), "grade_id", size, after)

    # --- listings ---------------------------------------------------------------------------
    def listing(self, listing_id: str) -> IntegrityListing | None:
        return self._one(IntegrityListing, listing_id)

    def listings_by_decision(self, decision_ref: str) -> list[IntegrityListing]:
        return [self.tracked(IntegrityListing, x.pk) or self.track(x)
                for x in IntegrityListing.objects(decision_ref=decision_ref)]

    def listings_of(self, institution_id: str) -> list[IntegrityListing]:
        """The institution's listings, those this call made and has not written yet too."""
        held = [x for x in self.seen if isinstance(x, IntegrityListing)
                and x.institution_id == institution_id]
        stored = [x for x in IntegrityListing.objects(institution_id=institution_id)
                  if not any(h.pk == x.pk for h in held)]
        return sorted(held + stored, key=lambda x: (x.listed_on, x.listing_id))

    def listings_page(self, filters: dict, size: int, after: str | None,
                      published_on: str | None = None):
        """A page of listings by id; `published_on` (an ISO day): only those whose publication
        period has not ended by then, checked on the entries read (models.py: a range there
        and the next page's would be two ranges of one index)."""
        keep = None if published_on is None else (
            lambda listing: (listing.publish_until or "") >= published_on)
        return keyset_page(IntegrityListing.objects(**filters), "listing_id", size, after,
                           keep=keep)

    # --- the preview of a year (ComputeGrades) ---------------------------------------------------
    def store_computation(self, docs: list[dict]) -> None:
        self.check_writable()
        if docs:
            GradeComputation._get_collection().insert_many(docs, ordered=False)

    def drop_computations(self, year: int, keep: str) -> None:
        GradeComputation._get_collection().delete_many(
            {"year": year, "computation_id": {"$ne": keep}})

    def computation_chunks(self, year: int, computation_id: str):
        return GradeComputation._get_collection().find(
            {"year": year, "computation_id": computation_id}).sort("chunk", 1)

    def expired_black(self, today: str, limit: int = 500) -> list[IntegrityListing]:
        """Published black-list entries whose period ended before today."""
        return self.track_all(IntegrityListing.objects(
            kind="BLACK", state="LISTING_STATE_LISTED", publish_until__lt=today).limit(limit))
