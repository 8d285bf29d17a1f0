"""Grading's handlers with an in-memory unit of work: each RPC's rules and refusals, the
events each change records, and what other services' events do. No broker, no database."""
from __future__ import annotations

from datetime import date

import pytest
from vocreg.grading.v1 import events_pb2

from services.common.entrypoints import parse_event
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.grading import domain, facts, handlers
from services.grading.models import (
    GradeRecord,
    GradingInstitution,
    IndicatorSystemDoc,
    IntegrityListing,
    SelfAssessmentDoc,
)
from services.grading.repository import GradingRepository
from services.grading.settings import GradingSettings
from tests import grading_support as gs
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, page_of, run
from tests.support import uscc


class FakeGradingRepository(FakeRepository, GradingRepository):
    def __init__(self):
        super().__init__("grading")
        self.computations: list[dict] = []

    def _one(self, cls, pk):
        return self.load(cls, pk)

    def systems_page(self, include_drafts, size, after):
        docs = [d for d in self.all(IndicatorSystemDoc)
                if include_drafts or d.state == domain.SYSTEM_PUBLISHED]
        return page_of(docs, "system_id", size, after)

    def assessment_rows(self, year):
        return {d.institution_id: d.to_mongo().to_dict() for d in self.all(SelfAssessmentDoc)
                if d.year == year}

    def institution_rows(self, last_day):
        return [d.to_mongo().to_dict() for d in sorted(self.all(GradingInstitution),
                                                       key=lambda d: d.institution_id)
                if d.filed_on and d.filed_on <= last_day]

    def grade_ids(self, year):
        return {d.grade_id for d in self.all(GradeRecord) if d.year == year}

    def grade_by_appeal(self, appeal_id):
        found = next((g for g in self.all(GradeRecord)
                      if any(a["appeal_id"] == appeal_id for a in g.appeals)), None)
        return None if found is None else self.load(GradeRecord, found.pk)

    def grades_of(self, institution_id):
        return [self.load(GradeRecord, g.pk) for g in self.all(GradeRecord)
                if g.institution_id == institution_id]

    def grades_page(self, filters, size, after):
        docs = [g for g in self.all(GradeRecord)
                if all(getattr(g, k) == v for k, v in filters.items())]
        return page_of(docs, "grade_id", size, after)

    def listings_by_decision(self, decision_ref):
        return [self.load(IntegrityListing, x.pk) for x in self.all(IntegrityListing)
                if x.decision_ref == decision_ref]

    def listings_of(self, institution_id):
        held = [x for x in self.seen if isinstance(x, IntegrityListing)
                and x.institution_id == institution_id]
        stored = [x for x in self.all(IntegrityListing) if x.institution_id == institution_id
                  and not any(h.pk == x.pk for h in held)]
        return held + stored

    def listings_page(self, filters, size, after, published_on=None):
        def keep(x):
            if published_on is not None and (x.publish_until or "") < published_on:
                return False
            return all(getattr(x, key) == value for key, value in filters.items())
        return page_of([x for x in self.all(IntegrityListing) if keep(x)], "listing_id", size,
                       after)

    def store_computation(self, docs):
        self.check_writable()
        self.computations.extend(docs)

    def drop_computations(self, year, keep):
        self.computations = [c for c in self.computations
                             if c["year"] != year or c["computation_id"] == keep]

    def computation_chunks(self, year, computation_id):
        return [c for c in self.computations
                if c["year"] == year and c["computation_id"] == computation_id]

    def expired_black(self, today, limit=500):
        return [self.load(IntegrityListing, x.pk) for x in self.all(IntegrityListing)
                if x.kind == domain.BLACK and x.state == domain.LISTED
                and x.publish_until < today]


@pytest.fixture
def clock():
    clock = FakeClock()
    clock.set(2026, 1, 5)
    return clock


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeGradingRepository(), events_pb2, clock, source="grading")


SETTINGS = GradingSettings()
REGULATOR = caller("regulator")


def call(handler, uow, clock, request, who=REGULATOR):
    return run(handler, uow, clock, SETTINGS, request, who)


def event(uow, clock, producer, event_type, body, handler):
    message = parse_event(producer, event_type, body)
    uow.begin()
    result = handler(message, uow, clock, SETTINGS)
    uow.flush()
    uow.publish()
    return result


def filed(uow, clock, n, on="2024-03-01", district="410502"):
    event(uow, clock, "filing", "InstitutionFiled", gs.institution_filed(uscc(n), on, district),
          facts.filing_status)


def open_2025(uow, clock, reviewers=()):
    return call(handlers.open_grading_year, uow, clock, {
        "year": 2025, "system_id": "default", "self_assessment_working_days": 10,
        "reviewers": list(reviewers), "request_id": "open"})["year"]


def submit(uow, clock, n, values=None, final=True, request_id=None):
    return call(handlers.submit_self_assessment, uow, clock, {
        "year": 2025, "values": gs.full_marks() if values is None else values, "final": final,
        "request_id": request_id or f"sa-{n}-{final}"}, caller("institution", uscc(n)))


def publish(uow, clock, on=(2026, 1, 20)):
    clock.set(*on)
    return call(handlers.publish_grades, uow, clock, {"year": 2025, "request_id": "pub"})


# --- indicator systems -----------------------------------------------------------------------------
def test_a_malformed_version_stores_nothing(uow, clock):
    data = {"system_id": "c1", "version": "1", "title": "t", "dimensions": []}
    with pytest.raises(InvalidArgument) as refused:
        call(handlers.create_indicator_system, uow, clock, {"system": data, "request_id": "c"})
    assert refused.value.reason == "MALFORMED_INDICATOR_SYSTEM"
    assert "system.dimensions: at least one dimension" in refused.value.violations
    assert uow.repo.all(IndicatorSystemDoc) == []


def test_draft_published_once_with_its_hash_then_never_changed(uow, clock):
    system = call(handlers.get_indicator_system, uow, clock, {"system_id": "default"})["system"]
    system["system_id"] = "c2"
    draft = call(handlers.create_indicator_system, uow, clock,
                 {"system": system, "request_id": "c2"})["info"]
    assert draft["state"] == domain.SYSTEM_DRAFT
    published = call(handlers.publish_indicator_system, uow, clock, {"system_id": "c2"})["info"]
    assert published["canonical_hash"] == domain.parse_system(system).canonical_hash
    body = uow.events("IndicatorSystemPublished")[0]
    assert (body["system_id"], body["leaf_count"]) == ("c2", 58)
    with pytest.raises(FailedPrecondition):
        call(handlers.publish_indicator_system, uow, clock, {"system_id": "c2"})
    with pytest.raises(FailedPrecondition):
        call(handlers.create_indicator_system, uow, clock, {"system": system, "request_id": "x"})


# --- the year -------------------------------------------------------------------------------------
def test_open_a_year_on_a_published_version_only_once(uow, clock):
    year = open_2025(uow, clock)
    assert year["self_assessment_due"] == {"date": "2026-01-19"}
    assert uow.events("GradingYearOpened")[0]["system_hash"] == \
        domain.default_system().canonical_hash
    with pytest.raises(AlreadyExists):
        call(handlers.open_grading_year, uow, clock, {
            "year": 2025, "system_id": "default", "self_assessment_working_days": 10})
    with pytest.raises(NotFound):
        call(handlers.open_grading_year, uow, clock, {
            "year": 2024, "system_id": "nope", "self_assessment_working_days": 10})
    with pytest.raises(InvalidArgument) as refused:
        call(handlers.open_grading_year, uow, clock, {
            "year": 2027, "system_id": "default", "self_assessment_working_days": 0})
    assert refused.value.violations == [
        "year: 2027 has not begun (today is 2026-01-05)",
        "self_assessment_working_days: must be 1-120"]


def test_self_assessment_by_the_deadline_only_for_graded_institutions(uow, clock):
    filed(uow, clock, 1)
    filed(uow, clock, 2, on="2025-03-01")
    open_2025(uow, clock)
    with pytest.raises(FailedPrecondition) as refused:
        submit(uow, clock, 2)
    assert refused.value.reason == "UNGRADED"
    with pytest.raises(FailedPrecondition) as refused:
        submit(uow, clock, 3)
    assert refused.value.reason == "INSTITUTION_NOT_FILED"
    assert submit(uow, clock, 1)["assessment"]["state"] == domain.ASSESSMENT_SUBMITTED
    with pytest.raises(FailedPrecondition) as refused:
        submit(uow, clock, 1, request_id="again")
    assert refused.value.reason == "ALREADY_SUBMITTED"
    clock.set(2026, 1, 20)
    filed(uow, clock, 4)
    with pytest.raises(FailedPrecondition) as refused:
        submit(uow, clock, 4)
    assert refused.value.reason == "SELF_ASSESSMENT_DEADLINE_PASSED"
    assert uow.repo.get(SelfAssessmentDoc, f"2025:{uscc(4)}") is None


class FakeFiling:
    def __init__(self, institutions):
        self.institutions, self.asked = institutions, []

    def institution(self, institution_id):
        self.asked.append(institution_id)
        return self.institutions.get(institution_id)


def test_an_institution_not_heard_of_yet_is_asked_of_filing(uow, clock):
    open_2025(uow, clock)
    filing = FakeFiling({uscc(7): {"institution_id": uscc(7), "filed_on": "2024-02-01",
                                   "district_code": "410503",
                                   "status": "INSTITUTION_STATUS_ACTIVE"}})
    answer = run(handlers.submit_self_assessment, uow, clock, SETTINGS, {
        "year": 2025, "values": gs.full_marks(), "request_id": "s7"},
        caller("institution", uscc(7)), filing=filing)
    assert answer["assessment"]["state"] == domain.ASSESSMENT_DRAFT and filing.asked == [uscc(7)]
    inst = uow.repo.get(GradingInstitution, uscc(7))
    assert (inst.filed_on, inst.district_code) == ("2024-02-01", "410503")
    with pytest.raises(FailedPrecondition) as refused:
        run(handlers.submit_self_assessment, uow, clock, SETTINGS, {
            "year": 2025, "values": [], "request_id": "s8"}, caller("institution", uscc(8)),
            filing=filing)
    assert refused.value.reason == "INSTITUTION_NOT_FILED"
    assert uow.repo.get(GradingInstitution, uscc(8)) is None


def test_a_review_is_audited_and_an_override_needs_its_reason(uow, clock):
    filed(uow, clock, 1)
    open_2025(uow, clock, [{"assessor_id": "a-1", "institution_ids": [uscc(1)]}])
    with pytest.raises(FailedPrecondition) as refused:  # not submitted, deadline not passed
        call(handlers.review_assessment, uow, clock, {
            "year": 2025, "institution_id": uscc(1), "request_id": "r0",
            "overall": {"grade": "GRADE_C", "reason": "r"}})
    assert refused.value.reason == "NOT_SUBMITTED"
    submit(uow, clock, 1)
    with pytest.raises(InvalidArgument) as refused:
        call(handlers.review_assessment, uow, clock, {
            "year": 2025, "institution_id": uscc(1), "request_id": "r1",
            "overall": {"grade": "GRADE_C"}})
    assert refused.value.violations == [
        "overall.reason: required: an overall judgement is written and audited"]
    with pytest.raises(PermissionDenied):
        call(handlers.review_assessment, uow, clock, {
            "year": 2025, "institution_id": uscc(1), "request_id": "r2",
            "overall": {"grade": "GRADE_C", "reason": "r"}}, caller("assessor", party_id="a-2"))
    answer = call(handlers.review_assessment, uow, clock, {
        "year": 2025, "institution_id": uscc(1), "request_id": "r3",
        "overall": {"grade": "GRADE_C", "reason": "综合评定: 管理混乱"}},
        caller("assessor", party_id="a-1"))["assessment"]
    assert answer["reviews"][0]["overall"] == {"grade": "GRADE_C", "reason": "综合评定: 管理混乱"}
    doc = uow.repo.get(SelfAssessmentDoc, f"2025:{uscc(1)}")
    assert doc.overall["by"].startswith("assessor:") and doc.overall["grade"] == 3


# --- publication ------------------------------------------------------------------------------------
def test_publication_grades_bands_direct_d_ungraded_and_lists(uow, clock):
    filed(uow, clock, 1)                      # full marks: A, red list
    filed(uow, clock, 2)                      # terminated in 2025: D, black list
    filed(uow, clock, 3, on="2025-02-01")     # filed in the year: UNGRADED
    filed(uow, clock, 4)                      # nothing declared: D by the points
    open_2025(uow, clock)
    submit(uow, clock, 1)
    submit(uow, clock, 2)
    event(uow, clock, "filing", "FilingTerminated", gs.filing_terminated(uscc(2), "2025-10-01"),
          facts.filing_status)
    with pytest.raises(FailedPrecondition) as refused:
        publish(uow, clock, on=(2026, 1, 19))
    assert refused.value.reason == "SELF_ASSESSMENT_OPEN"
    answer = publish(uow, clock)
    assert answer["published"] == 4 and answer["year"]["state"] == domain.YEAR_PUBLISHED
    grades = {b["institution_id"]: b for b in uow.events("GradePublished")}
    assert {k: v["grade"] for k, v in grades.items()} == {
        uscc(1): "GRADE_A", uscc(2): "GRADE_D", uscc(3): "GRADE_UNGRADED", uscc(4): "GRADE_D"}
    assert grades[uscc(2)]["reason"].startswith("direct D: 备案在评估年度内被终止")
    assert grades[uscc(4)].get("reason", "") == ""
    assert [b["institution_id"] for b in uow.events("ListedRed")] == [uscc(1)]
    black = uow.events("ListedBlack")
    assert [(b["institution_id"], b["basis"], b["publish_until"]) for b in black] == [
        (uscc(2), "001 ch.6 art.4", "2029-01-20")]
    assert publish(uow, clock) == answer  # the same request again: its first answer
    with pytest.raises(FailedPrecondition) as refused:
        call(handlers.publish_grades, uow, clock, {"year": 2025, "request_id": "pub-2"})
    assert refused.value.reason == "YEAR_PUBLISHED"
    assert len(uow.events("GradePublished")) == 4


def test_compute_grades_previews_without_publishing(uow, clock):
    filed(uow, clock, 1)
    open_2025(uow, clock)
    submit(uow, clock, 1, values=gs.full_marks(lose={"1.1.1.1": 1}))
    answer = call(handlers.compute_grades, uow, clock, {"year": 2025, "request_id": "c1"})
    assert answer["institutions"] == 1 and answer["counts"] == [{"grade": "GRADE_A",
                                                                 "count": 1}]
    preview = call(handlers.get_grade, uow, clock, {"institution_id": uscc(1), "year": 2025})
    assert preview["grade"]["score_centipoints"] == 9999 and "revision" not in preview["grade"]
    with pytest.raises(NotFound):  # not published: nothing public
        call(handlers.get_grade, uow, clock, {"institution_id": uscc(1), "year": 2025},
             caller("institution", uscc(1)))
    assert uow.events("GradePublished") == []


# --- appeals -------------------------------------------------------------------------------------------
def appeal_request(indicator="1.1.1.1", request_id="ap"):
    return {"year": 2025, "request_id": request_id, "indicators": [
        {"indicator_id": indicator, "statement": "s", "evidence": [gs.evidence("e")]}]}


def test_an_accepted_appeal_is_a_new_revision_and_a_rejected_one_changes_nothing(uow, clock):
    filed(uow, clock, 1)
    open_2025(uow, clock)
    submit(uow, clock, 1, values=gs.full_marks(lose={"1.1.1.1": 200}))
    publish(uow, clock)
    inst = caller("institution", uscc(1))
    appeal = call(handlers.appeal_grade, uow, clock, appeal_request(), inst)["appeal"]
    with pytest.raises(FailedPrecondition) as refused:
        call(handlers.appeal_grade, uow, clock, appeal_request(request_id="ap2"), inst)
    assert refused.value.reason == "APPEAL_PENDING"
    with pytest.raises(InvalidArgument) as refused:
        call(handlers.decide_appeal, uow, clock, {"appeal_id": appeal["appeal_id"],
                                                  "decisions": []})
    assert "missing 1.1.1.1" in refused.value.violations[0]
    decided = call(handlers.decide_appeal, uow, clock, {
        "appeal_id": appeal["appeal_id"], "decisions": [
            {"indicator_id": "1.1.1.1", "accepted": True, "points_centi": 200,
             "reason": "营业执照已年检"}]})
    assert decided["revised"] is True and decided["grade"]["revision"] == 2
    revised = uow.events("GradeRevised")[0]
    assert (revised["previous_grade"], revised["grade"], revised["appeal_id"]) == \
        ("GRADE_A", "GRADE_A", appeal["appeal_id"])
    assert revised["score_centipoints"] == 10000
    rec = uow.repo.get(GradeRecord, f"2025:{uscc(1)}")
    assert [r["score"] for r in rec.revisions] == [9800, 10000]  # never an overwrite
    second = call(handlers.appeal_grade, uow, clock, appeal_request(request_id="ap3"),
                  inst)["appeal"]
    unchanged = call(handlers.decide_appeal, uow, clock, {
        "appeal_id": second["appeal_id"], "decisions": [
            {"indicator_id": "1.1.1.1", "accepted": False, "reason": "no new evidence"}]})
    assert unchanged["revised"] is False and len(uow.events("GradeRevised")) == 1


def test_an_appeal_after_15_working_days_is_refused(uow, clock):
    filed(uow, clock, 1)
    open_2025(uow, clock)
    submit(uow, clock, 1)
    publish(uow, clock)  # 2026-01-20: appeals until 2026-02-10
    clock.set(2026, 2, 10)
    call(handlers.appeal_grade, uow, clock, appeal_request(), caller("institution", uscc(1)))
    clock.set(2026, 2, 11)
    rec = uow.repo.get(GradeRecord, f"2025:{uscc(1)}")
    rec.appeals = []
    with pytest.raises(FailedPrecondition) as refused:
        call(handlers.appeal_grade, uow, clock, appeal_request(request_id="late"),
             caller("institution", uscc(1)))
    assert refused.value.reason == "APPEAL_PERIOD_OVER"


# --- facts from other services --------------------------------------------------------------------
def test_a_sanction_is_recorded_once_listed_black_and_revises_a_published_grade(uow, clock):
    filed(uow, clock, 1)
    open_2025(uow, clock)
    submit(uow, clock, 1)
    publish(uow, clock)
    body = gs.sanction_decided(uscc(1), "DEC-1", "2025-11-02", tier="SANCTION_TIER_TERMINATION",
                               basis="001 ch.6 art.4(4)", integrity_record=True, publish=True)
    for _ in range(2):  # the same event twice: one fact, one entry, one listing
        event(uow, clock, "inspection", "SanctionDecided", body, facts.sanction_decided)
    inst = uow.repo.get(GradingInstitution, uscc(1))
    assert [f["kind"] for f in inst.facts] == ["FACT_KIND_SANCTION", "FACT_KIND_BLACK_LISTED"]
    assert len(uow.events("ListedBlack")) == 1
    revised = uow.events("GradeRevised")
    assert [(r["previous_grade"], r["grade"]) for r in revised] == [("GRADE_A", "GRADE_D")]
    rec = uow.repo.get(GradeRecord, f"2025:{uscc(1)}")
    assert rec.revisions[-1]["offences"] == ["D2", "D4"]
    assert [x.state for x in uow.repo.all(IntegrityListing) if x.kind == domain.RED] == \
        [domain.REMOVED]


def test_credit_repair_after_the_minimum_with_proof_then_off_publication(uow, clock):
    filed(uow, clock, 1)
    event(uow, clock, "inspection", "SanctionDecided",
          gs.sanction_decided(uscc(1), "DEC-2", "2026-01-05", black_list=True),
          facts.sanction_decided)
    listing_id = "black:DEC-2"
    request = {"listing_id": listing_id, "statement": "整改", "proof": [gs.evidence("p")],
               "request_id": "rep"}
    with pytest.raises(FailedPrecondition):
        call(handlers.apply_credit_repair, uow, clock, request, caller("institution", uscc(1)))
    with pytest.raises(PermissionDenied):
        call(handlers.apply_credit_repair, uow, clock, request, caller("institution", uscc(2)))
    clock.set(2026, 4, 5)
    call(handlers.apply_credit_repair, uow, clock, request, caller("institution", uscc(1)))
    entry = call(handlers.decide_credit_repair, uow, clock, {
        "listing_id": listing_id, "approve": True, "reason": "整改到位"})["entry"]
    assert entry["state"] == domain.REMOVED
    assert [e["listing_id"] for e in uow.events("CreditRepaired")] == [listing_id]
    assert call(handlers.list_black_list, uow, clock, {}, caller("regulator")).get(
        "entries", []) == []
    public = call(handlers.get_integrity_file, uow, clock, {"institution_id": uscc(1)},
                  caller("institution", uscc(2)))
    assert public["public_view"] and all(e["kind"] != "INTEGRITY_ENTRY_KIND_BLACK_LISTED"
                                         for e in public["entries"])


def test_the_sweep_ends_a_publication_period(uow, clock):
    filed(uow, clock, 1)
    event(uow, clock, "inspection", "SanctionDecided",
          gs.sanction_decided(uscc(1), "DEC-3", "2023-01-05", black_list=True),
          facts.sanction_decided)
    clock.set(2026, 1, 6)
    uow.begin()
    assert handlers.sweep(uow, clock, SETTINGS) == {"ended": 1}
    uow.flush()
    uow.publish()
    removed = uow.events("BlackListEntryRemoved")
    assert removed[0]["reason"] == "publication period ended on 2026-01-05"


def test_three_years_of_commendations_earn_the_reward_once(uow, clock):
    filed(uow, clock, 1)
    for year in (2023, 2025, 2024):
        call(handlers.record_commendation, uow, clock, {
            "institution_id": uscc(1), "year": year, "request_id": f"c{year}",
            "kind": "INTEGRITY_ENTRY_KIND_COMMENDATION", "summary": f"通报表扬 {year}"})
    inst = uow.repo.get(GradingInstitution, uscc(1))
    rewards = [e for e in inst.entries if e["kind"] == "INTEGRITY_ENTRY_KIND_REWARD"]
    assert [(e["year"], e["basis"]) for e in rewards] == [(2025, "001 ch.7 art.1(1)")]


def test_black_list_period_follows_the_setting(uow, clock):
    settings = GradingSettings(black_list_months=3)
    until = domain.publish_until(date(2026, 1, 5), settings.black_list_months)
    assert until == date(2026, 4, 5)
