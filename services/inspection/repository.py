"""Inspection's queries. Aggregates handed out for change are tracked (services/common/uow.py);
the views of other services' facts (InspectedInstitution) are changed by single conditional
updates, never loaded to be saved."""
from __future__ import annotations

from services.common.repository import indexed_filter, keyset_page
from services.common.uow import Repository
from services.inspection.models import (
    DrawPool,
    InspectedInstitution,
    InspectionCase,
    InspectionComplaint,
    InspectionDraw,
    InspectionPlan,
    InspectorRecord,
)

FILED = ("INSTITUTION_STATUS_ACTIVE", "INSTITUTION_STATUS_SUSPENDED")


class InspectionRepository(Repository):
    # --- aggregates -------------------------------------------------------------------------
    def _one(self, cls, pk):
        return self.tracked(cls, pk) or self.track(cls.objects(pk=pk).first())

    def plan(self, plan_id: str) -> InspectionPlan | None:
        return self._one(InspectionPlan, plan_id)

    def inspector(self, inspector_id: str) -> InspectorRecord | None:
        return self._one(InspectorRecord, inspector_id)

    def draw(self, draw_id: str) -> InspectionDraw | None:
        return self._one(InspectionDraw, draw_id)

    def case(self, case_id: str) -> InspectionCase | None:
        return self._one(InspectionCase, case_id)

    def read_case(self, case_id: str) -> InspectionCase | None:
        """For reading only (not tracked)."""
        return InspectionCase.objects(pk=case_id).first()

    def read_draw(self, draw_id: str) -> InspectionDraw | None:
        return InspectionDraw.objects(pk=draw_id).first()

    def read_inspector(self, inspector_id: str) -> InspectorRecord | None:
        return InspectorRecord.objects(pk=inspector_id).first()

    def read_plan(self, plan_id: str) -> InspectionPlan | None:
        return InspectionPlan.objects(pk=plan_id).first()

    def existing_case_ids(self, case_ids: list[str]) -> set[str]:
        return {doc["_id"] for doc in InspectionCase._get_collection().find(
            {"_id": {"$in": list(case_ids)}}, {"_id": 1})}

    def names(self, institution_ids: list[str]) -> dict[str, str]:
        return {doc["_id"]: doc.get("name") or "" for doc in
                InspectedInstitution._get_collection().find(
                    {"_id": {"$in": list(institution_ids)}}, {"name": 1})}

    def open_special_case(self, subject_kind: str, subject_id: str, origins) -> InspectionCase | None:
        """The subject's open non-random case (complaint or anomaly) that has not reached a
        decision: a new trigger joins it rather than opening another."""
        found = InspectionCase.objects(
            subject_kind=subject_kind, subject_id=subject_id, origin__in=list(origins),
            state__in=["CASE_STATE_OPEN", "CASE_STATE_INSPECTED"]).order_by("opened_at").first()
        return None if found is None else self._one(InspectionCase, found.case_id)

    def case_with_trigger(self, trigger_id: str) -> InspectionCase | None:
        """The case a trigger (an event's natural id) was recorded on, open or not."""
        found = InspectionCase.objects(trigger_ids=trigger_id).only("case_id").first()
        return None if found is None else self._one(InspectionCase, found.case_id)

    def special_cases_opened(self, subject_kind: str, subject_id: str, origins) -> int:
        """How many complaint or anomaly cases the subject has had, in any state."""
        return InspectionCase.objects(subject_kind=subject_kind, subject_id=subject_id,
                                      origin__in=list(origins)).count()

    def cases_for_sweep(self, today: str) -> list[str]:
        """Ids of cases with a due-process clock that ran out by `today`."""
        ids = set()
        for query in (dict(state="CASE_STATE_NOTIFIED", notice__statement_due__date__lt=today),
                      dict(state="CASE_STATE_DECIDED", decision__review_due__date__lt=today),
                      dict(rectification__state__in=["RECTIFICATION_STATE_ORDERED",
                                                     "RECTIFICATION_STATE_SUBMITTED"],
                           rectification__due_on__lt=today)):
            ids.update(c.case_id for c in InspectionCase.objects(**query).only("case_id"))
        return sorted(ids)

    # --- pools --------------------------------------------------------------------------------
    def save_pool(self, draw_id: str, pool: dict) -> None:
        self.check_writable()
        DrawPool._get_collection().update_one({"_id": draw_id},
                                              {"$setOnInsert": {"pool": pool}}, upsert=True)

    def pool(self, draw_id: str) -> dict | None:
        doc = DrawPool._get_collection().find_one({"_id": draw_id})
        return None if doc is None else doc["pool"]

    def filed_institutions(self) -> list[dict]:
        """Filed institutions (active or suspended) with their grade: the draw's candidates."""
        return list(InspectedInstitution._get_collection().find(
            {"status": {"$in": list(FILED)}}, {"status": 1, "grade": 1}))

    def active_inspectors(self) -> list[dict]:
        return list(InspectorRecord._get_collection().find(
            {"active": True}, {"employer_id": 1, "relations": 1}))

    def last_teams(self) -> dict[str, set[str]]:
        """institution id -> the team of its latest case that had one."""
        teams: dict[str, set[str]] = {}
        for doc in InspectionCase._get_collection().find(
                {"inspector_ids.0": {"$exists": True}, "institution_id": {"$ne": ""}},
                {"institution_id": 1, "inspector_ids": 1, "opened_at": 1}).sort("opened_at", 1):
            teams[doc["institution_id"]] = set(doc["inspector_ids"])
        return teams

    def institutions_under_open_cases(self) -> dict[str, str]:
        """institution id -> an open case (not yet decided) it is under."""
        return {doc["institution_id"]: doc["_id"] for doc in InspectionCase._get_collection().find(
            {"state": {"$in": ["CASE_STATE_OPEN", "CASE_STATE_INSPECTED", "CASE_STATE_NOTIFIED",
                               "CASE_STATE_AWAITING_DECISION"]},
             "institution_id": {"$ne": ""}}, {"institution_id": 1})}

    def drawn_in_round(self, plan_id: str, round_: int) -> dict[str, str]:
        """institution id -> the draw of this round that drew it."""
        drawn = {}
        for draw in InspectionDraw.objects(plan_id=plan_id, round=round_,
                                           state="DRAW_STATE_REVEALED").only("draw_id", "drawn"):
            for entry in draw.drawn:
                drawn.setdefault(entry["institution_id"], draw.draw_id)
        return drawn

    def accepted_warnings(self, institution_id: str) -> list[str]:
        """Decision ids of the institution's warnings (tier 3) whose rectification was accepted
        and that were not overturned, oldest first (ch.6 art.4(6))."""
        return [c.decision["decision_id"] for c in InspectionCase.objects(
            institution_id=institution_id, decision__tier="SANCTION_TIER_WARNING",
            rectification__state="RECTIFICATION_STATE_ACCEPTED").order_by("opened_at")
            if (c.review or {}).get("outcome") != "REVIEW_OUTCOME_OVERTURNED"]

    def complaints_since(self, caller_key: str, since) -> int:
        return InspectionComplaint.objects(caller_key=caller_key, filed_at__gte=since).count()

    # --- lists ---------------------------------------------------------------------------------
    def list_inspectors(self, filters: dict, size: int, after):
        return keyset_page(InspectorRecord.objects(**filters), "inspector_id", size, after)

    def list_cases(self, filters: dict, size: int, after):
        """The filters combine more ways than the cases have indexes (models.py): the part an
        index serves is asked, the rest checked on the cases read."""
        served, keep = indexed_filter(InspectionCase, "case_id", filters)
        return keyset_page(InspectionCase.objects(**served), "case_id", size, after, keep=keep)

    def list_draws(self, filters: dict, size: int, after):
        return keyset_page(InspectionDraw.objects(**filters).exclude("drawn", "recusals",
                                                                     "excluded_institutions"),
                           "draw_id", size, after)

    def list_published(self, filters: dict, size: int, after):
        return self.list_cases({"published": True, **filters}, size, after)

    # --- the views of others' facts ------------------------------------------------------------
    def institution(self, institution_id: str) -> InspectedInstitution | None:
        return InspectedInstitution.objects(pk=institution_id).first()

    def set_institution_status(self, institution_id: str, status: str, sequence: int,
                               details: dict) -> bool:
        """Apply filing's status if its sequence is above the last one applied."""
        collection = InspectedInstitution._get_collection()
        collection.update_one({"_id": institution_id}, {"$setOnInsert": {"monthly_issued": {}}},
                              upsert=True)
        result = collection.update_one(
            {"_id": institution_id, "$or": [{"status_sequence": {"$lt": sequence}},
                                            {"status_sequence": None}]},
            {"$set": {"status": status, "status_sequence": sequence, **details}})
        return result.modified_count == 1

    def set_grade(self, institution_id: str, grade: str, year: int, revision: int) -> bool:
        """Apply a published grade if it is newer (year, then revision) than the one held."""
        collection = InspectedInstitution._get_collection()
        collection.update_one({"_id": institution_id}, {"$setOnInsert": {"monthly_issued": {}}},
                              upsert=True)
        result = collection.update_one(
            {"_id": institution_id, "$or": [
                {"grade_year": {"$lt": year}}, {"grade_year": None},
                {"grade_year": year, "grade_revision": {"$lt": revision}}]},
            {"$set": {"grade": grade, "grade_year": year, "grade_revision": revision}})
        return result.modified_count == 1

    def add_issued(self, institution_id: str, month: str, count: int) -> dict:
        """Count a batch into its month; the months before it, as they were."""
        collection = InspectedInstitution._get_collection()
        before = collection.find_one_and_update(
            {"_id": institution_id}, {"$inc": {f"monthly_issued.{month}": count}}, upsert=True)
        return dict((before or {}).get("monthly_issued") or {})

    def prune_months(self, institution_id: str, keep: set[str]) -> None:
        doc = InspectedInstitution._get_collection().find_one({"_id": institution_id},
                                                               {"monthly_issued": 1})
        drop = {f"monthly_issued.{m}": "" for m in (doc or {}).get("monthly_issued") or {}
                if m not in keep}
        if drop:
            InspectedInstitution._get_collection().update_one({"_id": institution_id},
                                                              {"$unset": drop})
