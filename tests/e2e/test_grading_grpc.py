"""Issue 11 through gRPC: grpcio -> edge -> RabbitMQ -> the grading worker, with the REAL filing
and certificate workers publishing the facts grading consumes (no stand-ins).

One clocked platform serves the module. The year run end to end (open, self-assess, review
with a platform fact overriding a declared value, publish, public query, appeal, revision,
black list, credit repair) grades 2025 with institutions 5xx; the bad inputs grade 2024 with
institutions 6xx, so the two do not depend on their order.
Rules: seeds 000, 001 ch.6-7, 003."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime

import grpc
import pytest
import rfc8785
from grpc_reflection.v1alpha import reflection_pb2
from vocreg.grading.v1 import grading_pb2, grading_pb2_grpc

from services.certificates import domain as cert_domain
from services.common.workdays import SHANGHAI
from tests import grading_support as gs
from tests.e2e.grpc_client import Certificates, Client, Filing, status_of
from tests.platform import Platform, eventually
from tests.support import PASSED_EVALUATION, application_request, token, uscc

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
GRADING = "vocreg.grading.v1.GradingService"


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("grading"),
                       services=("filing", "certificates", "grading"), clock=True,
                       FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0, "worker-certificates": 0, "worker-grading": 0}, \
        f"unclean shutdown {codes}:\n{started.logs()}"


def at(plat, year, month, day):
    plat.set_clock(datetime(year, month, day, 10, tzinfo=SHANGHAI))


def grading(plat, role=None, n=None, party_id=None) -> Client:
    metadata = () if role is None else (
        ("authorization", f"Bearer {token(role, n, party_id=party_id)}"),)
    return Client(grading_pb2_grpc.GradingServiceStub, grading_pb2, plat.channel,
                  metadata=metadata)


def file_institution(plat, n: int, on: tuple) -> None:
    at(plat, *on)
    app = Filing(plat.channel, "institution", n).SubmitApplication(
        application_request(n))["application"]
    regulator = Filing(plat.channel, "regulator")
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    regulator.DecideApplication({"application_id": app["application_id"],
                                 "outcome": "DECISION_OUTCOME_FILE",
                                 "evaluation": PASSED_EVALUATION})


def known_to_grading(plat, n: int) -> bool:
    return plat.db("grading")["institutions"].find_one(
        {"_id": uscc(n), "filed_on": {"$exists": True}}) is not None


def holder(i: int) -> str:
    first17 = f"41050219900307{i:03d}"
    return first17 + cert_domain.id_check_character(first17)


def issue_and_void_one(plat, n: int) -> str:
    """Institution n issues two certificates; the regulator voids one: the operation id."""
    at(plat, 2025, 5, 12)
    rows = [{"row_ref": str(i), "holder_name": "张三丰", "holder_id_number": holder(i),
             "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}
            for i in (1, 2)]
    issued = Certificates(plat.channel, "institution", n).IssueCertificates({
        "exam_session_id": f"s-{n}", "assessment_date": "2025-05-10", "rows": rows})
    number = issued["results"][0]["certificate_number"]
    at(plat, 2025, 6, 3)
    voided = Certificates(plat.channel, "regulator").InvalidateCertificates({
        "selection": {"certificate_numbers": [number]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "安人社监〔2025〕7号"})
    return voided["result"]["operation_id"]


def fact_ids(plat, n: int, kind: str) -> list[str]:
    doc = plat.db("grading")["institutions"].find_one({"_id": uscc(n)}) or {}
    return [f["event_id"] for f in doc.get("facts", []) if f["kind"] == kind]


# --- reflection ------------------------------------------------------------------------------------
def test_reflection_lists_the_grading_service_with_its_rpcs(plat):
    info = plat.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    listed, = list(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                        timeout=5))
    assert GRADING in {s.name for s in listed.list_services_response.service}
    rpcs = set(grading_pb2.DESCRIPTOR.services_by_name["GradingService"].methods_by_name)
    assert {"CreateIndicatorSystem", "PublishIndicatorSystem", "GetIndicatorSystem",
            "ListIndicatorSystems", "OpenGradingYear", "SubmitSelfAssessment",
            "ReviewAssessment", "PublishGrades", "GetGrade", "ListGrades", "AppealGrade",
            "DecideAppeal", "ApplyCreditRepair", "DecideCreditRepair", "GetIntegrityFile",
            "ListRedList", "ListBlackList", "ComputeGrades"} <= rpcs


# --- a year end to end -------------------------------------------------------------------------------
def test_a_year_end_to_end(plat):
    file_institution(plat, 501, (2024, 3, 4))
    file_institution(plat, 502, (2024, 3, 5))
    operation = issue_and_void_one(plat, 501)
    file_institution(plat, 503, (2025, 7, 1))
    eventually(lambda: all(known_to_grading(plat, n) for n in (501, 502, 503)), 20,
               "filing's InstitutionFiled in grading")
    eventually(lambda: fact_ids(plat, 501, "FACT_KIND_CERTIFICATE_INVALIDATION"), 20,
               "certificates' invalidation in grading")
    at(plat, 2025, 9, 1)
    Filing(plat.channel, "regulator").TerminateFiling({
        "institution_id": uscc(502), "reason": "证书数据造假", "decision_ref": "安人社〔2025〕9号"})
    eventually(lambda: fact_ids(plat, 502, "FACT_KIND_FILING_TERMINATED"), 20,
               "filing's termination in grading")

    # The regulator opens 2025 on the built-in catalogue, with one commissioned assessor.
    at(plat, 2026, 1, 5)
    regulator = grading(plat, "regulator")
    catalogue = grading(plat).GetIndicatorSystem({"system_id": "default"})
    assert (catalogue["info"]["first_level_count"], catalogue["info"]["second_level_count"],
            catalogue["info"]["leaf_count"]) == (21, 49, 58)
    year = regulator.OpenGradingYear({
        "year": 2025, "system_id": "default", "self_assessment_working_days": 10,
        "reviewers": [{"assessor_id": "assessor-5", "institution_ids": [uscc(501)]}],
        "request_id": "open-2025"})["year"]
    assert year["self_assessment_due"] == {"date": "2026-01-19"}
    system_hash = year["system_hash"]
    assert system_hash == catalogue["info"]["canonical_hash"]

    # Self-assessments: 501 declares all but 8 points (4 of 2.7.1.1, 2 of 2.2.1.1 and of
    # 2.4.1.1), and no invalidation.
    inst = grading(plat, "institution", 501)
    draft = inst.SubmitSelfAssessment({"year": 2025, "values": gs.full_marks()[:3],
                                       "request_id": "draft-501"})["assessment"]
    assert draft["state"] == "ASSESSMENT_STATE_DRAFT"
    submitted = inst.SubmitSelfAssessment({
        "year": 2025, "values": gs.full_marks(lose={"2.7.1.1": 400, "2.2.1.1": 200, "2.4.1.1": 200}), "final": True,
        "request_id": "final-501"})["assessment"]
    assert submitted["state"] == "ASSESSMENT_STATE_SUBMITTED"
    grading(plat, "institution", 502).SubmitSelfAssessment(
        {"year": 2025, "values": gs.full_marks(), "final": True, "request_id": "final-502"})

    # The assessor reviews 501: the premises are worth 0 of their 2 points.
    assessor = grading(plat, "assessor", party_id="assessor-5")
    reviewed = assessor.ReviewAssessment({
        "year": 2025, "institution_id": uscc(501), "request_id": "review-501",
        "adjustments": [{"indicator_id": "2.1.1.1", "points_centi": 0,
                         "reason": "租赁合同已到期"}]})["assessment"]
    assert reviewed["reviews"][0]["reviewer"].startswith("assessor:")

    # Published after the deadline: 100 - 8 declared - 2 reviewed - 2 invalidation = 88: B.
    at(plat, 2026, 1, 20)
    published = regulator.PublishGrades({"year": 2025, "request_id": "publish-2025"})
    assert published["year"]["state"] == "YEAR_STATE_PUBLISHED"
    assert published["year"]["appeal_due"] == {"date": "2026-02-10"}

    public = grading(plat).GetGrade({"institution_id": uscc(501), "year": 2025})["grade"]
    assert (public["grade"], public["score_centipoints"], public["system_hash"]) == \
        ("GRADE_B", 8800, system_hash)
    assert "indicators" not in public and len(public["history"]) == 1
    own = inst.GetGrade({"institution_id": uscc(501), "year": 2025})["grade"]
    invalidation = next(i for i in own["indicators"] if i["indicator_id"] == "1.3.1.1")
    assert invalidation["source"] == "VALUE_SOURCE_PLATFORM" and invalidation["value"] == 1
    assert invalidation["source_event_ids"] == fact_ids(plat, 501,
                                                        "FACT_KIND_CERTIFICATE_INVALIDATION")
    assert re.fullmatch(r"[0-9a-f]{32}", invalidation["source_event_ids"][0]) and operation
    assert [r["indicator_id"] for r in own["top_reasons"]] == \
        ["2.7.1.1", "1.3.1.1", "2.1.1.1", "2.2.1.1"]  # 4 points, then 2 in catalogue order
    assert own["next_grade"] == "GRADE_A" and own["points_to_next_grade_centi"] == 200
    assert own["next_grade_indicators"] == ["2.7.1.1"]

    terminated = grading(plat).GetGrade({"institution_id": uscc(502), "year": 2025})["grade"]
    assert terminated["grade"] == "GRADE_D" and "filing terminated" in terminated["reason"]
    new = grading(plat).GetGrade({"institution_id": uscc(503), "year": 2025})["grade"]
    assert new["grade"] == "GRADE_UNGRADED" and "filed on 2025-07-01" in new["reason"]
    listed = grading(plat).ListGrades({"year": 2025, "grade": "GRADE_D"})["grades"]
    assert [g["institution_id"] for g in listed] == [uscc(502)]
    district = grading(plat).ListGrades({"year": 2025, "district_code": "410502",
                                         "page": {"page_size": 2}})
    assert len(district["grades"]) == 2 and district["page"]["next_page_token"]

    # 501 appeals the premises with its new lease; the assessor accepts: revision 2, grade A.
    appeal = inst.AppealGrade({"year": 2025, "request_id": "appeal-501", "indicators": [
        {"indicator_id": "2.1.1.1", "statement": "续签租赁合同",
         "evidence": [gs.evidence("lease-2025")]}]})["appeal"]
    decided = assessor.DecideAppeal({"appeal_id": appeal["appeal_id"], "decisions": [
        {"indicator_id": "2.1.1.1", "accepted": True, "points_centi": 200,
         "reason": "续签合同覆盖全年"}]})
    assert decided["revised"] is True
    revised = grading(plat).GetGrade({"institution_id": uscc(501), "year": 2025})["grade"]
    assert (revised["grade"], revised["revision"], revised["score_centipoints"]) == \
        ("GRADE_A", 2, 9000)
    assert [h["grade"] for h in revised["history"]] == ["GRADE_B", "GRADE_A"]
    assert revised["history"][1]["appeal_id"] == appeal["appeal_id"]
    red = grading(plat).ListRedList({"year": 2025})["entries"]
    assert [r["institution_id"] for r in red] == [uscc(501)]
    assert len(red[0]["incentives"]) == 4

    # The terminated institution is black-listed from publication; repair after 3 months.
    black = grading(plat).ListBlackList({})["entries"]
    assert [(b["institution_id"], b["basis"]) for b in black] == [(uscc(502), "001 ch.6 art.4")]
    listing_id = black[0]["listing_id"]
    repair = {"listing_id": listing_id, "statement": "已整改", "request_id": "repair-502",
              "proof": [gs.evidence("rectification")]}
    code, message = status_of(grading(plat, "institution", 502).ApplyCreditRepair, repair)
    assert code == Code.FAILED_PRECONDITION and "2026-04-20" in message
    at(plat, 2026, 4, 20)
    applied = grading(plat, "institution", 502).ApplyCreditRepair(repair)["entry"]
    assert applied["repairs"][0]["state"] == "REPAIR_STATE_APPLIED"
    regulator.DecideCreditRepair({"listing_id": listing_id, "approve": True,
                                  "reason": "整改到位", "decision_ref": "安人社〔2026〕3号"})
    assert grading(plat).ListBlackList({}).get("entries", []) == []
    public_file = grading(plat).GetIntegrityFile({"institution_id": uscc(502)})
    assert public_file["public_view"] is True
    assert "INTEGRITY_ENTRY_KIND_BLACK_LISTED" not in {e["kind"] for e in public_file["entries"]}
    full = regulator.GetIntegrityFile({"institution_id": uscc(502)})["entries"]
    assert {"INTEGRITY_ENTRY_KIND_BLACK_LISTED", "INTEGRITY_ENTRY_KIND_CREDIT_REPAIR",
            "INTEGRITY_ENTRY_KIND_LIST_REMOVAL", "INTEGRITY_ENTRY_KIND_GRADE"} <= \
        {e["kind"] for e in full}


# --- bad input: each refused precisely, nothing stored ---------------------------------------------
@pytest.fixture(scope="module")
def year_2024(plat):
    """2024 opened with institutions 601 (assigned to assessor-6) and 602."""
    file_institution(plat, 601, (2023, 3, 1))
    file_institution(plat, 602, (2023, 3, 2))
    eventually(lambda: known_to_grading(plat, 601) and known_to_grading(plat, 602), 20)
    at(plat, 2025, 1, 6)
    grading(plat, "regulator").OpenGradingYear({
        "year": 2024, "system_id": "default", "self_assessment_working_days": 5,
        "reviewers": [{"assessor_id": "assessor-6", "institution_ids": [uscc(601)]}]})
    return 2024


def assessment_of(plat, n: int, year: int):
    return plat.db("grading")["self_assessments"].find_one({"_id": f"{year}:{uscc(n)}"})


def test_a_version_not_summing_to_100_is_refused_with_every_violation(plat):
    system = grading(plat).GetIndicatorSystem({"system_id": "default"})["system"]
    system["system_id"] = "committee-2026"
    system["dimensions"][0]["children"][0]["children"][0]["leaves"][0]["max_centi"] = 150
    system["dimensions"][1]["children"][0]["children"][0]["leaves"][0]["id"] = "1.1.1.1"
    code, message = status_of(grading(plat, "regulator").CreateIndicatorSystem,
                              {"system": system, "request_id": "bad-system"})
    assert code == Code.INVALID_ARGUMENT
    assert "not 99.50" in message and "duplicate id '1.1.1.1'" in message
    assert status_of(grading(plat, "regulator").GetIndicatorSystem,
                     {"system_id": "committee-2026"})[0] == Code.NOT_FOUND


def test_a_committee_version_is_drafted_published_and_then_never_changes(plat):
    regulator = grading(plat, "regulator")
    system = grading(plat).GetIndicatorSystem({"system_id": "default"})["system"]
    system.update(system_id="committee-2027", version="2027", title="委员会版本")
    draft = regulator.CreateIndicatorSystem({"system": system, "request_id": "c-2027"})["info"]
    assert draft["state"] == "SYSTEM_STATE_DRAFT"
    assert status_of(grading(plat).GetIndicatorSystem, {"system_id": "committee-2027"})[0] == \
        Code.NOT_FOUND  # drafts are the regulator's
    published = regulator.PublishIndicatorSystem({"system_id": "committee-2027"})["info"]
    assert published["state"] == "SYSTEM_STATE_PUBLISHED" and published["canonical_hash"]
    # Anyone can check the hash: SHA-256 of the RFC 8785 form of the version as answered.
    answered = grading(plat).GetIndicatorSystem({"system_id": "committee-2027"})
    assert hashlib.sha256(rfc8785.dumps(answered["system"])).hexdigest() == \
        published["canonical_hash"] == answered["info"]["canonical_hash"]
    code, _ = status_of(regulator.CreateIndicatorSystem,
                        {"system": system, "request_id": "c-2027-again"})
    assert code == Code.FAILED_PRECONDITION
    listed = grading(plat).ListIndicatorSystems({})["systems"]
    assert [s["system_id"] for s in listed][:1] == ["default"] and listed[0]["built_in"]
    assert status_of(grading(plat, "institution", 1).CreateIndicatorSystem,
                     {"system": system, "request_id": "x"})[0] == Code.PERMISSION_DENIED


def test_self_assessment_bad_values_wrong_roles_and_others_drafts(plat, year_2024):
    inst = grading(plat, "institution", 601)
    values = gs.full_marks()
    values[0] = {**values[0], "indicator_id": "9.9.9.9"}
    values[3] = {**values[3], "occurrences": 3}              # 1.2.2.1 awards points
    values[2] = {**values[2], "points_centi": 100_000}       # 1.2.1.1 counts occurrences
    values[4] = {**values[4], "occurrences": 20_000}         # 1.3.1.1: at most 10000
    code, message = status_of(inst.SubmitSelfAssessment, {
        "year": 2024, "values": values, "final": True, "request_id": "bad-601"})
    assert code == Code.INVALID_ARGUMENT
    assert "'9.9.9.9' is not a third-level indicator" in message
    assert "give points_centi" in message and "give occurrences" in message
    assert "must be 0-10000" in message
    assert assessment_of(plat, 601, 2024) is None
    assert status_of(grading(plat, "regulator").SubmitSelfAssessment, {
        "year": 2024, "values": gs.full_marks(), "request_id": "r"})[0] == Code.PERMISSION_DENIED
    assert status_of(grading(plat).SubmitSelfAssessment, {
        "year": 2024, "values": gs.full_marks(), "request_id": "r"})[0] == Code.UNAUTHENTICATED
    inst.SubmitSelfAssessment({"year": 2024, "values": gs.full_marks()[:5],
                               "request_id": "draft-601"})
    code, _ = status_of(grading(plat, "institution", 602).GetSelfAssessment,
                        {"year": 2024, "institution_id": uscc(601)})
    assert code == Code.PERMISSION_DENIED
    code, _ = status_of(grading(plat, "institution", 602).SubmitSelfAssessment, {
        "year": 2024, "institution_id": uscc(601), "values": [], "request_id": "other"})
    assert code == Code.PERMISSION_DENIED
    # the same request again answers as the first; the same id with other content is refused
    again = inst.SubmitSelfAssessment({"year": 2024, "values": gs.full_marks()[:5],
                                       "request_id": "draft-601"})
    assert again["assessment"]["state"] == "ASSESSMENT_STATE_DRAFT"
    assert status_of(inst.SubmitSelfAssessment, {"year": 2024, "values": gs.full_marks()[:4],
                                                 "request_id": "draft-601"})[0] == \
        Code.ALREADY_EXISTS


def test_an_assessor_reviewing_an_institution_not_assigned_to_it_is_refused(plat, year_2024):
    for n in (601, 602):
        grading(plat, "institution", n).SubmitSelfAssessment({
            "year": 2024, "values": gs.full_marks(), "final": True, "request_id": f"f-{n}"})
    review = {"year": 2024, "institution_id": uscc(602), "request_id": "rv",
              "adjustments": [{"indicator_id": "1.1.1.1", "points_centi": 0, "reason": "x"}]}
    code, _ = status_of(grading(plat, "assessor", party_id="assessor-6").ReviewAssessment,
                        review)
    assert code == Code.PERMISSION_DENIED
    code, _ = status_of(grading(plat, "assessor", party_id="assessor-7").ReviewAssessment,
                        {**review, "institution_id": uscc(601)})
    assert code == Code.PERMISSION_DENIED
    assert assessment_of(plat, 602, 2024)["reviews"] == []
    code, message = status_of(grading(plat, "regulator").ReviewAssessment, {
        **review, "adjustments": [{"indicator_id": "1.1.1.1", "points_centi": 0}],
        "overall": {"grade": "GRADE_A"}})
    assert code == Code.INVALID_ARGUMENT and "adjustments[0].reason" in message
    assert "overall.reason" in message


def test_late_self_assessment_and_late_appeal_are_failed_preconditions(plat, year_2024):
    at(plat, 2025, 1, 14)  # the deadline was 2025-01-13
    code, message = status_of(grading(plat, "institution", 602).SubmitSelfAssessment, {
        "year": 2024, "values": gs.full_marks(), "final": True, "request_id": "late"})
    assert code == Code.FAILED_PRECONDITION and "2025-01-13" in message
    grading(plat, "regulator").PublishGrades({"year": 2024, "request_id": "p-2024"})
    code, _ = status_of(grading(plat, "regulator").PublishGrades,
                        {"year": 2024, "request_id": "p-2024-again"})
    assert code == Code.FAILED_PRECONDITION
    appeal = {"year": 2024, "request_id": "late-appeal", "indicators": [
        {"indicator_id": "1.1.1.1", "statement": "s", "evidence": [gs.evidence("e")]}]}
    at(plat, 2025, 2, 20)  # 15 working days after 2025-01-14 (Spring Festival between)
    code, message = status_of(grading(plat, "institution", 601).AppealGrade, appeal)
    assert code == Code.FAILED_PRECONDITION and "received until" in message
    grade = plat.db("grading")["grades"].find_one({"_id": f"2024:{uscc(601)}"})
    assert grade["appeals"] == []
    code, _ = status_of(grading(plat, "institution", 601).AppealGrade,
                        {**appeal, "indicators": [{**appeal["indicators"][0],
                                                   "indicator_id": "nope"}]})
    assert code == Code.INVALID_ARGUMENT
    assert status_of(grading(plat).GetGrade, {"institution_id": uscc(601), "year": 2023})[0] \
        == Code.NOT_FOUND
    assert status_of(grading(plat).GetGrade, {"institution_id": "x", "year": 2024})[0] == \
        Code.INVALID_ARGUMENT


def test_a_self_assessment_right_after_filing_is_not_refused_for_the_bus_latency(plat):
    at(plat, 2024, 1, 8)
    grading(plat, "regulator").OpenGradingYear({"year": 2023, "system_id": "default",
                                                "self_assessment_working_days": 5})
    file_institution(plat, 701, (2022, 3, 1))
    at(plat, 2024, 1, 9)
    answer = grading(plat, "institution", 701).SubmitSelfAssessment({
        "year": 2023, "values": gs.full_marks(), "final": True, "request_id": "s-701"})
    assert answer["assessment"]["state"] == "ASSESSMENT_STATE_SUBMITTED"


def test_the_same_api_over_http_json(plat):
    import requests

    catalogue = requests.get(plat.http_url + "/v1/grading/indicatorSystems/default",
                             timeout=15)
    assert catalogue.status_code == 200
    assert catalogue.json()["info"]["leaf_count"] == 58
    refused = requests.post(plat.http_url + "/v1/grading/years", timeout=15, json={
        "system_id": "default", "self_assessment_working_days": 5})
    assert refused.status_code == 401  # a change needs a token
    black = requests.get(plat.http_url + "/v1/grading/blackList", timeout=15)
    assert black.status_code == 200
