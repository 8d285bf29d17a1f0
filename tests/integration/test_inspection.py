"""Inspection on the real broker with the real filing and certificates workers: filing's
register reaches the draw's pool by its events; inspection's decisions are applied by filing
(suspension until the rectification is accepted, termination undone on review) and by
certificates (a session voided, restored with a history entry); other services' facts
(certificates late or in a burst, filing's lapse and termination proposals, escrow's refund
complaints, courses' cheating) open special cases once, however often they are delivered.
Rules: seed 001 ch.5-6, seed 002."""
from __future__ import annotations

import uuid

import pytest
from nameko.standalone.events import event_dispatcher

from services.certificates import domain as certificates_domain
from tests.integration.test_filing_decisions_and_quotas import wait_for
from tests.integration.test_filing_lifecycle import file_institution
from tests.support import token, uscc


@pytest.fixture
def filing(start_service):
    """Filing with room for every test institution in one district (quota 3 by default)."""
    from services.filing.service import FilingService
    return start_service(FilingService, FILING_DISTRICT_QUOTA=100)


@pytest.fixture
def inspection(start_service):
    from services.inspection.service import InspectionService
    return start_service(InspectionService)


@pytest.fixture
def certificates(start_service, filing):
    from services.certificates.service import CertificateRegistryService
    return start_service(CertificateRegistryService)


def inspectors(rpc_as, n=4):
    regulator = rpc_as(token("regulator")).inspection
    for j in range(n):
        regulator.RegisterInspector({
            "request_id": f"i-{j}", "inspector_id": f"INSP-{j}", "name": f"检查员{j}",
            "employer_id": uscc(900 + j), "employer_name": "安阳市职业技能鉴定指导中心",
            "region": "410500"})
    return [f"INSP-{j}" for j in range(n)]


def decided_case(rpc_as, n, article, team, **decide):
    regulator = rpc_as(token("regulator")).inspection
    case_id = regulator.OpenCase({
        "request_id": f"open-{n}", "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(n), "kind": "INSPECTION_KIND_SPECIAL", "origin": "CASE_ORIGIN_PLAN",
        "inspector_ids": team})["case"]["case_id"]
    regulator.RecordFinding({"request_id": f"f-{n}", "case_id": case_id, "article": article,
                             "summary": "检查发现"})
    regulator.CompleteInspection({"case_id": case_id})
    regulator.NotifyIntendedDecision({"case_id": case_id, "facts": "f", "reasons": "r",
                                      "delivery": "DELIVERY_PUBLIC_NOTICE"})
    rpc_as(token("institution", n)).inspection.StateCase(
        {"request_id": f"w-{n}", "case_id": case_id, "waive": True})
    case = regulator.Decide({"case_id": case_id, "summary": "决定", **decide})["case"]
    return case_id, case["decision"]["decision_id"]


def status(regulator, n):
    return regulator.GetInstitution({"institution_id": uscc(n)})["institution"]["status"]


def test_filings_reach_the_pool_and_a_draw_verifies(filing, inspection, rpc_as, regulator,
                                                     clock):
    clock.set(2025, 9, 15)
    for n in range(1, 6):
        file_institution(rpc_as, regulator, n)
    inspectors(rpc_as, 3)
    insp = rpc_as(token("regulator")).inspection
    plan_id = insp.CreatePlan({
        "request_id": "p", "year": 2025, "title": "计划", "content": "内容",
        "kinds": ["INSPECTION_KIND_DAILY"],
        "rounds": [{"round": 1, "half": 1, "window_from": "2025-01-01", "window_to": "2025-06-30"},
                   {"round": 2, "half": 2, "window_from": "2025-07-01",
                    "window_to": "2025-12-31"}]})["plan"]["plan_id"]
    wait_for(lambda: len(inspection_pool(rpc_as)) == 5, "the five filings in inspection")
    draw = insp.CommitDraw({"request_id": "c1", "plan_id": plan_id, "round": 2,
                            "seed_source": "福彩3D 2025年第250期", "seed_available_on":
                                "2025-09-15"})["draw"]
    assert draw["summary"]["pool_institutions"] == 5
    revealed = insp.RevealDraw({"draw_id": draw["summary"]["draw_id"], "seed_value": "123"})
    assert len(revealed["draw"]["drawn"]) == 1  # ungraded 10 % of 5, rounded up
    assert rpc_as().inspection.VerifyDraw({"draw_id": draw["summary"]["draw_id"]})["verified"]


def inspection_pool(rpc_as):
    from services.inspection.models import InspectedInstitution
    return list(InspectedInstitution.objects(status="INSTITUTION_STATUS_ACTIVE"))


def test_a_warning_and_a_termination_take_effect_in_filing_and_certificates_once(
        filing, certificates, inspection, rpc_as, regulator, clock):
    clock.set(2025, 9, 15)
    file_institution(rpc_as, regulator, 7)
    file_institution(rpc_as, regulator, 8)
    rows = [{"row_ref": f"r{i}", "holder_name": "张三丰",
             "holder_id_number": (f := f"41050219900307{i:03d}") +
             certificates_domain.id_check_character(f),
             "occupation_code": "4-10-01-02", "skill_level": 4} for i in range(3)]
    issued = rpc_as(token("institution", 8)).certificates.IssueCertificates(
        {"exam_session_id": "S-1", "assessment_date": "2025-09-15", "rows": rows})
    assert issued["issued_count"] == 3, issued
    numbers = [r["certificate_number"] for r in issued["results"]]
    team = inspectors(rpc_as, 4)

    _, warning = decided_case(rpc_as, 7, "ch.6 art.3(3)", team[:2])
    wait_for(lambda: status(regulator, 7) == "INSTITUTION_STATUS_SUSPENDED", "suspension")
    own = rpc_as(token("institution", 7)).inspection
    insp = rpc_as(token("regulator")).inspection
    case_id = insp.ListCases({"institution_id": uscc(7)})["cases"][0]["case_id"]
    own.SubmitRectification({"request_id": "r", "case_id": case_id, "report": "整改完成"})
    insp.AcceptRectification({"case_id": case_id, "accept": True})
    wait_for(lambda: status(regulator, 7) == "INSTITUTION_STATUS_ACTIVE", "reinstatement")

    term_case, termination = decided_case(rpc_as, 8, "ch.6 art.4(5)", team[2:],
                                          certificates={"exam_session_id": "S-1"})
    wait_for(lambda: status(regulator, 8) == "INSTITUTION_STATUS_TERMINATED", "termination")
    registry = rpc_as(token("regulator")).certificates
    wait_for(lambda: all(registry.GetCertificate({"certificate_number": n})["certificate"][
        "status"] == "CERTIFICATE_STATUS_INVALIDATED" for n in numbers), "session voided")
    # the same decision's event again (a republish) changes nothing more
    case = insp.GetCase({"case_id": term_case})["case"]
    dispatch = event_dispatcher(filing.config)
    dispatch("inspection", "SanctionDecided", {
        "meta": {"event_id": uuid.uuid4().hex}, "decision_id": termination, "case_id": term_case,
        "institution_id": uscc(8), "tier": "SANCTION_TIER_TERMINATION",
        "terminate_filing": True, "certificates": {"exam_session_id": "S-1"}})
    own8 = rpc_as(token("institution", 8)).inspection
    own8.RequestReview({"case_id": term_case, "grounds": "证据不足"})
    insp.DecideReview({"case_id": term_case, "outcome": "REVIEW_OUTCOME_OVERTURNED",
                       "reasons": "证据不足"})
    wait_for(lambda: status(regulator, 8) == "INSTITUTION_STATUS_ACTIVE", "termination undone")
    restored = wait_for(lambda: (c := registry.GetCertificate({"certificate_number": numbers[0]})[
        "certificate"])["status"] == "CERTIFICATE_STATUS_VALID" and c, "certificates restored")
    assert [h["event"] for h in restored["history"]] == ["RESTORED"]
    assert restored["history"][0]["decision_ref"] == termination == case["decision"]["decision_id"]
    history = regulator.GetInstitution({"institution_id": uscc(8)})["institution"]["history"]
    assert [h["status"] for h in history].count("INSTITUTION_STATUS_TERMINATED") == 1
    assert warning != termination


def event(**fields) -> dict:
    return {"meta": {"event_id": uuid.uuid4().hex, "source": "test", "sequence": 1}, **fields}


def test_others_facts_open_special_cases_once(inspection, rpc_as, clock):
    clock.set(2025, 9, 15)
    dispatch = event_dispatcher(inspection.config)
    lapsed = event(institution_id=uscc(21), last_evaluation_on="2025-03-01", months=6)
    for _ in range(2):  # delivered twice
        dispatch("filing", "EvaluationLapsed", lapsed)
    insp = rpc_as(token("regulator")).inspection
    # The second trigger of the same subject once the first's case is open: two at the same
    # instant race for the one case (the loser's Conflict is retried), which this test does
    # not time.
    wait_for(lambda: insp.ListCases({})["cases"], "the first special case")
    dispatch("filing", "TerminationProposed", event(institution_id=uscc(21),
                                                    proposal_id="prop-1",
                                                    grounds=["fewer than 500 in 12 months"]))
    dispatch("certificates", "CertificatesIssued", event(
        batch_id="b-late", institution_id=uscc(22), issued_on="2025-09-15", total=3,
        counts=[{"occupation_code": "4-10-01-02", "skill_level": 4, "count": 3,
                 "late_reported_count": 3}]))
    dispatch("escrow", "RefundComplaintFiled", event(complaint_id="rc-1",
                                                     institution_id=uscc(23)))
    dispatch("courses", "CheatingConfirmed", event(case_id="cc-1", provider_id="platform-9",
                                                   course_id="c", employer_id="e"))

    def cases():
        return {c["subject_id"]: c for c in insp.ListCases({})["cases"]}

    found = wait_for(lambda: len(c := cases()) == 4 and len(c[uscc(21)]["trigger_ids"]) == 2
                     and c, "four special cases")
    assert sorted(found[uscc(21)]["trigger_ids"]) == sorted([
        f"EvaluationLapsed:{lapsed['meta']['event_id']}", "TerminationProposed:prop-1"])
    assert found[uscc(22)]["trigger_ids"] == ["CertificatesIssued:b-late"]
    assert found[uscc(23)]["origin"] == "CASE_ORIGIN_MONITORING_ANOMALY"
    assert found["platform-9"]["subject_kind"] == "SUBJECT_KIND_ONLINE_PLATFORM"
    assert all(c["kind"] == "INSPECTION_KIND_SPECIAL" for c in found.values())


def test_the_sweep_escalation_and_lists_on_the_database(inspection, rpc_as, clock):
    """The queries the fake unit of work stands in for, on the real database: the sweep's
    clocks, the accepted warnings behind an escalation, the outcome filter, the draw list."""
    from nameko.testing.services import entrypoint_hook

    clock.set(2025, 9, 15)
    team = inspectors(rpc_as, 4)
    _, warning = decided_case(rpc_as, 31, "ch.6 art.3(3)", team[:2],
                              rectification_due="2025-09-30")
    insp = rpc_as(token("regulator")).inspection
    case_id = insp.ListCases({"institution_id": uscc(31)})["cases"][0]["case_id"]
    clock.set(2025, 10, 9)  # the deadline passed without a report
    with entrypoint_hook(inspection, "sweep") as sweep:
        assert sweep() == {"awaiting_decision": 0, "final": 0, "overdue": 1}
        assert sweep()["overdue"] == 0
    case = insp.GetCase({"case_id": case_id})["case"]
    follow = insp.GetCase({"case_id": case["rectification"]["overdue_case_id"]})["case"]
    assert [f["article"] for f in follow["findings"]] == ["ch.6 art.3(5)"]
    assert follow["trigger_ids"] == [warning]
    # a warning whose rectification was accepted makes the next tier-3 act propose tier 4
    clock.set(2025, 10, 10)
    _, second = decided_case(rpc_as, 32, "ch.6 art.3(8)", team[:2])
    second_case = insp.ListCases({"institution_id": uscc(32)})["cases"][0]["case_id"]
    rpc_as(token("institution", 32)).inspection.SubmitRectification(
        {"request_id": "r32", "case_id": second_case, "report": "已变更备案"})
    insp.AcceptRectification({"case_id": second_case, "accept": True})
    again = insp.OpenCase({
        "request_id": "again-32", "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(32), "kind": "INSPECTION_KIND_DAILY", "origin": "CASE_ORIGIN_PLAN",
        "inspector_ids": team[2:]})["case"]["case_id"]
    finding = insp.RecordFinding({"request_id": "again-f", "case_id": again,
                                  "article": "ch.6 art.3(2)", "summary": "异地评价"})["finding"]
    assert finding["tier"] == "SANCTION_TIER_TERMINATION"
    assert finding["escalated_after_decision"] == second
    assert insp.ListCases({"state": "CASE_STATE_OPEN", "institution_id": uscc(32)})[
        "cases"][0]["case_id"] == again
