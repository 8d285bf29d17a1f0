"""Issue 12 through gRPC over the real broker: grpcio -> edge -> RabbitMQ -> the inspection
worker, with the REAL filing and certificates workers (their own APIs show the effects).

One clocked platform serves the module; each test uses its own institution numbers (12xx)
and its own plan, so tests do not depend on their order. Rules: seed 001 ch.4-6, seed 002.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import grpc
import pytest
from vocreg.inspection.v1 import inspection_pb2, inspection_pb2_grpc

from services.common.identifiers import id_check_character
from services.common.workdays import SHANGHAI
from tests.e2e.grpc_client import Certificates, Client, Filing, status_of
from tests.platform import ROOT, Platform, eventually
from tests.support import PASSED_EVALUATION, application_request, token, uscc

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
TIER_3, TIER_4 = "SANCTION_TIER_WARNING", "SANCTION_TIER_TERMINATION"


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("inspection"),
                       services=("filing", "certificates", "inspection"), clock=True,
                       FILING_DISTRICT_QUOTA=100, FILING_CITY_QUOTA=1000).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0, "worker-certificates": 0,
                     "worker-inspection": 0}, f"unclean shutdown {codes}:\n{started.logs()}"


class Inspection(Client):
    def __init__(self, channel, role=None, institution_n=None, metadata=None, sub=None):
        if sub is not None:
            metadata = (("authorization", f"Bearer {token(role, institution_n, sub=sub)}"),)
        super().__init__(inspection_pb2_grpc.InspectionServiceStub, inspection_pb2, channel,
                         role, institution_n, metadata)


def at(plat, year, month, day, hour=10):
    plat.set_clock(datetime(year, month, day, hour, tzinfo=SHANGHAI))


def file_institution(plat, n: int) -> str:
    request = application_request(n)
    app = Filing(plat.channel, "institution", n).SubmitApplication(request)["application"]
    regulator = Filing(plat.channel, "regulator")
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    answer = regulator.DecideApplication({"application_id": app["application_id"],
                                          "outcome": "DECISION_OUTCOME_FILE",
                                          "evaluation": PASSED_EVALUATION})
    assert answer["application"]["state"] == "APPLICATION_STATE_FILED", answer
    return uscc(n)


def holder(i: int) -> str:
    first17 = f"41050219900307{i:03d}"
    return first17 + id_check_character(first17)


def issue(plat, n: int, session: str, assessed: str, count: int = 2) -> list[str]:
    """Certificates of institution n for one exam session; their numbers."""
    rows = [{"row_ref": f"t{i}", "holder_name": "张三丰", "holder_id_number": holder(i),
             "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}
            for i in range(count)]
    answer = Certificates(plat.channel, "institution", n).IssueCertificates(
        {"exam_session_id": session, "assessment_date": assessed, "rows": rows})
    assert answer["issued_count"] == count, answer
    return [r["certificate_number"] for r in answer["results"]]


def certificate(plat, number: str) -> dict:
    return Certificates(plat.channel, "regulator").GetCertificate(
        {"certificate_number": number})["certificate"]


def filing_status(plat, n: int) -> str:
    return Filing(plat.channel, "regulator").GetInstitution(
        {"institution_id": uscc(n)})["institution"]["status"]


def register_inspectors(plat, prefix: str, n: int = 4):
    regulator = Inspection(plat.channel, "regulator")
    for j in range(n):
        regulator.RegisterInspector({
            "request_id": f"{prefix}-{j}", "inspector_id": f"{prefix}-{j}", "name": f"检查员{j}",
            "employer_id": uscc(9000 + j), "employer_name": "安阳市职业技能鉴定指导中心",
            "region": "410500"})
    return [f"{prefix}-{j}" for j in range(n)]


def create_plan(plat, rid: str) -> str:
    return Inspection(plat.channel, "regulator").CreatePlan({
        "request_id": rid, "year": 2026, "title": "2026年度社评机构监管计划",
        "content": "评价范围、考务管理、证书数据", "focus": ["证书数据上报"],
        "kinds": ["INSPECTION_KIND_DAILY", "INSPECTION_KIND_SPECIAL"],
        "rounds": [{"round": 1, "half": 1, "window_from": "2026-04-01", "window_to": "2026-06-30"},
                   {"round": 2, "half": 2, "window_from": "2026-07-01",
                    "window_to": "2026-12-31"}]})["plan"]["plan_id"]


def open_case(plat, n: int, rid: str, inspectors, article: str) -> str:
    regulator = Inspection(plat.channel, "regulator")
    case = regulator.OpenCase({
        "request_id": rid, "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(n), "kind": "INSPECTION_KIND_SPECIAL", "origin": "CASE_ORIGIN_PLAN",
        "inspector_ids": inspectors})["case"]
    inspector = Inspection(plat.channel, "inspector", sub=inspectors[0])
    inspector.RecordFinding({"request_id": f"{rid}-f", "case_id": case["case_id"],
                             "article": article, "summary": "检查发现的问题"})
    inspector.CompleteInspection({"case_id": case["case_id"], "summary": "现场检查"})
    regulator.NotifyIntendedDecision({"case_id": case["case_id"], "facts": "事实",
                                      "reasons": "理由", "delivery": "DELIVERY_WRITTEN"})
    return case["case_id"]


# --- the draw -------------------------------------------------------------------------------------
def test_a_draw_is_committed_revealed_verified_by_the_standalone_script_and_recused(plat, tmp_path):
    at(plat, 2026, 3, 2)
    for n in range(1201, 1211):
        file_institution(plat, n)
    inspectors = register_inspectors(plat, "D", 5)
    regulator = Inspection(plat.channel, "regulator")
    plan_id = create_plan(plat, "plan-draw")
    at(plat, 2026, 7, 1)

    filed = [uscc(n) for n in range(1201, 1211)]
    eventually(lambda: plat.db("inspection").institutions.count_documents(
        {"_id": {"$in": filed}, "status": "INSTITUTION_STATUS_ACTIVE"}) == 10,
        what="the filings known to inspection (filing's events)")
    committed = regulator.CommitDraw({
        "request_id": "draw-1", "plan_id": plan_id, "round": 2,
        "seed_source": "福彩3D 2026年第180期开奖号码", "seed_available_on": "2026-07-01"})
    assert committed["draw"]["summary"]["pool_institutions"] >= 10
    draw_id = committed["draw"]["summary"]["draw_id"]
    public = Inspection(plat.channel)
    assert public.GetDraw({"draw_id": draw_id})["draw"]["summary"]["state"] == \
        "DRAW_STATE_COMMITTED"
    revealed = regulator.RevealDraw({"draw_id": draw_id, "seed_value": "5 2 8"})["draw"]
    assert revealed["summary"]["seed_value"] == "5 2 8" and revealed["drawn"]
    assert all(len(d["inspector_ids"]) == 2 for d in revealed["drawn"])
    code, _ = status_of(regulator.RevealDraw, {"draw_id": draw_id, "seed_value": "5 2 9"})
    assert code == Code.FAILED_PRECONDITION
    assert status_of(regulator.RevealDraw, {"draw_id": "no-such-draw",
                                             "seed_value": "1"})[0] == Code.NOT_FOUND
    [listed] = public.ListDraws({"plan_id": plan_id})["draws"]
    assert listed["drawn_count"] == len(revealed["drawn"]) and listed["seed_value"] == "5 2 8"
    verified = public.VerifyDraw({"draw_id": draw_id})
    assert verified["verified"] and verified["pool_matches"] and verified["result_matches"]

    target = revealed["drawn"][0]
    recused = regulator.Recuse({"draw_id": draw_id, "institution_id": target["institution_id"],
                                "inspector_id": target["inspector_ids"][0], "reason": "亲属关系"})
    assert target["inspector_ids"][0] not in recused["inspection"]["inspector_ids"]
    after = public.GetDraw({"draw_id": draw_id})
    assert [d["inspector_ids"] for d in after["draw"]["drawn"][1:]] == [
        d["inspector_ids"] for d in revealed["drawn"][1:]]
    record = tmp_path / "record.json"
    record.write_text(json.dumps(after))
    script = ROOT / "services" / "inspection" / "verify_draw.py"
    checked = subprocess.run([sys.executable, "-I", str(script), str(record)],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    case = regulator.GetCase({"case_id": target["case_id"]})["case"]
    assert case["origin"] == "CASE_ORIGIN_RANDOM_DRAW" and case["inspector_ids"] == \
        recused["inspection"]["inspector_ids"]
    # the team's inspectors may record findings; another inspector may not
    outsider = next(i for i in inspectors if i not in case["inspector_ids"])
    assert status_of(Inspection(plat.channel, "inspector", sub=outsider).RecordFinding, {
        "request_id": "x", "case_id": target["case_id"], "article": "ch.6 art.2(8)",
        "summary": "s"})[0] == Code.PERMISSION_DENIED


# --- tier 3 and tier 4, observed in filing's and certificates' own APIs ----------------------------
def test_a_warning_suspends_the_filing_until_the_rectification_is_accepted(plat):
    at(plat, 2026, 3, 2)
    file_institution(plat, 1221)
    inspectors = register_inspectors(plat, "W", 2)
    at(plat, 2026, 9, 25)  # a Friday before National Day 2026
    case_id = open_case(plat, 1221, "warn", inspectors, "ch.6 art.3(3)")
    regulator = Inspection(plat.channel, "regulator")
    notice = regulator.GetCase({"case_id": case_id})["case"]["notice"]
    assert notice["statement_due"]["date"] == "2026-10-09"  # 5 working days across 1-7 Oct
    at(plat, 2026, 10, 9)
    code, message = status_of(regulator.Decide, {"case_id": case_id, "summary": "警告"})
    assert code == Code.FAILED_PRECONDITION and "statement period" in message
    assert regulator.GetCase({"case_id": case_id})["case"]["state"] == "CASE_STATE_NOTIFIED"
    other = Inspection(plat.channel, "institution", 1222)
    assert status_of(other.GetCase, {"case_id": case_id})[0] == Code.PERMISSION_DENIED
    at(plat, 2026, 10, 10)  # a Saturday, and a make-up working day
    decided = regulator.Decide({"case_id": case_id, "summary": "警告,限期整改"})["case"]
    assert decided["decision"]["tier"] == TIER_3 and decided["decision"]["suspend_filing"]
    eventually(lambda: filing_status(plat, 1221) == "INSTITUTION_STATUS_SUSPENDED",
               what="filing suspended by the decision")
    refused = eventually(lambda: status_of(
        Certificates(plat.channel, "institution", 1221).IssueCertificates,
        {"exam_session_id": "2026-10-A", "assessment_date": "2026-10-09", "rows": [
            {"row_ref": "t", "holder_name": "张三丰", "holder_id_number": holder(1),
             "occupation_code": "4-10-01-02", "skill_level": 4}]}),
        what="certificates refusing a suspended institution")
    assert refused[0] == Code.FAILED_PRECONDITION and "suspended" in refused[1]
    own = Inspection(plat.channel, "institution", 1221)
    own.SubmitRectification({"request_id": "rect-1", "case_id": case_id, "report": "已整改"})
    regulator.AcceptRectification({"case_id": case_id, "accept": True})
    eventually(lambda: filing_status(plat, 1221) == "INSTITUTION_STATUS_ACTIVE",
               what="filing reinstated on the accepted rectification")
    results = Inspection(plat.channel).ListPublishedResults({"institution_id": uscc(1221)})
    assert results["results"][0]["tier"] == TIER_3


def test_a_termination_voids_the_session_and_is_reversed_on_review_everywhere(plat):
    at(plat, 2026, 3, 2)
    file_institution(plat, 1231)
    at(plat, 2026, 5, 20)
    voided = issue(plat, 1231, "2026-05-A", "2026-05-18")
    kept = issue(plat, 1231, "2026-05-B", "2026-05-19")
    inspectors = register_inspectors(plat, "T", 2)
    at(plat, 2026, 6, 1)
    case_id = open_case(plat, 1231, "term", inspectors, "ch.6 art.4(5)")
    own = Inspection(plat.channel, "institution", 1231)
    own.StateCase({"request_id": "waive", "case_id": case_id, "statement": "无异议",
                   "waive": True})
    regulator = Inspection(plat.channel, "regulator")
    regulator.Decide({"case_id": case_id, "summary": "终止备案,证书作废",
                      "certificates": {"exam_session_id": "2026-05-A"}})
    eventually(lambda: filing_status(plat, 1231) == "INSTITUTION_STATUS_TERMINATED",
               what="filing terminated")
    ended = eventually(lambda: (c := certificate(plat, voided[0]))["status"] ==
                       "CERTIFICATE_STATUS_INVALIDATED" and c, what="certificates voided")
    decision_id = regulator.GetCase({"case_id": case_id})["case"]["decision"]["decision_id"]
    assert ended["invalidation"]["reason"] == "INVALIDATION_REASON_FRAUD"
    assert ended["invalidation"]["decision_ref"] == decision_id
    assert certificate(plat, kept[0])["status"] == "CERTIFICATE_STATUS_VALID"
    verified = Certificates(plat.channel).VerifyCertificate(
        {"certificate_number": voided[1], "holder_name": "张三丰"})
    assert verified["result"] == "VERIFICATION_RESULT_INVALIDATED"
    at(plat, 2026, 6, 24)  # 16 working days later (the Dragon Boat Festival on 19 June)
    code, _ = status_of(own.RequestReview, {"case_id": case_id, "grounds": "证据不足"})
    assert code == Code.FAILED_PRECONDITION
    at(plat, 2026, 6, 23)
    own.RequestReview({"case_id": case_id, "grounds": "证据不足"})
    regulator.DecideReview({"case_id": case_id, "outcome": "REVIEW_OUTCOME_OVERTURNED",
                            "reasons": "证据不足"})
    eventually(lambda: filing_status(plat, 1231) == "INSTITUTION_STATUS_ACTIVE",
               what="termination undone")
    restored = eventually(lambda: (c := certificate(plat, voided[0]))["status"] ==
                          "CERTIFICATE_STATUS_VALID" and c, what="certificates restored")
    [entry] = restored["history"]
    assert entry["event"] == "RESTORED" and entry["decision_ref"] == decision_id
    assert entry["previous_status"] == "CERTIFICATE_STATUS_INVALIDATED"
    assert "reversed on review" in entry["reason"] and "证据不足" in entry["reason"]


# --- complaints, roles, bad input -------------------------------------------------------------------
def test_an_anonymous_complaint_opens_a_special_case_without_personal_data(plat):
    public = Inspection(plat.channel)
    answer = public.FileComplaint({
        "request_id": "anon-1", "subject_kind": "SUBJECT_KIND_ONLINE_PLATFORM",
        "subject_id": "https://peixun.example.cn", "category": "fake_training",
        "description": "刷课骗取培训补贴,联系人13812345678", "contact": "13812345678"})
    case = Inspection(plat.channel, "regulator").GetCase({"case_id": answer["case_id"]})["case"]
    assert case["origin"] == "CASE_ORIGIN_COMPLAINT" and case["kind"] == "INSPECTION_KIND_SPECIAL"
    assert "13812345678" not in json.dumps(case, ensure_ascii=False)


def test_a_special_action_case_ends_in_outcomes_with_amounts_listed_by_outcome(plat):
    at(plat, 2026, 8, 3)
    regulator = Inspection(plat.channel, "regulator")
    subject = {"subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION", "subject_id": uscc(1290),
               "subject_name": "安阳某职业培训学校"}
    case_id = regulator.OpenCase({"request_id": "special-1", **subject,
                                  "kind": "INSPECTION_KIND_SPECIAL",
                                  "origin": "CASE_ORIGIN_COMPLAINT", "trigger_ids": ["审计线索-7"],
                                  "inspector_ids": register_inspectors(plat, "S", 2)})[
        "case"]["case_id"]
    code, message = status_of(regulator.RecordFinding, {
        "request_id": "sf-0", "case_id": case_id, "article": "ch.6 art.3(3)", "summary": "s"})
    assert code == Code.INVALID_ARGUMENT and "002" in message
    regulator.RecordFinding({"request_id": "sf-1", "case_id": case_id,
                             "article": "002 §二(三)1", "summary": "编造上课记录骗取培训补贴"})
    regulator.CompleteInspection({"case_id": case_id})
    regulator.NotifyIntendedDecision({"case_id": case_id, "facts": "f", "reasons": "r",
                                      "delivery": "DELIVERY_PUBLIC_NOTICE"})
    at(plat, 2026, 8, 20)
    assert status_of(regulator.Decide, {"case_id": case_id, "summary": "x"})[0] == \
        Code.INVALID_ARGUMENT  # no tier of ch.6 applies: the outcomes are required
    decided = regulator.Decide({"case_id": case_id, "summary": "追回补贴,移出目录,罚款,移送司法",
                                "outcomes": [
        {"outcome": "CASE_OUTCOME_SUBSIDY_RECOVERED", "amount_fen": "12345600"},
        {"outcome": "CASE_OUTCOME_CATALOGUE_REMOVED"},
        {"outcome": "CASE_OUTCOME_ADMINISTRATIVE_PENALTY", "amount_fen": "5000000"},
        {"outcome": "CASE_OUTCOME_TRANSFERRED_TO_JUDICIAL", "authority": "安阳市公安局"},
        {"outcome": "CASE_OUTCOME_CASE_NOTICE_PUBLISHED"}]})["case"]
    assert decided["outcomes"][0]["amount_fen"] == "12345600"
    listed = regulator.ListCases({"subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION",
                                  "outcome": "CASE_OUTCOME_SUBSIDY_RECOVERED"})["cases"]
    assert [c["case_id"] for c in listed] == [case_id]
    assert regulator.ListCases({"outcome": "CASE_OUTCOME_TRANSFERRED_TO_DISCIPLINE",
                                "subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION"}).get(
        "cases", []) == []


@pytest.mark.parametrize("role, method, request_, code", [
    ("institution", "CreatePlan", {"request_id": "r"}, Code.PERMISSION_DENIED),
    (None, "Decide", {"case_id": "x"}, Code.UNAUTHENTICATED),
    ("regulator", "CreatePlan", {"request_id": "r", "year": 1999}, Code.INVALID_ARGUMENT),
    ("regulator", "CreatePlan", {"year": 2026}, Code.INVALID_ARGUMENT),
    ("regulator", "GetCase", {"case_id": "no-such-case"}, Code.NOT_FOUND),
    ("regulator", "RecordFinding", {"request_id": "r", "case_id": "c", "article": "art.9",
                                    "summary": "s"}, Code.INVALID_ARGUMENT),
    ("regulator", "CommitDraw", {"request_id": "r", "plan_id": "nope", "round": 1,
                                 "seed_source": "福彩3D 2026年第1期", "seed_available_on":
                                     "2026-12-31"}, Code.NOT_FOUND),
    ("regulator", "ListCases", {"page": {"page_size": 101}}, Code.INVALID_ARGUMENT),
])
def test_bad_calls_are_answered_precisely(plat, role, method, request_, code):
    at(plat, 2026, 6, 1)
    client = Inspection(plat.channel, role, 1299 if role == "institution" else None)
    assert status_of(getattr(client, method), request_)[0] == code


def test_a_request_id_reused_for_other_content_is_already_exists(plat):
    regulator = Inspection(plat.channel, "regulator")
    first = {"request_id": "reg-dup", "inspector_id": "DUP-1", "name": "甲",
             "employer_id": uscc(9500), "employer_name": "中心", "region": "410500"}
    answer = regulator.RegisterInspector(first)
    assert regulator.RegisterInspector(first) == answer
    assert status_of(regulator.RegisterInspector, {**first, "name": "乙"})[0] == \
        Code.ALREADY_EXISTS


def test_the_service_is_listed_by_reflection_with_every_rpc(plat):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(plat.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in answer.list_services_response.service}
    assert "vocreg.inspection.v1.InspectionService" in names
    methods = set(inspection_pb2.DESCRIPTOR.services_by_name["InspectionService"]
                  .methods_by_name)
    assert {"CreatePlan", "GetPlan", "RegisterInspector", "DeclareConflict", "ListInspectors",
            "CommitDraw", "RevealDraw", "VerifyDraw", "Recuse", "ListPublishedResults",
            "FileComplaint", "ListCases", "GetCase", "RecordFinding", "NotifyIntendedDecision",
            "StateCase", "Decide", "RequestReview", "DecideReview", "SubmitRectification",
            "AcceptRectification"} <= methods
