"""The 备案 lifecycle on the real broker: clock, quotas, changes, renewal, status, evaluation
right, dynamic scope. Rules: seed 001 ch.2 and ch.6."""
from __future__ import annotations

import uuid

import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook

from services.filing.service import FilingService
from tests.support import PASSED_EVALUATION, application_request, conditions, token, uscc

OCC = "4-10-01-02"


def institution(rpc_as, n):
    return rpc_as(token("institution", n)).filing


def file_institution(rpc_as, regulator, n, district="410502", scope=None):
    request = application_request(n, district_code=district)
    if scope:
        request["scope"] = scope
    app = institution(rpc_as, n).SubmitApplication(request)["application"]
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    return regulator.DecideApplication({"application_id": app["application_id"],
                                        "outcome": "DECISION_OUTCOME_FILE",
                                        "evaluation": PASSED_EVALUATION})


def remote(call, *args):
    with pytest.raises(RemoteError) as info:
        call(*args)
    return info.value


def test_deadlines_across_national_day_and_overdue_decision_visible(filing, rpc_as, regulator,
                                                                     clock):
    clock.set(2025, 9, 26)  # Friday; Sunday 28th is a make-up working day, 1-8 Oct holidays
    app = institution(rpc_as, 1).SubmitApplication(application_request(1))["application"]
    assert app["acceptance_due"] == {"date": "2025-10-10", "provisional": False}
    clock.set(2025, 10, 11)  # the window has passed: deemed accepted on its last day
    with entrypoint_hook(filing, "sweep") as sweep:
        sweep()
    app = regulator.GetApplication({"application_id": app["application_id"]})["application"]
    assert app["accepted_by"] == "ACCEPTED_BY_DEEMED" and app["accepted_on"] == "2025-10-10"
    # 15 working days from 10 Oct: Saturday 11 Oct is a make-up working day.
    assert app["decision_due"]["date"] == "2025-10-30"
    pending = regulator.ListPendingDecisions({})
    assert pending["decisions"][0]["overdue"] is False
    clock.set(2025, 10, 31)
    late = regulator.ListPendingDecisions({"overdue_only": True})["decisions"]
    assert [d["application_id"] for d in late] == [app["application_id"]]
    assert late[0]["stage"] == "PENDING_STAGE_DECISION" and late[0]["working_days_overdue"] == 1


def test_fourth_applicant_in_city_districts_is_refused_with_the_quota_reason(filing, rpc_as,
                                                                           regulator):
    for n, district in ((1, "410502"), (2, "410503"), (3, "410505")):
        assert file_institution(rpc_as, regulator, n, district)["application"]["state"] == \
            "APPLICATION_STATE_FILED"
    app = institution(rpc_as, 4).SubmitApplication(
        application_request(4, district_code="410506"))["application"]
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    pending = regulator.ListPendingDecisions({})["decisions"]
    assert pending[0]["quota"][0]["filed"] == 3 and pending[0]["quota"][0]["limit"] == 3
    err = remote(regulator.DecideApplication, {"application_id": app["application_id"],
                                               "outcome": "DECISION_OUTCOME_FILE",
                                               "evaluation": PASSED_EVALUATION})
    assert err.exc_type == "FailedPrecondition"
    assert "occupation 4-10-01-02 already has 3 institutions in the city districts" in err.value
    still = regulator.GetApplication({"application_id": app["application_id"]})["application"]
    assert still["state"] == "APPLICATION_STATE_ACCEPTED"
    # A county has its own quota of 2.
    file_institution(rpc_as, regulator, 5, "410522")
    assert file_institution(rpc_as, regulator, 6, "410522")["application"]["state"] == \
        "APPLICATION_STATE_FILED"


def test_city_wide_quota_is_configurable(start_service, rpc_as, regulator):
    start_service(FilingService, FILING_CITY_QUOTA='{"default": 1}')
    file_institution(rpc_as, regulator, 1)
    app = institution(rpc_as, 2).SubmitApplication(
        application_request(2, district_code="410522"))["application"]
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    err = remote(regulator.DecideApplication, {"application_id": app["application_id"],
                                               "outcome": "DECISION_OUTCOME_FILE",
                                               "evaluation": PASSED_EVALUATION})
    assert "city-wide quota of 1" in err.value


def test_renewal_29_days_before_expiry_is_refused_30_accepted(filing, rpc_as, regulator, clock):
    receipt = file_institution(rpc_as, regulator, 1)["receipt"]
    assert receipt["valid_until"] == "2028-09-14"
    me = institution(rpc_as, 1)
    request = {"request_id": "renew-1", "institution_id": uscc(1),
               "materials": application_request(1)["materials"]}
    clock.set(2028, 8, 16)  # 29 days before 14 Sep
    err = remote(me.ApplyRenewal, request)
    assert err.exc_type == "FailedPrecondition" and "by 2028-08-15" in err.value
    assert len(me.ListApplications({})["applications"]) == 1
    clock.set(2028, 8, 15)
    answer = me.ApplyRenewal(request)
    assert answer["apply_by"] == "2028-08-15"
    app = answer["application"]
    assert app["kind"] == "APPLICATION_KIND_RENEWAL"
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    decided = regulator.DecideApplication({"application_id": app["application_id"],
                                           "outcome": "DECISION_OUTCOME_FILE",
                                           "evaluation": PASSED_EVALUATION})
    assert decided["receipt"]["valid_until"] == "2031-09-14"
    assert decided["receipt"]["filing_code"] == receipt["filing_code"]


def test_renewal_due_then_expiry_by_the_sweep(filing, rpc_as, regulator, clock):
    file_institution(rpc_as, regulator, 1)
    clock.set(2028, 7, 16)  # 60 days before 2028-09-14
    with entrypoint_hook(filing, "lifecycle_sweep") as sweep:
        assert sweep()["renewal_due"] == 1
        assert sweep()["renewal_due"] == 0  # raised once per validity period
        clock.set(2028, 9, 15)
        assert sweep()["expired"] == 1
    inst = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert inst["status"] == "INSTITUTION_STATUS_EXPIRED"
    assert inst["status_reason"] == "validity ended on 2028-09-14"
    right = regulator.CheckEvaluationRight({"institution_id": uscc(1), "occupation_code": OCC,
                                            "skill_level": 4, "on_date": "2028-09-15"})
    assert right["allowed"] is False and right["denial"] == "EVALUATION_DENIAL_EXPIRED"
    assert regulator.CheckEvaluationRight({"institution_id": uscc(1), "occupation_code": OCC,
                                           "skill_level": 4, "on_date": "2028-09-14"})["allowed"]


def test_change_filed_on_day_31_is_late_and_recorded(filing, rpc_as, regulator, clock):
    file_institution(rpc_as, regulator, 1)
    me = institution(rpc_as, 1)
    clock.set(2025, 10, 31)  # day 30 after 1 October: on time
    on_time = me.FileChange({"request_id": "c1", "institution_id": uscc(1),
                             "kind": "CHANGE_KIND_DETAILS", "legal_representative": "李四",
                             "changed_on": "2025-10-01"})
    assert on_time["late"] is False
    clock.set(2025, 11, 1)  # day 31
    late = me.FileChange({"request_id": "c2", "institution_id": uscc(1),
                          "kind": "CHANGE_KIND_DETAILS", "address": "河南省安阳市文峰区新地址8号",
                          "changed_on": "2025-10-01"})
    assert late["late"] is True
    inst = late["institution"]
    assert inst["address"] == "河南省安阳市文峰区新地址8号" and inst["legal_representative"] == "李四"
    assert [v["kind"] for v in inst["violations"]] == ["CHANGE_OVERDUE"]
    assert "1 days after" in inst["violations"][0]["description"]


def test_scope_change_is_evaluated_like_a_new_application(filing, rpc_as, regulator):
    file_institution(rpc_as, regulator, 1)
    me = institution(rpc_as, 1)
    scope = [{"occupation_code": OCC, "occupation_name": "育婴员", "skill_levels": [5, 4, 3]},
             {"occupation_code": "4-10-01-03", "occupation_name": "保育师", "skill_levels": [5]}]
    answer = me.FileChange({"request_id": "s1", "institution_id": uscc(1),
                            "kind": "CHANGE_KIND_SCOPE", "scope": scope,
                            "materials": application_request(1)["materials"]})
    app = answer["application"]
    assert app["kind"] == "APPLICATION_KIND_SCOPE_CHANGE" and app["state"] == "APPLICATION_STATE_RECEIVED"
    right = {"institution_id": uscc(1), "occupation_code": "4-10-01-03", "skill_level": 5,
             "on_date": "2025-09-15"}
    assert regulator.CheckEvaluationRight(right)["denial"] == \
        "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    regulator.DecideApplication({"application_id": app["application_id"],
                                 "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    inst = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert [s["occupation_code"] for s in inst["scope"]] == [OCC, "4-10-01-03"]
    assert regulator.CheckEvaluationRight(right)["allowed"] is True


def test_suspend_reinstate_terminate_and_evaluation_right(filing, rpc_as, regulator, clock):
    file_institution(rpc_as, regulator, 1)
    ask = {"institution_id": uscc(1), "occupation_code": OCC, "skill_level": 4}
    service = rpc_as(token("service")).filing
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-09-14"})["denial"] == \
        "EVALUATION_DENIAL_BEFORE_FILING"
    assert service.CheckEvaluationRight({**ask, "skill_level": 1, "on_date": "2025-09-15"})[
        "denial"] == "EVALUATION_DENIAL_LEVEL_OUT_OF_SCOPE"
    clock.set(2025, 10, 9)
    regulator.SuspendInstitution({"institution_id": uscc(1), "reason": "rectification",
                                  "decision_ref": "安人社〔2025〕1号"})
    suspended = service.CheckEvaluationRight({**ask, "on_date": "2025-10-09"})
    assert suspended["allowed"] is False and "suspended since 2025-10-09" in suspended["reason"]
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-08"})["allowed"] is True
    clock.set(2025, 10, 20)
    regulator.ReinstateInstitution({"institution_id": uscc(1), "reason": "rectified",
                                    "decision_ref": "安人社〔2025〕2号"})
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-20"})["allowed"] is True
    inst = regulator.TerminateFiling({"institution_id": uscc(1), "reason": "false materials",
                                      "decision_ref": "安人社〔2025〕3号"})["institution"]
    assert inst["status"] == "INSTITUTION_STATUS_TERMINATED"
    assert inst["status_decision_ref"] == "安人社〔2025〕3号"
    assert [h["status"] for h in inst["history"]] == [
        "INSTITUTION_STATUS_ACTIVE", "INSTITUTION_STATUS_SUSPENDED", "INSTITUTION_STATUS_ACTIVE",
        "INSTITUTION_STATUS_TERMINATED"]
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-21"})["denial"] == \
        "EVALUATION_DENIAL_TERMINATED"
    err = remote(regulator.ReinstateInstitution, {"institution_id": uscc(1), "reason": "x",
                                                  "decision_ref": "y"})
    assert err.exc_type == "FailedPrecondition"
    unknown = service.CheckEvaluationRight({**ask, "institution_id": uscc(9),
                                            "on_date": "2025-10-21"})
    assert unknown == {"allowed": False, "reason": "the institution is not filed",
                       "denial": "EVALUATION_DENIAL_NOT_FILED"}


def test_dynamic_scope_proposals_spare_the_sole_provider(filing, rpc_as, regulator, clock,
                                                         rabbit_config):
    two = [{"occupation_code": OCC, "occupation_name": "育婴员", "skill_levels": [4]},
           {"occupation_code": "6-01-02-03", "occupation_name": "面包师", "skill_levels": [4]}]
    file_institution(rpc_as, regulator, 1, scope=two)
    file_institution(rpc_as, regulator, 2, district="410503")  # OCC only
    dispatch = event_dispatcher(rabbit_config)
    # As certificates publishes it (its events.proto): the batch's one assessment date.
    event = {"meta": {"event_id": uuid.uuid4().hex}, "institution_id": uscc(2),
             "assessment_date": "2026-06-01",
             "counts": [{"occupation_code": OCC, "skill_level": 4, "count": 600}]}
    dispatch("certificates", "CertificatesIssued", event)
    dispatch("certificates", "CertificatesIssued", event)  # a redelivery counts once
    import eventlet
    for _ in range(50):
        activity = regulator.GetInstitution({"institution_id": uscc(2)})["institution"].get(
            "activity")
        if activity:
            break
        eventlet.sleep(0.1)
    clock.set(2026, 9, 16)  # 12 months and a day after filing
    with entrypoint_hook(filing, "lifecycle_sweep") as sweep:
        assert sweep()["proposals"] == 2
        assert sweep()["proposals"] == 0  # once a day, never twice while open
    inst2 = regulator.GetInstitution({"institution_id": uscc(2)})["institution"]
    assert inst2["activity"] == [{"occupation_code": OCC, "last_evaluation_on": "2026-06-01",
                                  "count_12_months": 600}]
    assert not inst2.get("proposals")
    inst1 = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    kinds = sorted((p["kind"], p.get("occupation_code", "")) for p in inst1["proposals"])
    # 6-01-02-03 is idle too, but institution 1 is its only provider: not proposed.
    assert kinds == [("PROPOSAL_KIND_SCOPE_REMOVAL", OCC), ("PROPOSAL_KIND_TERMINATION", "")]
    assert len(inst1["scope"]) == 2  # nothing removed until the regulator decides
    removal = next(p for p in inst1["proposals"] if p["kind"] == "PROPOSAL_KIND_SCOPE_REMOVAL")
    assert len(regulator.ListPendingDecisions({})["proposals"]) == 2
    inst1 = regulator.DecideProposal({"institution_id": uscc(1),
                                      "proposal_id": removal["proposal_id"],
                                      "outcome": "PROPOSAL_OUTCOME_APPROVE",
                                      "reason": "idle 12 months", "decision_ref": "D-1"})[
        "institution"]
    assert [s["occupation_code"] for s in inst1["scope"]] == ["6-01-02-03"]


def test_bad_inputs_are_answered_precisely_and_nothing_is_stored(filing, rpc_as, regulator):
    me = institution(rpc_as, 1)
    request = application_request(1, name="中国第一培训包过中心")
    request["request_id"] = ""
    request["conditions"] = {"evaluation_history_since": "2025-02-30",
                             "occupations": [{"occupation_code": "9-99-99-99"}]}
    err = remote(me.SubmitApplication, request)
    assert err.exc_type == "InvalidArgument"
    for part in ("request_id: required", "institution.name: uses prohibited words 中国, 包过",
                 "conditions.evaluation_history_since: 2025-02-30 is not a calendar date",
                 "conditions.occupations[0].occupation_code: 9-99-99-99 is not in the scope",
                 "conditions.occupations: no entry for 4-10-01-02"):
        assert part in err.value
    assert regulator.ListApplications({})["applications"] == []
    err = remote(regulator.CheckEvaluationRight, {"skill_level": 7, "on_date": "2025/10/01"})
    assert err.exc_type == "InvalidArgument" and err.value.count(";") == 3
    file_institution(rpc_as, regulator, 1)
    err = remote(me.FileChange, {"request_id": "c1", "institution_id": uscc(1),
                                 "kind": "CHANGE_KIND_DETAILS", "name": "全国培训中心",
                                 "changed_on": "2099-01-01"})
    assert "name: uses prohibited words 全国" in err.value and "in the future" in err.value
    inst = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert inst["name"] == application_request(1)["institution"]["name"]
    assert not inst.get("violations")
    err = remote(regulator.SuspendInstitution, {"institution_id": uscc(1)})
    assert err.value == "reason: required; decision_ref: required (the decision's document number)"
    answer = rpc_as().filing.CheckName({"name": "国家职业技能鉴定中心"})
    assert answer["acceptable"] is False
    assert answer["prohibited_words"] == ["国家", "职业技能鉴定"]


def test_unmet_conditions_block_filing_and_urgent_occupations_are_relaxed(start_service, rpc_as,
                                                                          regulator):
    start_service(FilingService, FILING_URGENT_OCCUPATIONS="4-10-01-02")
    request = application_request(1)
    request["conditions"] = conditions(since="2024-01-01", person_times=800, occupations=(OCC,))
    app = institution(rpc_as, 1).SubmitApplication(request)["application"]
    assert app.get("unmet_conditions", []) == []  # urgent: 1 year and 500 suffice
    request2 = application_request(2)
    request2["conditions"] = {**request["conditions"], "good_credit": False}
    app2 = institution(rpc_as, 2).SubmitApplication(request2)["application"]
    assert app2["unmet_conditions"] == [
        "condition (一) good credit without a record of violations or dishonesty not met"]
    regulator.AcceptApplication({"application_id": app2["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    err = remote(regulator.DecideApplication, {"application_id": app2["application_id"],
                                               "outcome": "DECISION_OUTCOME_FILE",
                                               "evaluation": PASSED_EVALUATION})
    assert "good credit" in err.value


def test_wrong_roles_and_other_institutions(filing, rpc_as, regulator):
    file_institution(rpc_as, regulator, 1)
    other = institution(rpc_as, 2)
    for call, payload in ((other.SuspendInstitution, {"institution_id": uscc(1), "reason": "r",
                                                      "decision_ref": "d"}),
                          (other.GetInstitution, {"institution_id": uscc(1)}),
                          (other.ListApplications, {"institution_id": uscc(1)}),
                          (other.ListPendingDecisions, {}),
                          (other.FileChange, {"request_id": "x", "institution_id": uscc(1),
                                              "kind": "CHANGE_KIND_DETAILS", "name": "安阳新名字",
                                              "changed_on": "2025-09-15"})):
        assert remote(call, payload).exc_type == "PermissionDenied"
    assert remote(regulator.FileChange, {}).exc_type == "PermissionDenied"
    assert remote(rpc_as().filing.CheckEvaluationRight, {}).exc_type == "Unauthenticated"
    assert rpc_as(token("inspector")).filing.CheckName({"name": "安阳培训中心"})["acceptable"]
