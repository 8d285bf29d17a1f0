"""The certificate registry on the real broker, with a stand-in filing service.

Filing's CheckEvaluationRight is being built in issue 3; FakeFiling below answers
GetInstitution and CheckEvaluationRight as agreed, so these tests do not depend on it.
"""
from __future__ import annotations

import pytest
from nameko.events import event_handler
from nameko.exceptions import RemoteError
from nameko.rpc import rpc
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_waiter

from services.certificates import domain
from services.certificates.service import CertificateRegistryService
from services.common.api import CallContext
from services.common.auth import verify_token
from services.common.errors import NotFound
from tests.support import token, uscc

OCCUPATION = "4-10-01-02"      # 育婴员, filed at levels 5, 4, 3
OTHER_OCCUPATION = "4-03-02-01"  # not in anybody's scope


def holder(i: int) -> str:
    first17 = f"41050219900307{i:03d}"
    return first17 + domain.id_check_character(first17)


def wrong_check(number: str) -> str:
    return number[:17] + ("1" if number[17] != "1" else "2")


class FakeFiling:
    """Test double of the filing service: the two RPCs the registry uses, with the answers
    the test sets, and a record of who asked what."""

    name = "filing"
    call = CallContext()
    institutions: dict = {}
    scope: dict = {}
    asked: list = []

    @rpc(expected_exceptions=NotFound)
    def GetInstitution(self, request):
        FakeFiling.asked.append(("GetInstitution", verify_token(self.call.token), request))
        institution = FakeFiling.institutions.get(request["institution_id"])
        if institution is None:
            raise NotFound("not filed")
        return {"institution": institution}

    @rpc
    def CheckEvaluationRight(self, request):
        FakeFiling.asked.append(("CheckEvaluationRight", verify_token(self.call.token), request))
        levels = FakeFiling.scope.get(request["institution_id"], {}).get(request["occupation_code"])
        if levels is None:
            return {"allowed": False, "reason": f"occupation {request['occupation_code']} is not filed"}
        if request["skill_level"] not in levels:
            return {"allowed": False, "reason": f"level {request['skill_level']} is not filed"}
        return {"allowed": True, "reason": ""}


class EventLog:
    name = "certificates_event_log"
    seen: list = []

    @event_handler("certificates", "CertificatesIssued")
    def issued(self, body):
        EventLog.seen.append(("CertificatesIssued", body))

    @event_handler("certificates", "CertificatesInvalidated")
    def invalidated(self, body):
        EventLog.seen.append(("CertificatesInvalidated", body))

    @event_handler("certificates", "CertificatesWithdrawn")
    def withdrawn(self, body):
        EventLog.seen.append(("CertificatesWithdrawn", body))


def institution(n: int, status="INSTITUTION_STATUS_ACTIVE") -> dict:
    return {"institution_id": uscc(n), "name": f"安阳市第{n}职业技能培训评价中心",
            "filing_code": f"S000041{n:06d}", "status": status,
            "scope": [{"occupation_code": OCCUPATION, "skill_levels": [5, 4, 3]}]}


@pytest.fixture
def registry(start_service, clock):
    FakeFiling.institutions = {uscc(1): institution(1), uscc(2): institution(2)}
    FakeFiling.scope = {uscc(1): {OCCUPATION: [5, 4, 3]}, uscc(2): {OCCUPATION: [5, 4, 3]}}
    FakeFiling.asked = []
    clock.set(2026, 11, 21)
    start_service(FakeFiling, replace_clock=False)
    return start_service(CertificateRegistryService)


@pytest.fixture
def event_log(start_service):
    EventLog.seen = []
    return start_service(EventLog, replace_clock=False)


def row(i: int, level: int = 4, occupation: str = OCCUPATION, **overrides) -> dict:
    data = {"row_ref": f"ticket-{i}", "holder_name": f"张{'三四五六七八九十'[i % 8]}丰",
            "holder_id_number": holder(i), "occupation_code": occupation,
            "occupation_name": "育婴员", "skill_level": level}
    data.update(overrides)
    return data


def batch(rows, session="2026-11-A", assessed="2026-11-10") -> dict:
    return {"exam_session_id": session, "assessment_date": assessed, "rows": rows}


def remote_error(call, *args) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        call(*args)
    return caught.value


# --- issuing -------------------------------------------------------------------------------
def test_mixed_batch_issues_valid_rows_and_explains_the_others(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    answer = inst.certificates.IssueCertificates(batch([
        row(1), row(2), row(3, level=3),
        row(4, holder_id_number=wrong_check(holder(4))),       # wrong check character
        row(5, holder_name=""),                                 # no name
        row(6, skill_level=9),                                  # no such level
        row(1),                                                 # row 0 again
    ]))
    assert (answer["issued_count"], answer["rejected_count"], answer["duplicate_count"]) == (3, 4, 0)
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["ROW_STATUS_ISSUED"] * 3 + ["ROW_STATUS_REJECTED"] * 4
    assert answer["results"][3]["errors"] == ["holder_id_number: check character is wrong"]
    assert answer["results"][4]["errors"] == ["holder_name: required"]
    assert "skill_level" in answer["results"][5]["errors"][0]
    assert "duplicate of row 0" in answer["results"][6]["errors"][0]
    assert holder(4) not in str(answer)  # personal data is not echoed in errors

    numbers = [r["certificate_number"] for r in answer["results"][:3]]
    # filing code S000041000001, year 26, level, serial per evaluator+year+level
    assert numbers == ["S000041000001264000001", "S000041000001264000002",
                       "S000041000001263000001"]
    assert answer["late_reported"] is False

    # Filing was asked once per occupation and level, as the registry itself.
    rights = [a for a in FakeFiling.asked if a[0] == "CheckEvaluationRight"]
    assert sorted((a[2]["occupation_code"], a[2]["skill_level"]) for a in rights) == \
        [(OCCUPATION, 3), (OCCUPATION, 4)]
    assert {(a[1].role, a[1].subject) for a in FakeFiling.asked} == {("service", "certificates")}
    assert rights[0][2]["on_date"] == "2026-11-10"

    got = inst.certificates.GetCertificate({"certificate_number": numbers[0]})["certificate"]
    assert got["holder_id_number"] == holder(1) and got["status"] == "CERTIFICATE_STATUS_VALID"
    assert got["issued_on"] == "2026-11-21" and got["institution_id"] == uscc(1)


def test_issued_event_counts_per_occupation_and_level(registry, event_log, rpc_as):
    inst = rpc_as(token("institution", 1))
    with entrypoint_waiter(event_log, "issued"):
        inst.certificates.IssueCertificates(batch([row(1), row(2), row(3, level=3)]))
    kind, body = EventLog.seen[-1]
    assert kind == "CertificatesIssued" and body["institution_id"] == uscc(1)
    assert body["meta"]["event_id"] and body["total"] == 3
    assert body["counts"] == [
        {"occupation_code": OCCUPATION, "skill_level": 3, "count": 1, "late_reported_count": 0},
        {"occupation_code": OCCUPATION, "skill_level": 4, "count": 2, "late_reported_count": 0}]


def test_out_of_scope_occupation_and_level_are_refused_per_row(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    answer = inst.certificates.IssueCertificates(batch([
        row(1), row(2, occupation=OTHER_OCCUPATION), row(3, level=1)]))
    assert answer["issued_count"] == 1 and answer["rejected_count"] == 2
    assert "outside the institution's filed scope: occupation 4-03-02-01 is not filed" in \
        answer["results"][1]["errors"][0]
    assert "level 1 is not filed" in answer["results"][2]["errors"][0]


def test_duplicate_upload_returns_the_first_numbers(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    first = inst.certificates.IssueCertificates(batch([row(1), row(2)]))
    again = inst.certificates.IssueCertificates(batch([row(1), row(2), row(3)]))
    assert [r["status"] for r in again["results"]] == \
        ["ROW_STATUS_DUPLICATE", "ROW_STATUS_DUPLICATE", "ROW_STATUS_ISSUED"]
    assert [r["certificate_number"] for r in again["results"][:2]] == \
        [r["certificate_number"] for r in first["results"]]
    # no serial was spent on the duplicates
    assert again["results"][2]["certificate_number"] == "S000041000001264000003"
    # another session is another exam: the same holder may be certified again
    other = inst.certificates.IssueCertificates(batch([row(1)], session="2026-11-B"))
    assert other["issued_count"] == 1


def test_a_number_handed_out_twice_is_refused_by_the_database(registry, rpc_as):
    """The unique index on certificate numbers, not only the counter: with the counter set
    back (a restore from an older backup), the next row would get a number already issued.
    The database refuses that row, the upload says so, and the first certificate stands."""
    import mongoengine

    inst = rpc_as(token("institution", 1))
    first = inst.certificates.IssueCertificates(batch([row(1)]))
    number = first["results"][0]["certificate_number"]
    assert number == "S000041000001264000001"
    counters = mongoengine.get_db("certificates")["counters"]
    assert counters.update_one({"_id": "S000041000001:26:4"},
                               {"$set": {"value": 0}}).modified_count == 1

    answer = inst.certificates.IssueCertificates(batch([row(2)]))
    assert (answer["issued_count"], answer["rejected_count"]) == (0, 1)
    assert answer["results"][0]["errors"] == ["could not be stored; upload the row again"]
    kept = inst.certificates.GetCertificate({"certificate_number": number})["certificate"]
    assert kept["holder_id_number"] == holder(1)
    # The counter moved past the taken serial: the row goes through when uploaded again.
    again = inst.certificates.IssueCertificates(batch([row(2)]))
    assert again["results"][0]["certificate_number"] == "S000041000001264000002"


def test_late_reporting_is_accepted_and_flagged(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    answer = inst.certificates.IssueCertificates(batch([row(1)], assessed="2026-10-21"))
    assert answer["issued_count"] == 1 and answer["late_reported"] is True
    stats = rpc_as(token("regulator")).certificates.GetIssuanceStats({"institution_id": uscc(1)})
    assert stats["stats"][0]["late_reported_count"] == 1


def test_future_assessment_and_bad_envelope_are_invalid_argument(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    err = remote_error(inst.certificates.IssueCertificates,
                       {"exam_session_id": "", "assessment_date": "2026-11-22", "rows": []})
    assert err.exc_type == "InvalidArgument"
    assert "exam_session_id" in err.value and "future" in err.value and "rows" in err.value


def test_suspended_institution_is_refused_until_reinstated(registry, rpc_as, rabbit_config):
    inst = rpc_as(token("institution", 1))
    issued = inst.certificates.IssueCertificates(batch([row(1)]))
    number = issued["results"][0]["certificate_number"]

    dispatch = event_dispatcher(rabbit_config)
    with entrypoint_waiter(registry, "on_institution_suspended"):
        dispatch("filing", "InstitutionSuspended", {
            "meta": {"event_id": "ev-1", "occurred_at": "2026-11-21T01:00:00Z", "source": "filing"},
            "institution_id": uscc(1), "reason": "rectification order 2026-17"})
    err = remote_error(inst.certificates.IssueCertificates, batch([row(2)], session="B"))
    assert err.exc_type == "FailedPrecondition"
    assert "suspended" in err.value and "rectification order 2026-17" in err.value
    # nothing already issued changes
    verified = rpc_as().certificates.VerifyCertificate(
        {"certificate_number": number, "holder_name": row(1)["holder_name"]})
    assert verified["result"] == "VERIFICATION_RESULT_VALID"
    # the other institution is not affected
    other = rpc_as(token("institution", 2)).certificates.IssueCertificates(batch([row(1)]))
    assert other["issued_count"] == 1

    # a redelivered suspension changes nothing; an older event does not undo a newer one
    with entrypoint_waiter(registry, "on_institution_reinstated"):
        dispatch("filing", "InstitutionReinstated", {
            "meta": {"event_id": "ev-2", "occurred_at": "2026-11-21T03:00:00Z", "source": "filing"},
            "institution_id": uscc(1)})
    with entrypoint_waiter(registry, "on_institution_suspended"):
        dispatch("filing", "InstitutionSuspended", {
            "meta": {"event_id": "ev-1", "occurred_at": "2026-11-21T01:00:00Z", "source": "filing"},
            "institution_id": uscc(1), "reason": "rectification order 2026-17"})
    assert inst.certificates.IssueCertificates(batch([row(2)], session="B"))["issued_count"] == 1

    with entrypoint_waiter(registry, "on_filing_terminated"):
        dispatch("filing", "FilingTerminated", {
            "meta": {"event_id": "ev-3", "occurred_at": "2026-11-21T04:00:00Z", "source": "filing"},
            "institution_id": uscc(1), "reason": "certificate fraud"})
    err = remote_error(inst.certificates.IssueCertificates, batch([row(3)], session="C"))
    assert err.exc_type == "FailedPrecondition" and "terminated" in err.value


def test_an_institution_filed_again_issues_whatever_order_the_bus_delivers_in(
        registry, rpc_as, rabbit_config):
    inst = rpc_as(token("institution", 1))
    dispatch = event_dispatcher(rabbit_config)

    def deliver(handler, event_type, event_id, sequence, **body):
        with entrypoint_waiter(registry, handler):
            dispatch("filing", event_type, {
                "meta": {"event_id": event_id, "occurred_at": "2026-11-21T01:00:00Z",
                         "source": "filing", "aggregate_id": uscc(1), "sequence": sequence},
                "institution_id": uscc(1), **body})

    deliver("on_filing_terminated", "FilingTerminated", "t-2", 2, reason="fraud")
    err = remote_error(inst.certificates.IssueCertificates, batch([row(1)]))
    assert err.exc_type == "FailedPrecondition" and "terminated" in err.value
    deliver("on_institution_filed", "InstitutionFiled", "f-3", 3)
    assert inst.certificates.IssueCertificates(batch([row(1)]))["issued_count"] == 1
    # the termination again (redelivered) and the first filing (late) change nothing
    deliver("on_filing_terminated", "FilingTerminated", "t-2", 2, reason="fraud")
    deliver("on_institution_filed", "InstitutionFiled", "f-1", 1)
    assert inst.certificates.IssueCertificates(batch([row(2)], session="B"))["issued_count"] == 1


def test_institution_filing_says_suspended_even_without_the_event(registry, rpc_as):
    FakeFiling.institutions[uscc(1)] = institution(1, status="INSTITUTION_STATUS_SUSPENDED")
    err = remote_error(rpc_as(token("institution", 1)).certificates.IssueCertificates,
                       batch([row(1)]))
    assert err.exc_type == "FailedPrecondition" and "suspended" in err.value


def test_unfiled_institution_cannot_issue(registry, rpc_as):
    err = remote_error(rpc_as(token("institution", 9)).certificates.IssueCertificates,
                       batch([row(1)]))
    assert err.exc_type == "FailedPrecondition" and "not filed" in err.value


# --- verification, invalidation, withdrawal -----------------------------------------------
def test_verification_after_invalidation_and_withdrawal(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    regulator = rpc_as(token("regulator"))
    public = rpc_as()
    answer = inst.certificates.IssueCertificates(batch([row(1), row(2), row(3)]))
    n1, n2, n3 = [r["certificate_number"] for r in answer["results"]]
    name1 = row(1)["holder_name"]

    valid = public.certificates.VerifyCertificate({"certificate_number": n1, "holder_name": name1})
    assert valid["result"] == "VERIFICATION_RESULT_VALID"
    assert valid["holder_name_masked"] == name1[0] + "*" + name1[-1]
    assert valid["holder_id_number_masked"] == holder(1)[:3] + "*" * 11 + holder(1)[-4:]
    assert holder(1) not in str(valid) and "institution_id" not in valid

    # wrong name and unknown number look the same
    wrong = public.certificates.VerifyCertificate({"certificate_number": n1, "holder_name": "李四"})
    unknown = public.certificates.VerifyCertificate(
        {"certificate_number": "S000041000001264999999", "holder_name": name1})
    assert wrong["result"] == unknown["result"] == "VERIFICATION_RESULT_NOT_FOUND"
    assert set(wrong) == set(unknown) == {"result", "certificate_number"}

    result = regulator.certificates.InvalidateCertificates({
        "selection": {"certificate_numbers": [n1, "S000041000001264888888"]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "安人社监〔2026〕3号"})["result"]
    assert result["changed_count"] == 1 and result["not_found"] == ["S000041000001264888888"]
    void = public.certificates.VerifyCertificate({"certificate_number": n1, "holder_name": name1})
    assert void["result"] == "VERIFICATION_RESULT_INVALIDATED"
    assert void["reason"] == "INVALIDATION_REASON_EXAM_MISCONDUCT"
    assert void["effective_on"] == "2026-11-21"

    # permanent: invalidating again or withdrawing it changes nothing
    again = regulator.certificates.InvalidateCertificates({
        "selection": {"certificate_numbers": [n1]}, "reason": "INVALIDATION_REASON_FRAUD",
        "decision_ref": "D-2"})["result"]
    assert (again["changed_count"], again["unchanged_count"]) == (0, 1)

    withdrawn = regulator.certificates.WithdrawCertificates({
        "selection": {"exam_session": {"institution_id": uscc(1), "exam_session_id": "2026-11-A"}},
        "decision_ref": "人社部函〔2026〕8号", "recover_subsidies": True})["result"]
    assert (withdrawn["changed_count"], withdrawn["unchanged_count"]) == (2, 1)
    w = public.certificates.VerifyCertificate({"certificate_number": n2, "holder_name": row(2)["holder_name"]})
    assert w["result"] == "VERIFICATION_RESULT_WITHDRAWN"
    assert w["reason"] == "INVALIDATION_REASON_DATA_WITHDRAWN"
    still_void = public.certificates.VerifyCertificate({"certificate_number": n1, "holder_name": name1})
    assert still_void["reason"] == "INVALIDATION_REASON_EXAM_MISCONDUCT"

    stats = regulator.certificates.GetIssuanceStats({"institution_id": uscc(1)})
    assert stats["stats"] == [{"institution_id": uscc(1), "occupation_code": OCCUPATION,
                               "skill_level": 4, "issued_count": 3, "valid_count": 0,
                               "invalidated_count": 1, "withdrawn_count": 2,
                               "late_reported_count": 0}]
    listed = inst.certificates.ListCertificates({"status": "CERTIFICATE_STATUS_WITHDRAWN"})
    assert sorted(c["certificate_number"] for c in listed["certificates"]) == [n2, n3]


def test_invalidate_by_period(registry, rpc_as, clock):
    inst = rpc_as(token("institution", 1))
    inst.certificates.IssueCertificates(batch([row(1)]))
    clock.set(2026, 12, 2)
    inst.certificates.IssueCertificates(batch([row(2)], session="B", assessed="2026-12-01"))
    result = rpc_as(token("regulator")).certificates.InvalidateCertificates({
        "selection": {"period": {"institution_id": uscc(1), "issued_from": "2026-11-01",
                                 "issued_to": "2026-11-30"}},
        "reason": "INVALIDATION_REASON_QUESTION_LEAK", "decision_ref": "D-9"})["result"]
    assert result["changed_count"] == 1


# --- access --------------------------------------------------------------------------------
def test_an_institution_cannot_read_another_institutions_certificates(registry, rpc_as):
    mine = rpc_as(token("institution", 1)).certificates.IssueCertificates(batch([row(1)]))
    number = mine["results"][0]["certificate_number"]
    other = rpc_as(token("institution", 2))
    assert remote_error(other.certificates.GetCertificate,
                        {"certificate_number": number}).exc_type == "PermissionDenied"
    assert remote_error(other.certificates.ListCertificates,
                        {"institution_id": uscc(1)}).exc_type == "PermissionDenied"
    assert remote_error(other.certificates.GetIssuanceStats,
                        {"institution_id": uscc(1)}).exc_type == "PermissionDenied"
    assert other.certificates.ListCertificates({})["certificates"] == []
    assert rpc_as(token("inspector")).certificates.GetCertificate(
        {"certificate_number": number})["certificate"]["certificate_number"] == number


def test_wrong_role_and_no_token(registry, rpc_as):
    assert remote_error(rpc_as(token("inspector")).certificates.IssueCertificates,
                        batch([row(1)])).exc_type == "PermissionDenied"
    assert remote_error(rpc_as(token("institution", 1)).certificates.InvalidateCertificates, {
        "selection": {"certificate_numbers": ["S000041000001264000001"]},
        "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "D"}).exc_type == "PermissionDenied"
    assert remote_error(rpc_as().certificates.GetCertificate,
                        {"certificate_number": "S000041000001264000001"}).exc_type == "Unauthenticated"


def test_unknown_ids(registry, rpc_as):
    regulator = rpc_as(token("regulator"))
    assert remote_error(regulator.certificates.GetCertificate,
                        {"certificate_number": "S000041000001264000001"}).exc_type == "NotFound"
    assert remote_error(regulator.certificates.WithdrawCertificates, {
        "selection": {"exam_session": {"institution_id": uscc(1), "exam_session_id": "nope"}},
        "decision_ref": "D"}).exc_type == "NotFound"


def test_wrong_types_and_values_are_invalid_argument(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    regulator = rpc_as(token("regulator"))
    cases = [
        (inst.certificates.IssueCertificates, batch([row(1, skill_level="four")])),
        (inst.certificates.IssueCertificates, {"rows": "not a list"}),
        (inst.certificates.IssueCertificates, {"unknown_field": 1}),
        (inst.certificates.IssueCertificates, ["not", "an", "object"]),
        (regulator.certificates.GetCertificate, {"certificate_number": "S123"}),
        (regulator.certificates.ListCertificates, {"skill_level": 8, "issued_from": "21.11.2026"}),
        (regulator.certificates.ListCertificates, {"page": {"page_token": "garbage"}}),
        (rpc_as().certificates.VerifyCertificate, {"certificate_number": "x", "holder_name": ""}),
        (regulator.certificates.InvalidateCertificates, {"selection": {}}),
    ]
    for call, request in cases:
        assert remote_error(call, request).exc_type == "InvalidArgument", request
    err = remote_error(regulator.certificates.ListCertificates,
                       {"skill_level": 8, "issued_from": "21.11.2026"})
    assert "skill_level" in err.value and "issued_from" in err.value


def test_list_pages_through_own_certificates(registry, rpc_as):
    inst = rpc_as(token("institution", 1))
    inst.certificates.IssueCertificates(batch([row(i) for i in range(1, 6)]))
    first = inst.certificates.ListCertificates({"page": {"page_size": 3}})
    assert len(first["certificates"]) == 3 and first["page"]["next_page_token"]
    rest = inst.certificates.ListCertificates(
        {"page": {"page_size": 3, "page_token": first["page"]["next_page_token"]}})
    assert len(rest["certificates"]) == 2 and not rest["page"].get("next_page_token")


def test_sweep_finishes_an_operation_a_crash_left_pending(registry, event_log, rpc_as, clock):
    from nameko.testing.services import entrypoint_hook

    from services.certificates.models import Operation

    answer = rpc_as(token("institution", 1)).certificates.IssueCertificates(batch([row(1), row(2)]))
    # As if the batch were still running in this (live) worker: the sweep leaves it alone.
    Operation.objects(pk=answer["batch_id"]).update_one(set__state="PENDING", set__pending_events=[])
    EventLog.seen = []
    with entrypoint_hook(registry, "sweep") as sweep:
        assert sweep()["finished"] == 0  # its worker is alive: it may still be running
        # As if the worker that ran it had died (it beats no more) before finishing the batch:
        # the sweep leaves it to its caller's retry (which has the rows) for the stale window,
        clock.set(2026, 11, 21, hour=2)
        Operation.objects(pk=answer["batch_id"]).update_one(set__owner="a-worker-that-died")
        assert sweep()["finished"] == 0
        clock.set(2026, 11, 21, hour=3)  # then closes it with what was stored
        with entrypoint_waiter(event_log, "issued"):
            assert sweep()["finished"] == 1
    kind, body = EventLog.seen[-1]
    assert kind == "CertificatesIssued" and body["batch_id"] == answer["batch_id"]
    assert body["total"] == 2
    assert Operation.objects.get(pk=answer["batch_id"]).state == "DONE"
