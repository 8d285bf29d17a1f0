"""The sanction contract end to end, every worker real: inspection decides a termination for
certificate fraud (seed 001 ch.6 art.4(5)) through its own API; filing terminates, the
registry voids the session, and grading, from inspection's SanctionDecided alone, enters the
sanction in the integrity file and publishes the black-list entry; overturned on review
(DecisionReversed), the entry leaves publication and the file keeps everything."""
from __future__ import annotations

from datetime import datetime

import pytest
from vocreg.grading.v1 import grading_pb2, grading_pb2_grpc
from vocreg.inspection.v1 import inspection_pb2, inspection_pb2_grpc

from services.common.identifiers import id_check_character
from services.common.workdays import SHANGHAI
from tests.e2e.grpc_client import Certificates, Client, Filing
from tests.platform import Platform, eventually
from tests.support import PASSED_EVALUATION, application_request, token, uscc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("grading-sanctions"),
                       services=("filing", "certificates", "inspection", "grading"), clock=True,
                       FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


def at(plat, year, month, day):
    plat.set_clock(datetime(year, month, day, 10, tzinfo=SHANGHAI))


def client(plat, stub, pb2, role=None, n=None, sub=None) -> Client:
    metadata = () if role is None else (("authorization", f"Bearer {token(role, n, sub=sub)}"),)
    return Client(stub, pb2, plat.channel, metadata=metadata)


def inspection(plat, role=None, n=None, sub=None) -> Client:
    return client(plat, inspection_pb2_grpc.InspectionServiceStub, inspection_pb2, role, n, sub)


def grading(plat, role=None, n=None) -> Client:
    return client(plat, grading_pb2_grpc.GradingServiceStub, grading_pb2, role, n)


def test_a_termination_for_certificate_fraud_is_black_listed_and_reversed(plat):
    n = 801
    at(plat, 2026, 3, 2)
    app = Filing(plat.channel, "institution", n).SubmitApplication(
        application_request(n))["application"]
    filing = Filing(plat.channel, "regulator")
    filing.AcceptApplication({"application_id": app["application_id"],
                              "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    filing.DecideApplication({"application_id": app["application_id"],
                              "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    at(plat, 2026, 5, 20)
    rows = [{"row_ref": f"t{i}", "holder_name": "张三丰",
             "holder_id_number": f"41050219900307{i:03d}" + id_check_character(
                 f"41050219900307{i:03d}"),
             "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}
            for i in range(2)]
    Certificates(plat.channel, "institution", n).IssueCertificates(
        {"exam_session_id": "2026-05-A", "assessment_date": "2026-05-18", "rows": rows})

    regulator = inspection(plat, "regulator")
    inspectors = []
    for j in range(2):
        regulator.RegisterInspector({
            "request_id": f"G-{j}", "inspector_id": f"G-{j}", "name": f"检查员{j}",
            "employer_id": uscc(9100 + j), "employer_name": "安阳市职业技能鉴定指导中心",
            "region": "410500"})
        inspectors.append(f"G-{j}")
    at(plat, 2026, 6, 1)
    case = regulator.OpenCase({
        "request_id": "case-801", "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
        "subject_id": uscc(n), "kind": "INSPECTION_KIND_SPECIAL", "origin": "CASE_ORIGIN_PLAN",
        "inspector_ids": inspectors})["case"]
    inspector = inspection(plat, "inspector", sub=inspectors[0])
    inspector.RecordFinding({"request_id": "f-801", "case_id": case["case_id"],
                             "article": "ch.6 art.4(5)", "summary": "证书数据造假"})
    inspector.CompleteInspection({"case_id": case["case_id"], "summary": "现场检查"})
    regulator.NotifyIntendedDecision({"case_id": case["case_id"], "facts": "事实",
                                      "reasons": "理由", "delivery": "DELIVERY_WRITTEN"})
    inspection(plat, "institution", n).StateCase({
        "request_id": "waive", "case_id": case["case_id"], "statement": "无异议", "waive": True})
    regulator.Decide({"case_id": case["case_id"], "summary": "终止备案,证书作废",
                      "certificates": {"exam_session_id": "2026-05-A"}})
    decision_id = regulator.GetCase({"case_id": case["case_id"]})["case"]["decision"][
        "decision_id"]

    def listed():
        return [e for e in grading(plat).ListBlackList({}).get("entries", [])
                if e["institution_id"] == uscc(n)]

    [entry] = eventually(listed, 30, "the black-list entry")
    assert entry["decision_ref"] == decision_id and "ch.6 art.4(5)" in entry["basis"]
    assert (entry["listed_on"], entry["publish_until"], entry["repair_from"]) == \
        ("2026-06-01", "2029-06-01", "2026-09-01")
    public = grading(plat).GetIntegrityFile({"institution_id": uscc(n)})["entries"]
    kinds = {e["kind"] for e in public}
    assert {"INTEGRITY_ENTRY_KIND_SANCTION", "INTEGRITY_ENTRY_KIND_BLACK_LISTED"} <= kinds
    sanction = next(e for e in public if e["kind"] == "INTEGRITY_ENTRY_KIND_SANCTION")
    assert sanction["source_service"] == "inspection" and sanction["source_event_id"]
    # the platform facts of 2026: the sanction, the termination, the fraud invalidation
    doc = eventually(lambda: (d := plat.db("grading")["institutions"].find_one(
        {"_id": uscc(n)})) and len({f["kind"] for f in d.get("facts", [])}) >= 4 and d, 30,
        "the facts of filing and certificates")
    assert {f["kind"] for f in doc["facts"]} >= {
        "FACT_KIND_SANCTION", "FACT_KIND_BLACK_LISTED", "FACT_KIND_FILING_TERMINATED",
        "FACT_KIND_CERTIFICATE_INVALIDATION"}

    at(plat, 2026, 6, 23)
    inspection(plat, "institution", n).RequestReview({"case_id": case["case_id"],
                                                      "grounds": "证据不足"})
    regulator.DecideReview({"case_id": case["case_id"], "outcome": "REVIEW_OUTCOME_OVERTURNED",
                            "reasons": "证据不足"})
    eventually(lambda: not listed(), 30, "the entry leaving publication")
    full = grading(plat, "regulator").GetIntegrityFile({"institution_id": uscc(n)})["entries"]
    assert {"INTEGRITY_ENTRY_KIND_SANCTION", "INTEGRITY_ENTRY_KIND_BLACK_LISTED",
            "INTEGRITY_ENTRY_KIND_LIST_REMOVAL", "INTEGRITY_ENTRY_KIND_REVERSAL"} <= \
        {e["kind"] for e in full}
