"""Inspection's handlers with a fake unit of work (no broker, no database): the draw from
commit to verification and recusal, due process on the working-day calendar, decisions and
their events, escalation, review, rectification and its missed deadline, complaints, triggers
from other services' events, and refusals that store nothing."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from vocreg.certificates.v1 import events_pb2 as certificate_events
from vocreg.common.v1 import types_pb2
from vocreg.filing.v1 import events_pb2 as filing_events
from vocreg.inspection.v1 import events_pb2

from services.common.auth import ANONYMOUS
from services.common.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from services.inspection import handlers
from services.inspection.domain import draw as drawing
from services.inspection.domain import rules
from services.inspection.models import (
    InspectionCase,
    InspectionComplaint,
    InspectionDraw,
    InspectionPlan,
    InspectorRecord,
)
from services.inspection.repository import InspectionRepository
from services.inspection.settings import InspectionSettings
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, page_of, run
from tests.support import uscc

SETTINGS = InspectionSettings()
REGULATOR = caller("regulator")
ACTIVE = "INSTITUTION_STATUS_ACTIVE"


class FakeInspectionRepository(FakeRepository, InspectionRepository):
    """Inspection's queries over the fake store; others' facts in plain dicts."""

    def __init__(self):
        super().__init__("inspection")
        self.pools: dict[str, dict] = {}
        self.views: dict[str, dict] = {}

    def _one(self, cls, pk):
        return self.load(cls, pk)

    def read_case(self, case_id):
        return self.get(InspectionCase, case_id)

    def read_draw(self, draw_id):
        return self.get(InspectionDraw, draw_id)

    def read_plan(self, plan_id):
        return self.get(InspectionPlan, plan_id)

    def read_inspector(self, inspector_id):
        return self.get(InspectorRecord, inspector_id)

    def existing_case_ids(self, case_ids):
        return {c for c in case_ids if self.get(InspectionCase, c) is not None}

    def names(self, institution_ids):
        return {i: self.views.get(i, {}).get("name", "") for i in institution_ids}

    def open_special_case(self, subject_kind, subject_id, origins):
        found = sorted((c for c in self.all(InspectionCase)
                        if c.subject_kind == subject_kind and c.subject_id == subject_id
                        and c.origin in origins and c.state in (rules.OPEN, rules.INSPECTED)),
                       key=lambda c: c.opened_at)
        return self.load(InspectionCase, found[0].case_id) if found else None

    def case_with_trigger(self, trigger_id):
        found = [c for c in self.all(InspectionCase) if trigger_id in c.trigger_ids]
        return self.load(InspectionCase, found[0].case_id) if found else None

    def special_cases_opened(self, subject_kind, subject_id, origins):
        return sum(1 for c in self.all(InspectionCase) if c.subject_kind == subject_kind
                   and c.subject_id == subject_id and c.origin in origins)

    def cases_for_sweep(self, today):
        return sorted(c.case_id for c in self.all(InspectionCase) if (
            (c.state == rules.NOTIFIED and c.notice["statement_due"]["date"] < today)
            or (c.state == rules.DECIDED and c.decision["review_due"]["date"] < today)
            or ((c.rectification or {}).get("state") in (rules.RECT_ORDERED, rules.RECT_SUBMITTED)
                and c.rectification["due_on"] < today)))

    def save_pool(self, draw_id, pool):
        self.check_writable()
        self.pools.setdefault(draw_id, pool)

    def pool(self, draw_id):
        return self.pools.get(draw_id)

    def filed_institutions(self):
        return [{"_id": k, **v} for k, v in sorted(self.views.items())
                if v.get("status") in ("INSTITUTION_STATUS_ACTIVE", "INSTITUTION_STATUS_SUSPENDED")]

    def active_inspectors(self):
        return [{"_id": i.inspector_id, "employer_id": i.employer_id,
                 "relations": list(i.relations)} for i in self.all(InspectorRecord) if i.active]

    def last_teams(self):
        teams = {}
        for case in sorted(self.all(InspectionCase), key=lambda c: c.opened_at):
            if case.inspector_ids and case.institution_id:
                teams[case.institution_id] = set(case.inspector_ids)
        return teams

    def institutions_under_open_cases(self):
        return {c.institution_id: c.case_id for c in self.all(InspectionCase)
                if c.state in rules.ACTIVE_STATES and c.institution_id}

    def drawn_in_round(self, plan_id, round_):
        drawn = {}
        for d in self.all(InspectionDraw):
            if d.plan_id == plan_id and d.round == round_ and d.state == handlers.REVEALED:
                for entry in d.drawn:
                    drawn.setdefault(entry["institution_id"], d.draw_id)
        return drawn

    def accepted_warnings(self, institution_id):
        return [c.decision["decision_id"] for c in sorted(self.all(InspectionCase),
                                                          key=lambda c: c.opened_at)
                if c.institution_id == institution_id and (c.decision or {}).get("tier")
                == rules.TIER_3 and (c.rectification or {}).get("state") == rules.RECT_ACCEPTED
                and (c.review or {}).get("outcome") != rules.OVERTURNED]

    def complaints_since(self, caller_key, since):
        return sum(1 for c in self.all(InspectionComplaint)
                   if c.caller_key == caller_key and c.filed_at >= since)

    def list_cases(self, filters, size, after):
        rows = [c for c in self.all(InspectionCase)
                if all((v in getattr(c, k)) if k == "outcome_kinds" else getattr(c, k) == v
                       for k, v in filters.items())]
        return page_of(rows, "case_id", size, after)

    def list_published(self, filters, size, after):
        return self.list_cases({**filters, "published": True}, size, after)

    def institution(self, institution_id):
        view = self.views.get(institution_id)
        return None if view is None else SimpleNamespace(**{"name": "", **view})

    def set_institution_status(self, institution_id, status, sequence, details):
        view = self.views.setdefault(institution_id, {"monthly_issued": {}})
        if view.get("status_sequence") is not None and view["status_sequence"] >= sequence:
            return False
        view.update(status=status, status_sequence=sequence, **details)
        return True

    def set_grade(self, institution_id, grade, year, revision):
        view = self.views.setdefault(institution_id, {"monthly_issued": {}})
        view.update(grade=grade)
        return True

    def add_issued(self, institution_id, month, count):
        view = self.views.setdefault(institution_id, {"monthly_issued": {}})
        before = dict(view["monthly_issued"])
        view["monthly_issued"][month] = view["monthly_issued"].get(month, 0) + count
        return before

    def prune_months(self, institution_id, keep):
        view = self.views[institution_id]
        view["monthly_issued"] = {m: n for m, n in view["monthly_issued"].items() if m in keep}


@pytest.fixture
def clock():
    return FakeClock()  # 2025-09-15, a Monday


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeInspectionRepository(), events_pb2, clock, "inspection")


def call(uow, clock, handler, request, who=REGULATOR, settings=SETTINGS):
    return run(handler, uow, clock, settings, request, who or ANONYMOUS)


def stored(uow):
    """What the store holds: to check a refusal changed nothing."""
    return {k: v.to_mongo().to_dict() for k, v in uow.repo.store.items()}, dict(uow.repo.pools)


# --- builders -------------------------------------------------------------------------------
def plan(uow, clock, **overrides):
    request = {"request_id": "plan-1", "year": 2025, "title": "2025年度监管计划",
               "content": "评价活动合规性", "kinds": ["INSPECTION_KIND_DAILY"],
               "rounds": [{"round": 1, "half": 1, "window_from": "2025-03-01",
                           "window_to": "2025-06-30"},
                          {"round": 2, "half": 2, "window_from": "2025-09-01",
                           "window_to": "2025-12-31", "kind": "INSPECTION_KIND_DAILY"}]}
    request.update(overrides)
    return call(uow, clock, handlers.create_plan, request)["plan"]


def inspectors(uow, clock, n=6, relations=None):
    for j in range(n):
        call(uow, clock, handlers.register_inspector, {
            "request_id": f"insp-{j}", "inspector_id": f"INSP-{j:03d}", "name": f"检查员{j}",
            "employer_id": uscc(900 + j), "employer_name": "安阳市职业技能鉴定指导中心",
            "region": "410500", "relations": (relations or {}).get(j, [])})


def institutions(uow, n=40, grades="ABCDU"):
    for i in range(1, n + 1):
        grade = grades[i % len(grades)]
        uow.repo.views[uscc(i)] = {"status": ACTIVE, "status_sequence": 1,
                                   "name": f"安阳第{i}评价中心", "monthly_issued": {},
                                   **({"grade": grade} if grade != "U" else {})}


def committed(uow, clock, plan_id, round_=2, rid="commit-1", source="福彩3D 2025年第250期开奖号码",
              **extra):
    return call(uow, clock, handlers.commit_draw, {
        "request_id": rid, "plan_id": plan_id, "round": round_, "seed_source": source,
        "seed_available_on": "2025-09-15", **extra})["draw"]


def drawn_platform(uow, clock):
    p = plan(uow, clock)
    inspectors(uow, clock)
    institutions(uow)
    d = committed(uow, clock, p["plan_id"])
    revealed = call(uow, clock, handlers.reveal_draw, {
        "draw_id": d["summary"]["draw_id"], "seed_value": "3 8 5"})["draw"]
    return p, revealed


# --- plans and inspectors ------------------------------------------------------------------------
def test_a_plan_states_its_defaults_and_a_second_registration_is_refused(uow, clock):
    p = plan(uow, clock)
    assert {r["stratum"]: r["ratio_bp"] for r in p["ratios"]} == {
        "D": 3000, "C": 1000, "B": 200, "A": 100, "UNGRADED": 1000}
    assert p["minimum_bp"] == 500 and p["team_size"] == 2
    inspectors(uow, clock, 1)
    before = stored(uow)
    with pytest.raises(FailedPrecondition, match="already registered"):
        call(uow, clock, handlers.register_inspector, {
            "request_id": "other", "inspector_id": "INSP-000", "name": "x",
            "employer_id": uscc(900), "employer_name": "y", "region": "410500"})
    assert stored(uow) == before


def test_an_inspector_declares_only_their_own_relations(uow, clock):
    inspectors(uow, clock, 2)
    relation = {"institution_id": uscc(3), "kind": "RELATION_KIND_PERSONAL", "note": "表亲"}
    own = caller("inspector", sub="INSP-000")
    answer = call(uow, clock, handlers.declare_conflict,
                  {"inspector_id": "INSP-000", "relation": relation}, own)
    assert answer["inspector"]["relations"][0]["institution_id"] == uscc(3)
    with pytest.raises(PermissionDenied):
        call(uow, clock, handlers.declare_conflict,
             {"inspector_id": "INSP-001", "relation": relation}, own)


# --- the draw -----------------------------------------------------------------------------------
def test_commit_publishes_the_pool_hash_before_the_seed_and_reveal_opens_the_cases(uow, clock):
    p = plan(uow, clock)
    inspectors(uow, clock, relations={0: [{"institution_id": uscc(1),
                                           "kind": "RELATION_KIND_PAST_EMPLOYMENT",
                                           "until": "2024-01-31"}]})
    institutions(uow)
    uow.repo.views[uscc(2)]["status"] = "INSTITUTION_STATUS_SUSPENDED"
    d = committed(uow, clock, p["plan_id"])
    summary = d["summary"]
    [event] = uow.events("DrawCommitted")
    assert event["pool_hash"] == summary["pool_hash"] == drawing.pool_hash(
        uow.repo.pools[summary["draw_id"]])
    assert "seed_value" not in summary and summary["pool_institutions"] == 39
    assert {"id": uscc(2), "reason": "suspended during rectification"} in d["excluded_institutions"]
    assert ["INSP-000", uscc(1), "FORMER_EMPLOYER"] in uow.repo.pools[summary["draw_id"]][
        "conflicts"]
    revealed = call(uow, clock, handlers.reveal_draw,
                    {"draw_id": summary["draw_id"], "seed_value": "3 8 5"})["draw"]
    drawn = revealed["drawn"]
    assert len(drawn) >= 2  # 5 % of 39 at least
    opened = uow.events("CaseOpened")
    assert [e["case_id"] for e in opened] == [e["case_id"] for e in drawn]
    assert all(e["origin"] == "CASE_ORIGIN_RANDOM_DRAW" for e in opened)
    for entry in drawn:
        assert len(entry["inspector_ids"]) == 2
        assert not (entry["institution_id"] == uscc(1) and "INSP-000" in entry["inspector_ids"])
    verified = call(uow, clock, handlers.verify_draw, {"draw_id": summary["draw_id"]}, None)
    assert verified["verified"] and verified["pool_matches"] and verified["result_matches"]


def test_reveal_before_commit_a_second_reveal_and_an_early_reveal_store_nothing(uow, clock):
    p = plan(uow, clock)
    inspectors(uow, clock)
    institutions(uow)
    with pytest.raises(NotFound, match="committed"):
        call(uow, clock, handlers.reveal_draw, {"draw_id": "nope", "seed_value": "1"})
    d = committed(uow, clock, p["plan_id"], seed_available_on="2025-09-20")
    draw_id = d["summary"]["draw_id"]
    before = stored(uow)
    with pytest.raises(FailedPrecondition, match="cannot be revealed before"):
        call(uow, clock, handlers.reveal_draw, {"draw_id": draw_id, "seed_value": "1"})
    assert stored(uow) == before
    clock.set(2025, 9, 22)
    call(uow, clock, handlers.reveal_draw, {"draw_id": draw_id, "seed_value": "1"})
    before = stored(uow)
    with pytest.raises(FailedPrecondition) as refused:
        call(uow, clock, handlers.reveal_draw, {"draw_id": draw_id, "seed_value": "2"})
    assert refused.value.reason == "DRAW_ALREADY_REVEALED" and stored(uow) == before


def test_a_round_is_drawn_once_and_a_supplementary_draw_needs_a_fresh_seed(uow, clock):
    p, revealed = drawn_platform(uow, clock)
    with pytest.raises(FailedPrecondition, match="supplementary"):
        committed(uow, clock, p["plan_id"], rid="again", source="另一期开奖号码 2025251")
    with pytest.raises(FailedPrecondition, match="fresh seed"):
        committed(uow, clock, p["plan_id"], rid="supp", supplementary=True, sample_size=3)
    supp = committed(uow, clock, p["plan_id"], rid="supp", supplementary=True, sample_size=3,
                     source="福彩3D 2025年第251期开奖号码")
    before_ids = {d["institution_id"] for d in revealed["drawn"]}
    excluded = {e["id"] for e in supp["excluded_institutions"]}
    assert before_ids <= excluded  # drawn before, or under their open case
    with pytest.raises(FailedPrecondition, match="fresh seed"):
        call(uow, clock, handlers.reveal_draw,
             {"draw_id": supp["summary"]["draw_id"], "seed_value": "3 8 5"})
    second = call(uow, clock, handlers.reveal_draw,
                  {"draw_id": supp["summary"]["draw_id"], "seed_value": "9 9 1"})["draw"]
    assert len(second["drawn"]) == 3 and not {d["institution_id"] for d in second["drawn"]} & \
        before_ids


def test_recusal_replaces_only_the_recused_inspector_and_the_record_still_verifies(uow, clock):
    _, revealed = drawn_platform(uow, clock)
    draw_id = revealed["summary"]["draw_id"]
    target = revealed["drawn"][0]
    gone, stays = target["inspector_ids"]
    answer = call(uow, clock, handlers.recuse, {
        "draw_id": draw_id, "institution_id": target["institution_id"], "inspector_id": gone,
        "reason": "近亲属在该机构任职"})
    team = answer["inspection"]["inspector_ids"]
    assert gone not in team and stays in team and answer["recusal"]["replaced_by"] in team
    after = uow.repo.get(InspectionDraw, draw_id)
    assert [d for d in after.drawn[1:]] == [dict(d) for d in uow.repo.get(
        InspectionDraw, draw_id).drawn[1:]]
    assert [d["inspector_ids"] for d in after.drawn[1:]] == [
        d["inspector_ids"] for d in revealed["drawn"][1:]]
    case = uow.repo.get(InspectionCase, target["case_id"])
    assert case.inspector_ids == team
    assert call(uow, clock, handlers.verify_draw, {"draw_id": draw_id}, None)["verified"]
    record = handlers._record_of(uow, after)
    assert drawing.verify(record) == []


# --- due process, decisions, effects ---------------------------------------------------------------
def case_with_findings(uow, clock, articles=("ch.6 art.3(3)",), institution=7):
    answer = call(uow, clock, handlers.open_case, {
        "request_id": f"open-{institution}-{len(uow.repo.store)}",
        "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(institution), "kind": "INSPECTION_KIND_SPECIAL",
        "origin": "CASE_ORIGIN_PLAN", "inspector_ids": ["INSP-000", "INSP-001"]})
    case_id = answer["case"]["case_id"]
    inspector = caller("inspector", sub="INSP-000")
    for n, article in enumerate(articles):
        call(uow, clock, handlers.record_finding, {
            "request_id": f"f-{case_id}-{n}", "case_id": case_id, "article": article,
            "summary": "连续6个月未开展评价"}, inspector)
    call(uow, clock, handlers.complete_inspection, {"case_id": case_id}, inspector)
    return case_id


def notify(uow, clock, case_id):
    return call(uow, clock, handlers.notify_intended_decision, {
        "case_id": case_id, "facts": "2025年3月至9月无评价记录", "reasons": "违反第六章第三条",
        "delivery": "DELIVERY_WRITTEN"})["case"]


def test_a_decision_waits_for_the_statement_period_across_the_holidays(uow, clock):
    inspectors(uow, clock)
    clock.set(2025, 9, 26)  # a Friday before National Day
    case_id = case_with_findings(uow, clock)
    notified = notify(uow, clock, case_id)
    assert notified["notice"]["statement_due"] == {"date": "2025-10-10"}
    assert notified["proposed_tier"] == rules.TIER_3
    clock.set(2025, 10, 10)
    before = stored(uow)
    with pytest.raises(FailedPrecondition) as refused:
        call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告,限期整改"})
    assert refused.value.reason == "STATEMENT_PERIOD_OPEN" and stored(uow) == before
    clock.set(2025, 10, 11)
    decided = call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告,限期整改"})
    decision = decided["case"]["decision"]
    assert decision["tier"] == rules.TIER_3 and decision["suspend_filing"]
    assert decision["review_due"] == {"date": "2025-10-31"}  # 11 Oct is a make-up working day
    [event] = uow.events("SanctionDecided")
    assert event["suspend_filing"] and event["integrity_record"] and event["publish"]
    assert not event.get("terminate_filing") and event["institution_id"] == uscc(7)
    assert event["rectification_due"] == decided["case"]["rectification"]["due_on"]


def test_a_waiver_lets_the_decision_come_early_and_the_institution_sees_only_its_own(uow, clock):
    inspectors(uow, clock)
    case_id = case_with_findings(uow, clock)
    notify(uow, clock, case_id)
    other = caller("institution", institution_id=uscc(8))
    with pytest.raises(PermissionDenied):
        call(uow, clock, handlers.get_case, {"case_id": case_id}, other)
    with pytest.raises(PermissionDenied):
        call(uow, clock, handlers.state_case, {"request_id": "s", "case_id": case_id,
                                               "waive": True}, other)
    own = caller("institution", institution_id=uscc(7))
    stated = call(uow, clock, handlers.state_case, {
        "request_id": "s1", "case_id": case_id, "statement": "我们已恢复评价", "waive": True}, own)
    assert stated["case"]["state"] == rules.AWAITING
    assert call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告"})["case"][
        "state"] == rules.DECIDED
    assert [c["case_id"] for c in call(uow, clock, handlers.list_cases, {}, own)["cases"]] == [
        case_id]


def test_tier_4_terminates_voids_certificates_and_black_lists(uow, clock):
    inspectors(uow, clock)
    case_id = case_with_findings(uow, clock, ("ch.6 art.4(5)",))
    notify(uow, clock, case_id)
    clock.current += timedelta(days=14)
    call(uow, clock, handlers.decide, {
        "case_id": case_id, "summary": "终止备案",
        "certificates": {"exam_session_id": "2025-06-A"}})
    [event] = uow.events("SanctionDecided")
    assert event["tier"] == rules.TIER_4 and event["terminate_filing"] and event["black_list"]
    assert event["certificates"] == {"exam_session_id": "2025-06-A",
                                     "reason": "INVALIDATION_REASON_FRAUD"}
    results = call(uow, clock, handlers.list_published_results, {}, None)["results"]
    assert results[0]["tier"] == rules.TIER_4 and results[0]["findings"][0].startswith(
        "ch.6 art.4(5)")


def test_a_decision_heavier_than_notified_or_missing_its_effects_is_refused(uow, clock):
    inspectors(uow, clock)
    case_id = case_with_findings(uow, clock, ("ch.6 art.1(2)",))
    notify(uow, clock, case_id)
    clock.current += timedelta(days=14)
    before = stored(uow)
    with pytest.raises(InvalidArgument, match="certificate_numbers"):
        call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "成绩无效"})
    with pytest.raises(InvalidArgument, match="heavier"):
        call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "x",
                                           "tier": rules.TIER_3})
    assert stored(uow) == before
    call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "成绩无效",
                                       "certificates": {"certificate_numbers": ["s1"]}})
    assert uow.events("SanctionDecided")[0]["certificates"] == {
        "certificate_numbers": ["S1"], "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT"}


def rectified_warning(uow, clock):
    case_id = case_with_findings(uow, clock)
    notify(uow, clock, case_id)
    clock.current += timedelta(days=14)
    call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告"})
    own = caller("institution", institution_id=uscc(7))
    call(uow, clock, handlers.submit_rectification,
         {"request_id": "r1", "case_id": case_id, "report": "已整改"}, own)
    call(uow, clock, handlers.accept_rectification, {"case_id": case_id, "accept": True})
    return case_id


def test_rectification_accepted_then_a_tier3_act_proposes_tier_4(uow, clock):
    inspectors(uow, clock, 4)
    first = rectified_warning(uow, clock)
    [accepted] = uow.events("RectificationAccepted")
    decision_id = uow.repo.get(InspectionCase, first).decision["decision_id"]
    assert accepted["decision_id"] == decision_id
    # the next case's team must differ from the last one (INSP-000/001 inspected it)
    with pytest.raises(FailedPrecondition, match="LAST_TEAM"):
        case_with_findings(uow, clock)
    answer = call(uow, clock, handlers.open_case, {
        "request_id": "second", "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(7), "kind": "INSPECTION_KIND_SPECIAL",
        "origin": "CASE_ORIGIN_PLAN", "inspector_ids": ["INSP-002", "INSP-003"]})
    finding = call(uow, clock, handlers.record_finding, {
        "request_id": "f2", "case_id": answer["case"]["case_id"], "article": "ch.6 art.3(2)",
        "summary": "未在规定地点组织评价"})["finding"]
    assert finding["tier"] == rules.TIER_4
    assert finding["escalation_basis"] == "ch.6 art.4(6)"
    assert finding["escalated_after_decision"] == decision_id


def test_a_missed_rectification_deadline_is_a_tier3_finding_in_a_new_case(uow, clock):
    inspectors(uow, clock)
    case_id = case_with_findings(uow, clock)
    notify(uow, clock, case_id)
    clock.current += timedelta(days=14)
    decided = call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告",
                                                 "rectification_due": "2025-10-31"})
    assert decided["case"]["rectification"]["due_on"] == "2025-10-31"
    clock.set(2025, 10, 31)
    handlers.sweep(uow.begin(), clock, SETTINGS)
    assert uow.events("RectificationOverdue") == []
    clock.set(2025, 11, 3)
    done = handlers.sweep(uow.begin(), clock, SETTINGS)
    uow.publish()
    assert done["overdue"] == 1
    [overdue] = uow.events("RectificationOverdue")
    follow = uow.repo.get(InspectionCase, overdue["new_case_id"])
    assert follow.origin == rules.ORIGIN_ANOMALY and follow.trigger_ids == [
        decided["case"]["decision"]["decision_id"]]
    assert [f["article"] for f in follow.findings] == ["ch.6 art.3(5)"]
    assert handlers.sweep(uow.begin(), clock, SETTINGS)["overdue"] == 0  # once


def test_review_within_15_working_days_and_an_overturn_reverses(uow, clock):
    inspectors(uow, clock)
    case_id = case_with_findings(uow, clock)
    notify(uow, clock, case_id)
    clock.set(2025, 9, 30)
    call(uow, clock, handlers.decide, {"case_id": case_id, "summary": "警告"})
    own = caller("institution", institution_id=uscc(7))
    clock.set(2025, 10, 29)  # the review period ended on 28 October
    before = stored(uow)
    with pytest.raises(FailedPrecondition) as refused:
        call(uow, clock, handlers.request_review, {"case_id": case_id, "grounds": "事实不清"},
             own)
    assert refused.value.reason == "REVIEW_PERIOD_OVER" and stored(uow) == before
    clock.set(2025, 10, 28)
    call(uow, clock, handlers.request_review, {"case_id": case_id, "grounds": "事实不清"}, own)
    call(uow, clock, handlers.decide_review, {"case_id": case_id,
                                              "outcome": rules.OVERTURNED, "reasons": "证据不足"})
    [reversed_] = uow.events("DecisionReversed")
    case = uow.repo.get(InspectionCase, case_id)
    assert reversed_["decision_id"] == case.decision["decision_id"]
    assert case.rectification["state"] == rules.RECT_VOID and case.state == rules.CLOSED


# --- complaints and triggers ------------------------------------------------------------------------
def test_a_complaint_opens_a_special_case_and_the_caller_is_rate_limited(uow, clock):
    request = {"subject_kind": "SUBJECT_KIND_UNAPPROVED_CERTIFIER",
               "subject_id": "https://example.cn/zhengshu", "category": "certificate_sale",
               "description": "网站出售“国家职业资格证书”,包过", "contact": "138****0000"}
    first = call(uow, clock, handlers.file_complaint, {**request, "request_id": "c1"}, None)
    second = call(uow, clock, handlers.file_complaint, {**request, "request_id": "c2"}, None)
    assert first["case_id"] == second["case_id"]  # joins the open special case
    case = uow.repo.get(InspectionCase, first["case_id"])
    assert case.origin == rules.ORIGIN_COMPLAINT and len(case.trigger_ids) == 2
    [filed, _] = uow.events("ComplaintFiled")
    assert "contact" not in filed
    settings = InspectionSettings(complaints_per_hour=1)
    someone = caller("trainee")
    call(uow, clock, handlers.file_complaint, {**request, "request_id": "t1"}, someone, settings)
    before = stored(uow)
    with pytest.raises(ResourceExhausted):
        call(uow, clock, handlers.file_complaint, {**request, "request_id": "t2"}, someone,
             settings)
    assert stored(uow) == before
    clock.current += timedelta(hours=1, seconds=1)
    call(uow, clock, handlers.file_complaint, {**request, "request_id": "t3"}, someone, settings)


def meta(event_id="e1", sequence=1):
    return types_pb2.EventMeta(event_id=event_id, sequence=sequence)


def test_a_trigger_delivered_twice_at_once_opens_one_case(uow, clock):
    """The first delivery's case is written just after the second's lookups missed it: the
    second derives the same case id (the subject's special cases counted before the lookups)
    and its insert is refused, a Conflict retried later, never a second case for the trigger."""
    institutions(uow, 1)
    lapsed = filing_events.EvaluationLapsed(meta=meta("lapse-1"), institution_id=uscc(1),
                                            last_evaluation_on="2025-03-01", months=6)
    case_id = handlers.evaluation_lapsed(lapsed, uow.begin(), clock, SETTINGS)
    uow.flush()
    key = (InspectionCase, case_id)
    first = uow.repo.store.pop(key)
    lookup = uow.repo.open_special_case

    def first_lands_meanwhile(*args):
        found = lookup(*args)
        uow.repo.store[key] = first
        return found

    uow.repo.open_special_case = first_lands_meanwhile
    with pytest.raises(Conflict):
        handlers.evaluation_lapsed(lapsed, uow.begin(), clock, SETTINGS)
        uow.flush()
    assert [c.case_id for c in uow.repo.all(InspectionCase)] == [case_id]


def test_monitoring_anomalies_open_non_random_cases_with_their_trigger_ids(uow, clock):
    institutions(uow, 3)
    lapsed = filing_events.EvaluationLapsed(meta=meta("lapse-1"), institution_id=uscc(1),
                                            last_evaluation_on="2025-03-01", months=6)
    case_id = handlers.evaluation_lapsed(lapsed, uow.begin(), clock, SETTINGS)
    uow.flush()
    case = uow.repo.get(InspectionCase, case_id)
    assert case.origin == rules.ORIGIN_ANOMALY and case.trigger_ids == [
        "EvaluationLapsed:lapse-1"]
    proposal = filing_events.TerminationProposed(meta=meta("tp"), institution_id=uscc(1),
                                                 proposal_id="prop-9", grounds=["ch.6 art.4(7)"])
    assert handlers.termination_proposed(proposal, uow.begin(), clock, SETTINGS) == case_id
    uow.flush()
    assert uow.repo.get(InspectionCase, case_id).trigger_ids[-1] == "TerminationProposed:prop-9"
    uow.repo.views[uscc(2)]["monthly_issued"] = {"2025-06": 30, "2025-07": 30, "2025-08": 30}

    def issued(batch, total, late=0):
        return certificate_events.CertificatesIssued(
            meta=meta(batch), batch_id=batch, institution_id=uscc(2), issued_on="2025-09-15",
            total=total, counts=[certificate_events.IssuedCount(count=total,
                                                                late_reported_count=late)])
    assert handlers.certificates_issued(issued("b1", 100), uow.begin(), clock, SETTINGS) is None
    burst = handlers.certificates_issued(issued("b2", 400), uow.begin(), clock, SETTINGS)
    uow.flush()
    assert uow.repo.get(InspectionCase, burst).trigger_ids == ["CertificatesIssued:b2"]
    late = handlers.certificates_issued(issued("b3", 5, late=5), uow.begin(), clock, SETTINGS)
    assert late == burst  # joins the same open case


def test_filing_status_events_apply_in_sequence_order(uow, clock):
    suspended = filing_events.InstitutionSuspended(meta=meta("s", 3), institution_id=uscc(4))
    filed = filing_events.InstitutionFiled(meta=meta("f", 1), institution_id=uscc(4),
                                           district_code="410502")
    handlers.filing_status_changed(suspended, uow, clock, SETTINGS)
    assert not handlers.filing_status_changed(filed, uow, clock, SETTINGS)
    assert uow.repo.views[uscc(4)]["status"] == "INSTITUTION_STATUS_SUSPENDED"
