"""Issue 4's scenarios through gRPC over the real broker: grpcio -> edge -> RabbitMQ ->
the certificate registry and the REAL filing worker (no stand-in).

Each test files its own institution through FilingService first (submit -> accept -> decide
FILE), then issues certificates as that institution with a real institution token. One
clocked platform serves the module: every test sets the workers' clock to fixed dates in
2026 and uses its own institution numbers (4xx), so tests do not depend on their order.

Rules: seed 001 ch.4-6; seed 002 §4.
"""
from __future__ import annotations

import re
from datetime import datetime

import grpc
import pytest
import requests

from services.certificates import domain
from services.common.workdays import SHANGHAI
from tests.e2e import grpc_client
from tests.e2e.grpc_client import Certificates, Filing, status_of
from tests.platform import Platform, eventually
from tests.support import application_request, uscc

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
OCC = "4-10-01-02"          # 育婴员: the builders' scope, levels 5, 4, 3
OTHER_OCC = "4-03-02-01"    # in nobody's scope


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    # Every test files an institution for the same occupation in the same city district:
    # lift the per-occupation district quota (3) so filing never refuses one of them.
    started = Platform(tmp_path_factory.mktemp("certificates"), services=("filing", "certificates"),
                       clock=True, FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0, "worker-certificates": 0}, \
        f"unclean shutdown {codes}:\n{started.logs()}"


# --- builders -----------------------------------------------------------------------------
def at(plat, year, month, day, hour=10):
    """Move both workers' clock (Asia/Shanghai)."""
    plat.set_clock(datetime(year, month, day, hour, tzinfo=SHANGHAI))


def holder(i: int) -> str:
    """A valid GB 11643 ID number (Anyang, born 1990-03-07), distinct for each i."""
    first17 = f"41050219900307{i:03d}"
    return first17 + domain.id_check_character(first17)


def wrong_check(number: str) -> str:
    return number[:17] + ("1" if number[17] != "1" else "2")


NAMES = "三四五六七八九十"


def name(i: int) -> str:
    return f"张{NAMES[i % 8]}丰"


def row(i: int, level: int = 4, occupation: str = OCC, **overrides) -> dict:
    data = {"row_ref": f"ticket-{i}", "holder_name": name(i), "holder_id_number": holder(i),
            "occupation_code": occupation, "occupation_name": "育婴员", "skill_level": level}
    data.update(overrides)
    return data


def batch(rows, session="2026-06-A", assessed="2026-06-10") -> dict:
    return {"exam_session_id": session, "assessment_date": assessed, "rows": rows}


def regulator_filing(plat) -> Filing:
    return Filing(plat.channel, "regulator")


def file_institution(plat, n: int, levels=(5, 4, 3), on=(2026, 3, 2)) -> str:
    """File institution n through FilingService on the date `on`; its filing code."""
    at(plat, *on)
    request = application_request(n)
    request["scope"][0]["skill_levels"] = list(levels)
    return grpc_client.file_institution(plat.channel, n, request)["filing_code"]


def issuer(plat, n: int) -> Certificates:
    return Certificates(plat.channel, "institution", n)


def public(plat) -> Certificates:
    return Certificates(plat.channel)


def regulator(plat) -> Certificates:
    return Certificates(plat.channel, "regulator")


def number_re(filing_code: str, level: int) -> re.Pattern:
    """The national coding rule: the filing code (parts 1-4), year issued, level, serial."""
    return re.compile(rf"^{filing_code}26{level}\d{{6}}$")



def worker_metrics(plat, service="certificates") -> str:
    port = plat.worker_metrics_ports[service]
    return requests.get(f"http://localhost:{port}/metrics", timeout=5).text


def by_index(answer: dict) -> dict:
    return {r.get("index", 0): r for r in answer["results"]}


# --- scenarios ----------------------------------------------------------------------------
def test_mixed_batch_has_per_row_results_and_national_numbers(plat):
    code = file_institution(plat, 401)
    assert re.fullmatch(r"S000041\d{6}", code)
    at(plat, 2026, 6, 15)
    rows = [
        row(1, level=4),                                              # 0 issued
        row(2, level=4),                                              # 1 issued
        row(3, level=3),                                              # 2 issued
        row(4, holder_id_number=wrong_check(holder(4))),              # 3 wrong check character
        row(5, holder_name=""),                                       # 4 no name
        row(6, occupation_code="4-10-1"),                             # 5 malformed occupation
        row(7, level=9),                                              # 6 no such level
        row(1, level=4, row_ref="ticket-1-again"),                    # 7 same holder twice
        row(8, occupation=OTHER_OCC),                                 # 8 occupation not filed
        row(9, level=1),                                              # 9 level not filed
        row(10, level=5, holder_id_number=holder(10).lower()),        # 10 issued (x typed lower)
    ]
    answer = issuer(plat, 401).IssueCertificates(batch(rows))
    results = by_index(answer)
    assert [results[i]["status"] for i in range(len(rows))] == [
        "ROW_STATUS_ISSUED", "ROW_STATUS_ISSUED", "ROW_STATUS_ISSUED",
        *["ROW_STATUS_REJECTED"] * 7, "ROW_STATUS_ISSUED"]
    assert (answer["issued_count"], answer["rejected_count"], answer.get("duplicate_count", 0)) \
        == (4, 7, 0)
    assert answer.get("late_reported", False) is False and answer["batch_id"]
    assert [results[i]["row_ref"] for i in range(3)] == ["ticket-1", "ticket-2", "ticket-3"]

    # Numbers: filing code + year + level + serial per evaluator, year and level.
    assert results[0]["certificate_number"] == f"{code}264000001"
    assert results[1]["certificate_number"] == f"{code}264000002"
    assert results[2]["certificate_number"] == f"{code}263000001"
    assert results[10]["certificate_number"] == f"{code}265000001"
    for i in (0, 1, 2, 10):
        level = rows[i]["skill_level"]
        assert number_re(code, level).match(results[i]["certificate_number"])
        assert not results[i].get("errors")
    for i in range(3, 10):
        assert "certificate_number" not in results[i] and results[i]["errors"]

    assert results[3]["errors"] == ["holder_id_number: check character is wrong"]
    assert results[4]["errors"] == ["holder_name: required"]
    assert results[5]["errors"] == ["occupation_code: must look like 4-10-01-02"]
    assert results[6]["errors"] == ["skill_level: must be 1-5"]
    assert results[7]["errors"] == ["duplicate of row 0 (same holder, occupation and level)"]
    # The out-of-scope reasons are filing's CheckEvaluationRight answers, on the assessment date.
    assert results[8]["errors"] == [
        f"occupation {OTHER_OCC} level 4 is outside the institution's filed scope: "
        f"occupation {OTHER_OCC} is not in the filed scope on 2026-06-10"]
    assert results[9]["errors"] == [
        f"occupation {OCC} level 1 is outside the institution's filed scope: "
        f"level 1 of {OCC} is not in the filed scope (levels 3, 4, 5)"]
    # Rejected rows never echo the ID number.
    assert holder(4)[:17] not in str(results[3])

    # What was stored: the four issued rows, in full for the issuer.
    listed = issuer(plat, 401).ListCertificates({"exam_session_id": "2026-06-A"})["certificates"]
    assert sorted(c["certificate_number"] for c in listed) == sorted(
        results[i]["certificate_number"] for i in (0, 1, 2, 10))
    cert = issuer(plat, 401).GetCertificate(
        {"certificate_number": results[0]["certificate_number"]})["certificate"]
    assert cert == {
        "certificate_number": f"{code}264000001", "institution_id": uscc(401),
        "filing_code": code, "exam_session_id": "2026-06-A", "batch_id": answer["batch_id"],
        "holder_name": name(1), "holder_id_number": holder(1), "occupation_code": OCC,
        "occupation_name": "育婴员", "skill_level": 4, "assessment_date": "2026-06-10",
        "issued_on": "2026-06-15", "status": "CERTIFICATE_STATUS_VALID"}
    # The lower-case x was stored upper-case.
    tenth = issuer(plat, 401).GetCertificate(
        {"certificate_number": results[10]["certificate_number"]})["certificate"]
    assert tenth["holder_id_number"] == holder(10).upper()

    # Serials continue in the next batch; a new year would restart them.
    more = issuer(plat, 401).IssueCertificates(batch([row(11, level=4)], session="2026-06-B"))
    assert more["results"][0]["certificate_number"] == f"{code}264000003"


def test_out_of_scope_occupation_and_level_are_refused_with_filings_reason(plat):
    code = file_institution(plat, 402, levels=(5, 4), on=(2026, 3, 2))
    at(plat, 2026, 6, 15)
    client = issuer(plat, 402)

    whole = client.IssueCertificates(batch([row(i, occupation=OTHER_OCC) for i in range(3)]))
    assert (whole.get("issued_count", 0), whole["rejected_count"]) == (0, 3)
    for r in whole["results"]:
        assert r["status"] == "ROW_STATUS_REJECTED"
        assert r["errors"] == [
            f"occupation {OTHER_OCC} level 4 is outside the institution's filed scope: "
            f"occupation {OTHER_OCC} is not in the filed scope on 2026-06-10"]

    level = client.IssueCertificates(batch([row(1, level=3), row(2, level=4)], session="L"))
    first, second = level["results"]
    assert first["status"] == "ROW_STATUS_REJECTED" and first["errors"] == [
        f"occupation {OCC} level 3 is outside the institution's filed scope: "
        f"level 3 of {OCC} is not in the filed scope (levels 4, 5)"]
    assert second["status"] == "ROW_STATUS_ISSUED"
    assert number_re(code, 4).match(second["certificate_number"])

    # The scope on the assessment date counts: an assessment before the filing is out of it.
    before = client.IssueCertificates(batch([row(5)], session="early", assessed="2026-02-20"))
    assert before["results"][0]["status"] == "ROW_STATUS_REJECTED"
    assert "2026-02-20 is before the filing on 2026-03-02" in before["results"][0]["errors"][0]

    # Nothing of the refused rows was stored.
    listed = client.ListCertificates({})["certificates"]
    assert [c["certificate_number"] for c in listed] == [second["certificate_number"]]


def test_suspended_institution_is_refused_with_the_reason_and_issued_ones_stay_valid(plat):
    file_institution(plat, 403)
    at(plat, 2026, 6, 15)
    client = issuer(plat, 403)
    issued = client.IssueCertificates(batch([row(1), row(2)]))
    numbers = [r["certificate_number"] for r in issued["results"]]
    assert issued["issued_count"] == 2

    at(plat, 2026, 7, 1)
    reason = "整改期间暂停评价: 考务管理不规范"
    suspended = regulator_filing(plat).SuspendInstitution(
        {"institution_id": uscc(403), "reason": reason, "decision_ref": "安人社监〔2026〕12号"})
    assert suspended["institution"]["status"] == "INSTITUTION_STATUS_SUSPENDED"

    # The registry learns it from filing's InstitutionSuspended event over the broker.
    new_batch = batch([row(3), row(4)], session="2026-07-A", assessed="2026-07-01")

    def refused_with_reason():
        code, details = status_of(client.IssueCertificates, new_batch)
        assert code == Code.FAILED_PRECONDITION, (code, details)
        return reason in details and details

    details = eventually(refused_with_reason, what="refusal with the suspension reason")
    assert "suspended" in details and details.startswith("cannot issue")
    assert 'vocreg_certificate_batches_refused_total{why="suspended"}' in worker_metrics(plat)

    # Nothing of the refused batch was stored; what was issued before still verifies valid.
    assert status_of(client.IssueCertificates, new_batch)[0] == Code.FAILED_PRECONDITION
    listed = client.ListCertificates({})["certificates"]
    assert sorted(c["certificate_number"] for c in listed) == sorted(numbers)
    for i, number in enumerate(numbers, start=1):
        answer = public(plat).VerifyCertificate({"certificate_number": number,
                                                 "holder_name": name(i)})
        assert answer["result"] == "VERIFICATION_RESULT_VALID"

    # Reinstated: new batches go through again (assessed after the reinstatement).
    at(plat, 2026, 7, 20)
    regulator_filing(plat).ReinstateInstitution(
        {"institution_id": uscc(403), "reason": "整改完成", "decision_ref": "安人社监〔2026〕15号"})
    again = batch([row(3), row(4)], session="2026-07-B", assessed="2026-07-20")

    def issued_again():
        try:
            return client.IssueCertificates(again)
        except grpc.RpcError as exc:
            assert exc.code() == Code.FAILED_PRECONDITION, exc.details()
            return None

    assert eventually(issued_again, what="issuing after reinstatement")["issued_count"] == 2
    # An assessment inside the suspension is still outside the right (filing's answer).
    inside = client.IssueCertificates(batch([row(5)], session="2026-07-C", assessed="2026-07-05"))
    assert inside["results"][0]["status"] == "ROW_STATUS_REJECTED"
    assert "suspended" in inside["results"][0]["errors"][0]


def test_terminated_institution_is_refused_with_the_reason(plat):
    file_institution(plat, 404)
    at(plat, 2026, 6, 15)
    client = issuer(plat, 404)
    number = client.IssueCertificates(batch([row(1)]))["results"][0]["certificate_number"]
    at(plat, 2026, 8, 3)
    regulator_filing(plat).TerminateFiling(
        {"institution_id": uscc(404), "reason": "弄虚作假", "decision_ref": "安人社监〔2026〕20号"})

    def refused_with_reason():
        code, details = status_of(client.IssueCertificates,
                                  batch([row(2)], session="after", assessed="2026-08-03"))
        assert code == Code.FAILED_PRECONDITION, (code, details)
        return "弄虚作假" in details and details

    assert "terminated" in eventually(refused_with_reason, what="refusal after termination")
    # Termination alone changes nothing already issued.
    assert public(plat).VerifyCertificate({"certificate_number": number, "holder_name": name(1)}
                                          )["result"] == "VERIFICATION_RESULT_VALID"


def test_not_filed_institution_cannot_issue(plat):
    at(plat, 2026, 6, 15)
    code, details = status_of(issuer(plat, 499).IssueCertificates, batch([row(1)]))
    assert code == Code.FAILED_PRECONDITION
    assert details == f"cannot issue: institution {uscc(499)} is not filed"


def test_duplicate_upload_gets_the_existing_numbers_and_no_new_ones(plat):
    code = file_institution(plat, 405)
    at(plat, 2026, 6, 15)
    client = issuer(plat, 405)
    rows = [row(1), row(2, level=3), row(3, holder_id_number=wrong_check(holder(3)))]
    first = client.IssueCertificates(batch(rows))
    assert (first["issued_count"], first["rejected_count"]) == (2, 1)
    numbers = [r.get("certificate_number") for r in first["results"]]

    again = client.IssueCertificates(batch(rows))
    assert again.get("issued_count", 0) == 0
    assert (again["duplicate_count"], again["rejected_count"]) == (2, 1)
    assert [r["status"] for r in again["results"]] == [
        "ROW_STATUS_DUPLICATE", "ROW_STATUS_DUPLICATE", "ROW_STATUS_REJECTED"]
    assert [r.get("certificate_number") for r in again["results"]] == numbers
    assert again["results"][2]["errors"] == ["holder_id_number: check character is wrong"]

    # Nothing new stored, and no serial used up: the next certificate takes the next number.
    assert len(client.ListCertificates({})["certificates"]) == 2
    assert client.GetIssuanceStats({})["issued_count"] == 2
    # The corrected row alone, in the same session, is issued; the others stay duplicates.
    fixed = client.IssueCertificates(batch([row(1), row(3)]))
    assert [r["status"] for r in fixed["results"]] == ["ROW_STATUS_DUPLICATE", "ROW_STATUS_ISSUED"]
    assert fixed["results"][1]["certificate_number"] == f"{code}264000002"
    # The same holder in another session is a certificate of its own.
    other = client.IssueCertificates(batch([row(1)], session="2026-06-B"))
    assert other["results"][0]["status"] == "ROW_STATUS_ISSUED"
    assert other["results"][0]["certificate_number"] == f"{code}264000003"


def test_verification_is_public_masked_and_follows_invalidation_and_withdrawal(plat):
    code = file_institution(plat, 406)
    at(plat, 2026, 6, 15)
    issued = issuer(plat, 406).IssueCertificates(batch([row(1), row(2), row(3)]))
    n1, n2, n3 = (r["certificate_number"] for r in issued["results"])
    anonymous = public(plat)

    valid = anonymous.VerifyCertificate({"certificate_number": n1, "holder_name": name(1)})
    assert valid == {
        "result": "VERIFICATION_RESULT_VALID", "certificate_number": n1,
        "holder_name_masked": "张*丰",
        "holder_id_number_masked": holder(1)[:3] + "*" * 11 + holder(1)[-4:],
        "occupation_code": OCC, "occupation_name": "育婴员", "skill_level": 4,
        "issued_on": "2026-06-15", "issuer_name": "安阳市第406职业技能培训评价中心"}
    assert holder(1) not in str(valid) and name(1) not in str(valid)
    # Lower case and spaces around the number are typing noise.
    assert anonymous.VerifyCertificate({"certificate_number": f" {n1.lower()} ",
                                        "holder_name": name(1)})["result"] == \
        "VERIFICATION_RESULT_VALID"

    # A wrong name is indistinguishable from a number that does not exist.
    wrong_name = anonymous.VerifyCertificate({"certificate_number": n1, "holder_name": "李四"})
    unknown_number = f"{code}264999999"
    unknown = anonymous.VerifyCertificate({"certificate_number": unknown_number,
                                           "holder_name": name(1)})
    assert wrong_name == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": n1}
    assert unknown == {"result": "VERIFICATION_RESULT_NOT_FOUND",
                       "certificate_number": unknown_number}

    # The regulator voids one; it stays verifiable, with the reason and the date.
    at(plat, 2026, 9, 8)
    out = regulator(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": [n1]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "安人社监〔2026〕31号"})
    assert out["result"]["changed_count"] == 1 and out["result"]["operation_id"]
    voided = anonymous.VerifyCertificate({"certificate_number": n1, "holder_name": name(1)})
    assert voided["result"] == "VERIFICATION_RESULT_INVALIDATED"
    assert voided["reason"] == "INVALIDATION_REASON_EXAM_MISCONDUCT"
    assert voided["effective_on"] == "2026-09-08"
    assert voided["holder_name_masked"] == "张*丰" and "decision_ref" not in voided
    # The wrong name still learns nothing about it.
    assert anonymous.VerifyCertificate({"certificate_number": n1, "holder_name": "李四"}) == \
        {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": n1}
    # In full for the regulator and the issuer, with the decision.
    full = regulator(plat).GetCertificate({"certificate_number": n1})["certificate"]
    assert full["status"] == "CERTIFICATE_STATUS_INVALIDATED"
    assert full["invalidation"]["decision_ref"] == "安人社监〔2026〕31号"
    assert full["invalidation"]["operation_id"] == out["result"]["operation_id"]

    # Permanent: voiding again, even for another reason, changes nothing; unknown numbers listed.
    at(plat, 2026, 9, 20)
    repeat = regulator(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": [n1, unknown_number]},
        "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "安人社监〔2026〕40号"})
    assert repeat["result"].get("changed_count", 0) == 0
    assert repeat["result"]["unchanged_count"] == 1
    assert repeat["result"]["not_found"] == [unknown_number]
    again = anonymous.VerifyCertificate({"certificate_number": n1, "holder_name": name(1)})
    assert (again["reason"], again["effective_on"]) == ("INVALIDATION_REASON_EXAM_MISCONDUCT",
                                                        "2026-09-08")

    # Withdrawn data is not a void result.
    regulator(plat).WithdrawCertificates({"selection": {"certificate_numbers": [n2]},
                                          "decision_ref": "安人社监〔2026〕41号",
                                          "recover_subsidies": True})
    withdrawn = anonymous.VerifyCertificate({"certificate_number": n2, "holder_name": name(2)})
    assert withdrawn["result"] == "VERIFICATION_RESULT_WITHDRAWN"
    assert withdrawn["reason"] == "INVALIDATION_REASON_DATA_WITHDRAWN"
    assert withdrawn["effective_on"] == "2026-09-20"
    # The third is untouched.
    assert anonymous.VerifyCertificate({"certificate_number": n3, "holder_name": name(3)}
                                       )["result"] == "VERIFICATION_RESULT_VALID"


def test_an_institution_cannot_read_anothers_certificates(plat):
    file_institution(plat, 407)
    at(plat, 2026, 6, 15)
    owner, other = issuer(plat, 407), issuer(plat, 408)
    number = owner.IssueCertificates(batch([row(1)]))["results"][0]["certificate_number"]

    code, details = status_of(other.GetCertificate, {"certificate_number": number})
    assert code == Code.PERMISSION_DENIED and "another institution's" in details
    assert holder(1) not in details and name(1) not in details
    code, _ = status_of(other.ListCertificates, {"institution_id": uscc(407)})
    assert code == Code.PERMISSION_DENIED
    code, _ = status_of(other.GetIssuanceStats, {"institution_id": uscc(407)})
    assert code == Code.PERMISSION_DENIED
    # Its own register (no filter, or filtered by anything else) does not include them.
    assert "certificates" not in other.ListCertificates({})
    assert "certificates" not in other.ListCertificates({"holder_id_number": holder(1)})
    assert "stats" not in other.GetIssuanceStats({})
    # The owner, the regulator and an inspector do see it.
    assert owner.GetCertificate({"certificate_number": number})["certificate"]["holder_name"] \
        == name(1)
    for role in ("regulator", "inspector"):
        seen = Certificates(plat.channel, role).ListCertificates({"institution_id": uscc(407)})
        assert [c["certificate_number"] for c in seen["certificates"]] == [number]


def test_roles_and_tokens_are_enforced_at_the_edge(plat):
    file_institution(plat, 409)
    at(plat, 2026, 6, 15)
    owner = issuer(plat, 409)
    number = owner.IssueCertificates(batch([row(1)]))["results"][0]["certificate_number"]

    anonymous = public(plat)
    for method, request in (("GetCertificate", {"certificate_number": number}),
                            ("ListCertificates", {}), ("GetIssuanceStats", {}),
                            ("IssueCertificates", batch([row(2)])),
                            ("InvalidateCertificates", {})):
        assert status_of(getattr(anonymous, method), request)[0] == Code.UNAUTHENTICATED, method
    garbage = Certificates(plat.channel, metadata=(("authorization", "Bearer not-a-token"),))
    assert status_of(garbage.GetCertificate, {"certificate_number": number})[0] == \
        Code.UNAUTHENTICATED

    invalidate = {"selection": {"certificate_numbers": [number]},
                  "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "x"}
    assert status_of(owner.InvalidateCertificates, invalidate)[0] == Code.PERMISSION_DENIED
    assert status_of(owner.WithdrawCertificates, {"selection": {"certificate_numbers": [number]},
                                                  "decision_ref": "x"})[0] == \
        Code.PERMISSION_DENIED
    inspector = Certificates(plat.channel, "inspector")
    assert status_of(inspector.InvalidateCertificates, invalidate)[0] == Code.PERMISSION_DENIED
    assert status_of(inspector.IssueCertificates, batch([row(2)]))[0] == Code.PERMISSION_DENIED
    assert status_of(regulator(plat).IssueCertificates, batch([row(2)]))[0] == \
        Code.PERMISSION_DENIED
    # None of the refused calls changed anything.
    assert public(plat).VerifyCertificate({"certificate_number": number, "holder_name": name(1)}
                                          )["result"] == "VERIFICATION_RESULT_VALID"
    assert owner.GetIssuanceStats({})["issued_count"] == 1


def test_issuance_stats_count_per_occupation_level_and_status(plat):
    file_institution(plat, 410)
    client = issuer(plat, 410)
    at(plat, 2026, 6, 15)
    first = client.IssueCertificates(batch([row(1), row(2), row(3, level=3)]))
    # Reported 36 days after the assessment: accepted but flagged late (default 30 days).
    at(plat, 2026, 7, 16)
    late = client.IssueCertificates(batch([row(4), row(5, level=5)], session="2026-06-B"))
    assert late["late_reported"] is True and late["issued_count"] == 2
    regulator(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": [first["results"][0]["certificate_number"]]},
        "reason": "INVALIDATION_REASON_INELIGIBLE_CANDIDATE", "decision_ref": "安人社监〔2026〕50号"})

    stats = client.GetIssuanceStats({})
    assert stats["issued_count"] == 5
    by_level = {s["skill_level"]: s for s in stats["stats"]}
    assert by_level[4] == {"institution_id": uscc(410), "occupation_code": OCC, "skill_level": 4,
                           "issued_count": 3, "valid_count": 2, "invalidated_count": 1,
                           "late_reported_count": 1}
    assert by_level[3] == {"institution_id": uscc(410), "occupation_code": OCC, "skill_level": 3,
                           "issued_count": 1, "valid_count": 1}
    assert by_level[5] == {"institution_id": uscc(410), "occupation_code": OCC, "skill_level": 5,
                           "issued_count": 1, "valid_count": 1, "late_reported_count": 1}
    # Filters: period, level; the regulator asks about this institution by id.
    assert client.GetIssuanceStats({"issued_from": "2026-07-01"})["issued_count"] == 2
    assert client.GetIssuanceStats({"issued_to": "2026-06-30"})["issued_count"] == 3
    assert client.GetIssuanceStats({"skill_level": 4})["issued_count"] == 3
    assert regulator(plat).GetIssuanceStats({"institution_id": uscc(410)})["issued_count"] == 5
    listed = client.ListCertificates({"status": "CERTIFICATE_STATUS_INVALIDATED"})
    assert [c["certificate_number"] for c in listed["certificates"]] == \
        [first["results"][0]["certificate_number"]]


def test_bad_inputs_are_invalid_argument_and_store_nothing(plat):
    file_institution(plat, 411)
    at(plat, 2026, 6, 15)
    client = issuer(plat, 411)

    code, details = status_of(client.IssueCertificates,
                              batch([row(1)], session="bad session!", assessed="2026-06-16"))
    assert code == Code.INVALID_ARGUMENT
    assert "exam_session_id" in details and "2026-06-16 is in the future" in details
    assert status_of(client.IssueCertificates, batch([]))[0] == Code.INVALID_ARGUMENT
    assert status_of(client.IssueCertificates,
                     batch([row(1)], assessed="2026-6-1"))[0] == Code.INVALID_ARGUMENT
    assert status_of(client.IssueCertificates,
                     {"exam_session_id": "s", "rows": [row(1)]})[0] == Code.INVALID_ARGUMENT
    assert "certificates" not in client.ListCertificates({})
    assert client.GetIssuanceStats({}).get("issued_count", 0) == 0

    assert status_of(client.ListCertificates, {"issued_from": "yesterday"})[0] == \
        Code.INVALID_ARGUMENT
    assert status_of(client.ListCertificates, {"skill_level": 7})[0] == Code.INVALID_ARGUMENT
    assert status_of(client.GetCertificate, {"certificate_number": "S123"})[0] == \
        Code.INVALID_ARGUMENT
    assert status_of(client.GetCertificate, {})[0] == Code.INVALID_ARGUMENT

    anonymous = public(plat)
    code, details = status_of(anonymous.VerifyCertificate,
                              {"certificate_number": "not-a-number", "holder_name": ""})
    assert code == Code.INVALID_ARGUMENT
    assert "certificate_number" in details and "holder_name: required" in details

    # A valid batch afterwards is the first thing stored, with the first serials.
    filing_code = client.IssueCertificates(batch([row(1)]))["results"][0]["certificate_number"][:13]
    issued = client.ListCertificates({})["certificates"]
    assert [c["certificate_number"] for c in issued] == [f"{filing_code}264000001"]

    number = issued[0]["certificate_number"]
    reg = regulator(plat)
    for request in (
            {"selection": {"certificate_numbers": [number]}, "decision_ref": "x"},  # no reason
            {"selection": {"certificate_numbers": [number]},
             "reason": "INVALIDATION_REASON_DATA_WITHDRAWN", "decision_ref": "x"},
            {"selection": {"certificate_numbers": [number]},
             "reason": "INVALIDATION_REASON_FRAUD"},                               # no decision
            {"selection": {}, "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "x"},
            {"selection": {"certificate_numbers": [number],
                           "exam_session": {"institution_id": uscc(411),
                                            "exam_session_id": "2026-06-A"}},
             "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "x"}):
        assert status_of(reg.InvalidateCertificates, request)[0] == Code.INVALID_ARGUMENT, request
    # Nothing matched: NOT_FOUND.
    assert status_of(reg.InvalidateCertificates, {
        "selection": {"certificate_numbers": [f"{filing_code}264999999"]},
        "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "x"})[0] == Code.NOT_FOUND
    assert status_of(reg.GetCertificate, {"certificate_number": f"{filing_code}264999999"})[0] \
        == Code.NOT_FOUND
    assert public(plat).VerifyCertificate({"certificate_number": number, "holder_name": name(1)}
                                          )["result"] == "VERIFICATION_RESULT_VALID"


def test_invalidating_a_session_or_a_period_and_paging_the_register(plat):
    file_institution(plat, 412)
    client = issuer(plat, 412)
    at(plat, 2026, 6, 15)
    a = client.IssueCertificates(batch([row(i) for i in range(1, 4)], session="S-A"))
    at(plat, 2026, 7, 6)
    b = client.IssueCertificates(batch([row(i) for i in range(4, 6)], session="S-B",
                                       assessed="2026-07-01"))
    a_numbers = [r["certificate_number"] for r in a["results"]]
    b_numbers = [r["certificate_number"] for r in b["results"]]

    # Paged, in number order, three pages of 2, 2 and 1.
    pages, token = [], ""
    while True:
        page = client.ListCertificates({"page": {"page_size": 2, "page_token": token}})
        pages.append([c["certificate_number"] for c in page["certificates"]])
        token = page.get("page", {}).get("next_page_token", "")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == sorted(a_numbers + b_numbers)
    assert status_of(client.ListCertificates, {"page": {"page_size": 101}})[0] == \
        Code.INVALID_ARGUMENT

    at(plat, 2026, 8, 3)
    session = regulator(plat).InvalidateCertificates({
        "selection": {"exam_session": {"institution_id": uscc(412), "exam_session_id": "S-A"}},
        "reason": "INVALIDATION_REASON_QUESTION_LEAK", "decision_ref": "安人社监〔2026〕60号"})
    assert session["result"]["changed_count"] == 3
    period = regulator(plat).InvalidateCertificates({
        "selection": {"period": {"institution_id": uscc(412), "issued_from": "2026-06-01",
                                 "issued_to": "2026-07-31"}},
        "reason": "INVALIDATION_REASON_NON_STANDARD_MARKING", "decision_ref": "安人社监〔2026〕61号"})
    assert (period["result"]["changed_count"], period["result"]["unchanged_count"]) == (2, 3)
    for i, number in enumerate(a_numbers + b_numbers, start=1):
        answer = public(plat).VerifyCertificate({"certificate_number": number,
                                                 "holder_name": name(i)})
        assert answer["result"] == "VERIFICATION_RESULT_INVALIDATED"
        assert answer["reason"] == ("INVALIDATION_REASON_QUESTION_LEAK" if i <= 3 else
                                    "INVALIDATION_REASON_NON_STANDARD_MARKING")
        assert answer["effective_on"] == "2026-08-03"
    stats = client.GetIssuanceStats({})["stats"]
    assert [(s["issued_count"], s.get("valid_count", 0), s["invalidated_count"])
            for s in stats] == [(5, 0, 5)]
