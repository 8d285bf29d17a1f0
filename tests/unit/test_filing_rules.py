"""Pure filing lifecycle rules (services/filing/domain/lifecycle.py): no broker, no database."""
from __future__ import annotations

from datetime import date

import pytest

from services.common.errors import FailedPrecondition
from services.common.workdays import WorkdayCalendar
from services.filing import domain

OCC = "4-10-01-02"
AREAS = domain.ANYANG_AREAS


def test_national_day_and_make_up_days():
    cal = WorkdayCalendar()
    # Received Friday 26 Sep 2025: Sunday 28th works, 1-8 Oct off.
    assert domain.acceptance_due(date(2025, 9, 26), cal).date == date(2025, 10, 10)
    # Accepted 10 Oct: Saturday 11 Oct is a make-up working day.
    assert domain.decision_due(date(2025, 10, 10), cal).date == date(2025, 10, 30)


def good_conditions(count=2000, since="2022-01-01"):
    return {"registered_legal_person": True, "good_credit": True, "dedicated_unit": True,
            "management_rules": True, "not_for_profit_pledge": True,
            "evaluation_history_since": since,
            "occupations": [{"occupation_code": OCC, "premises_fit": True,
                             "video_surveillance": True, "premises_in_registered_area": True,
                             "staff_examiners_supervisors_experts": True, "question_bank": True,
                             "person_times_last_3_years": count}]}


def test_conditions_history_and_person_times():
    errors = []
    ok = domain.check_conditions(good_conditions(), [OCC], errors)
    assert errors == [] and domain.unmet_conditions(ok, date(2025, 1, 1), frozenset()) == []
    short = domain.check_conditions(good_conditions(1999, "2022-01-02"), [OCC], errors)
    unmet = domain.unmet_conditions(short, date(2025, 1, 1), frozenset())
    assert len(unmet) == 2 and "under 3 years" in unmet[0] and "1999" in unmet[1]
    assert domain.unmet_conditions(short, date(2025, 1, 1), frozenset({OCC})) == []


def test_conditions_malformed_are_all_listed():
    errors = []
    domain.check_conditions({"evaluation_history_since": "x", "occupations": [
        {"occupation_code": "1-01-01-01", "person_times_last_3_years": -1}]}, [OCC], errors)
    assert errors == ["conditions.evaluation_history_since: must be a date YYYY-MM-DD",
                      "conditions.occupations[0].occupation_code: 1-01-01-01 is not in the scope applied for",
                      "conditions.occupations[0].person_times_last_3_years: must be 0 or more",
                      "conditions.occupations: no entry for 4-10-01-02"]
    assert domain.check_conditions(None, [OCC], errors) is None


def test_quotas_districts_share_three_counties_two_each():
    assert domain.quota_area("410502", AREAS) == domain.quota_area("410506", AREAS) == "district"
    assert domain.quota_area("410581", AREAS) == "county:410581"
    assert domain.quota_limit("district") == 3 and domain.quota_limit("county:410522") == 2
    need = [("district", OCC)]
    assert domain.quota_blockers(need, {("district", OCC): 2}, domain.quota_limit, 10, 40) == []
    fourth = domain.quota_blockers(need, {("district", OCC): 3}, domain.quota_limit, 10, 40)
    assert fourth == ["quota: occupation 4-10-01-02 already has 3 institutions in the city "
                      "districts (at most 3)"]
    county = domain.quota_blockers([("county:410522", OCC)], {("county:410522", OCC): 2},
                                   domain.quota_limit, 10, 40)
    assert county == ["quota: occupation 4-10-01-02 already has 2 institutions in county "
                      "410522 (at most 2)"]
    assert "city-wide quota of 40" in domain.quota_blockers([], {}, domain.quota_limit, 40, 40)[0]
    assert domain.quota_blockers([], {}, domain.quota_limit, None, 40) == []


def test_ranking_urgent_first_then_person_times():
    a = domain.rank_key(False, 5000, "2010-01-01", "2025-01-01", "a")
    b = domain.rank_key(True, 600, "2024-01-01", "2025-02-01", "b")
    c = domain.rank_key(False, 3000, "2010-01-01", "2025-01-01", "c")
    assert sorted([a, b, c]) == [b, a, c]


def test_change_day_30_on_time_day_31_late():
    changed = date(2025, 10, 1)
    assert domain.days_late(changed, date(2025, 10, 31)) == 0
    assert domain.days_late(changed, date(2025, 11, 1)) == 1


def test_details_change_checks_everything():
    errors = []
    current = {"name": "安阳培训中心", "address": "安阳市文峰区一号路"}
    changes, on = domain.details_change({"name": "中华培训中心", "changed_on": "2026-01-01"},
                                        current, AREAS, domain.PROHIBITED_NAME_WORDS,
                                        date(2025, 12, 1), errors)
    assert errors == ["name: uses prohibited words 中华 (seed 002 §5)",
                      "changed_on: 2026-01-01 is in the future; file a change once it happened"]
    errors = []
    domain.details_change({"name": "安阳培训中心"}, current, AREAS, (), date(2025, 12, 1), errors)
    assert len(errors) == 2  # nothing differs, changed_on missing


def test_renewal_29_days_before_is_refused_30_accepted():
    end = date(2028, 9, 14)
    domain.check_renewal(domain.ACTIVE, end, date(2028, 8, 15))
    with pytest.raises(FailedPrecondition, match="by 2028-08-15"):
        domain.check_renewal(domain.ACTIVE, end, date(2028, 8, 16))
    with pytest.raises(FailedPrecondition, match="expired"):
        domain.check_renewal(domain.EXPIRED, end, date(2028, 1, 1))
    assert domain.renewed_valid_until(end) == date(2031, 9, 14)
    assert domain.renewal_notice_due(end, date(2028, 7, 16))
    assert not domain.renewal_notice_due(end, date(2028, 7, 15))


def test_status_transitions():
    assert domain.check_status_change("suspend", domain.ACTIVE) == domain.SUSPENDED
    with pytest.raises(FailedPrecondition):
        domain.check_status_change("reinstate", domain.ACTIVE)
    with pytest.raises(FailedPrecondition):
        domain.check_status_change("terminate", domain.TERMINATED)


def snapshot(**over):
    base = {"status": domain.ACTIVE, "filed_on": "2025-09-15", "valid_until": "2028-09-14",
            "history": [{"status": domain.ACTIVE, "effective_on": "2025-09-15"}],
            "scope": [{"occupation_code": OCC, "skill_levels": [3, 4, 5]}], "scope_history": []}
    base.update(over)
    return base


@pytest.mark.parametrize("inst,occ,level,on,denial", [
    (None, OCC, 4, date(2025, 10, 1), "EVALUATION_DENIAL_NOT_FILED"),
    (snapshot(), OCC, 4, date(2025, 9, 14), "EVALUATION_DENIAL_BEFORE_FILING"),
    (snapshot(), OCC, 4, date(2028, 9, 15), "EVALUATION_DENIAL_EXPIRED"),
    (snapshot(), "1-01-01-01", 4, date(2025, 10, 1), "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"),
    (snapshot(), OCC, 2, date(2025, 10, 1), "EVALUATION_DENIAL_LEVEL_OUT_OF_SCOPE"),
    (snapshot(history=[{"status": domain.ACTIVE, "effective_on": "2025-09-15"},
                       {"status": domain.SUSPENDED, "effective_on": "2025-10-09"}]),
     OCC, 4, date(2025, 10, 9), "EVALUATION_DENIAL_SUSPENDED"),
    (snapshot(history=[{"status": domain.ACTIVE, "effective_on": "2025-09-15"},
                       {"status": domain.TERMINATED, "effective_on": "2025-11-01"}]),
     OCC, 4, date(2025, 11, 2), "EVALUATION_DENIAL_TERMINATED"),
])
def test_evaluation_right_denials(inst, occ, level, on, denial):
    right = domain.evaluation_right(inst, occ, level, on)
    assert not right.allowed and right.denial == denial and right.reason


def test_evaluation_right_follows_the_date():
    inst = snapshot(history=[{"status": domain.ACTIVE, "effective_on": "2025-09-15"},
                             {"status": domain.SUSPENDED, "effective_on": "2025-10-09"}])
    assert domain.evaluation_right(inst, OCC, 4, date(2025, 10, 8)).allowed


def test_activity_window_and_months():
    assert domain.months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    days = {"2025-10-01": 150}
    assert domain.count_in_window(days, date(2026, 9, 30)) == 150
    assert domain.count_in_window(days, date(2026, 10, 1)) == 0


def test_per_day_activity_is_pruned_past_its_window_into_months():
    days = {"2024-08-31": 5, "2024-09-30": 7, "2024-10-01": 3, "2024-10-02": 4,
            "2025-06-01": 100}
    # 13 months before 2025-11-01 is 2024-10-01: that day and those before are pruned.
    assert domain.activity_cutoff(date(2025, 11, 1)) == "2024-10-01"
    stale, monthly = domain.prune_activity(days, date(2025, 11, 1))
    assert stale == {"2024-08-31": 5, "2024-09-30": 7, "2024-10-01": 3}
    assert monthly == {"2024-08": 5, "2024-09": 7, "2024-10": 3}
    # What is kept still answers the 12-month window of any day from the sweep's on.
    kept = {d: n for d, n in days.items() if d not in stale}
    for today in (date(2025, 11, 1), date(2025, 11, 30), date(2026, 5, 31)):
        assert domain.count_in_window(kept, today) == domain.count_in_window(days, today)
    assert domain.prune_activity(kept, date(2025, 11, 1)) == ({}, {})


def test_sole_provider_is_never_proposed_for_removal():
    scope = [{"occupation_code": OCC}, {"occupation_code": "6-01-02-03"}]
    since = {OCC: "2025-01-01", "6-01-02-03": "2025-01-01"}
    today = date(2026, 1, 2)
    findings = domain.scope_proposals(scope, since, {}, {"6-01-02-03"}, [], today)
    assert [f.occupation_code for f in findings] == [OCC]
    low = {OCC: {"last": "2025-12-01", "days": {"2025-12-01": 299}}}
    assert "299 evaluated" in domain.scope_proposals(scope, since, low, {"6-01-02-03"}, [],
                                                     today)[0].grounds[0]
    enough = {OCC: {"last": "2025-12-01", "days": {"2025-12-01": 300}}}
    assert domain.scope_proposals(scope, since, enough, {"6-01-02-03"}, [], today) == []
    # An open proposal is not raised twice; a new occupation is not judged before 12 months.
    open_one = [{"kind": domain.PROPOSAL_SCOPE_REMOVAL, "occupation_code": OCC,
                 "state": domain.PROPOSAL_OPEN}]
    assert domain.scope_proposals(scope, since, {}, {"6-01-02-03"}, open_one, today) == []
    assert domain.scope_proposals(scope, {OCC: "2025-06-01", "6-01-02-03": "2025-06-01"}, {},
                                  set(), [], today) == []


def test_institution_under_500_is_proposed_for_termination():
    activity = {OCC: {"last": "2025-12-01", "days": {"2025-12-01": 499}}}
    finding = domain.institution_proposal(date(2025, 1, 1), activity, [], date(2026, 1, 2))
    assert finding and "499 evaluated" in finding.grounds[0]
    activity = {OCC: {"last": "2025-12-01", "days": {"2025-12-01": 500}}}
    assert domain.institution_proposal(date(2025, 1, 1), activity, [], date(2026, 1, 2)) is None


def test_check_name():
    assert domain.check_name("安阳包过培训中心", domain.PROHIBITED_NAME_WORDS)[0] == ["包过"]
    assert domain.check_name("安阳培训中心", domain.PROHIBITED_NAME_WORDS) == ([], [])


# --- decisions (services/filing/domain/decisions.py) ----------------------------------------
def test_scope_transition_keeps_the_scope_in_force_before_the_change():
    old = [{"occupation_code": OCC, "skill_levels": [4]}]
    new = [{"occupation_code": "6-01-02-03", "skill_levels": [4]}]
    # A slice-era document has no history: its current scope was in force since filing.
    fields = domain.scope_transition(old, None, None, "2025-09-15", new, date(2025, 10, 9))
    assert fields["scope_history"] == [{"effective_on": "2025-09-15", "scope": old},
                                       {"effective_on": "2025-10-09", "scope": new}]
    assert fields["scope_since"] == {"6-01-02-03": "2025-10-09"}
    assert domain.scope_on(fields["scope_history"], new, date(2025, 10, 8)) == old
    # A second change on the same day replaces the first; occupations kept keep their date.
    again = domain.scope_transition(new, fields["scope_since"], fields["scope_history"],
                                    "2025-09-15", new + old, date(2025, 10, 9), "app-2")
    assert again["scope_history"][-1] == {"effective_on": "2025-10-09", "scope": new + old,
                                          "decision_ref": "app-2"}
    assert len(again["scope_history"]) == 2
    assert again["scope_since"] == {"6-01-02-03": "2025-10-09", OCC: "2025-10-09"}


def test_the_last_occupation_is_never_removed_and_sole_providers_are_counted():
    scope = [{"occupation_code": OCC}, {"occupation_code": "6-01-02-03"}]
    assert domain.scope_without(scope, OCC) == [{"occupation_code": "6-01-02-03"}]
    with pytest.raises(FailedPrecondition, match="last occupation in scope"):
        domain.scope_without(scope[:1], OCC)
    assert domain.sole_providers([scope, scope[:1]]) == {"6-01-02-03"}


def test_termination_closes_open_proposals():
    proposals = [
        {"proposal_id": "t", "kind": domain.PROPOSAL_TERMINATION, "state": domain.PROPOSAL_OPEN},
        {"proposal_id": "r", "kind": domain.PROPOSAL_SCOPE_REMOVAL, "state": domain.PROPOSAL_OPEN},
        {"proposal_id": "d", "kind": domain.PROPOSAL_SCOPE_REMOVAL,
         "state": domain.PROPOSAL_DISMISSED, "decided_on": "2025-01-01"}]
    closed = domain.close_proposals_on_termination(proposals, date(2026, 1, 2), "D-1")
    assert [(p["state"], p.get("decided_on")) for p in closed] == [
        (domain.PROPOSAL_APPROVED, "2026-01-02"), (domain.PROPOSAL_DISMISSED, "2026-01-02"),
        (domain.PROPOSAL_DISMISSED, "2025-01-01")]
    assert proposals[0]["state"] == domain.PROPOSAL_OPEN  # a new list; the input is unchanged


def test_competition_ranks_urgent_first_then_person_times_history_and_receipt():
    def contender(app_id, n, since="2020-01-01", received="2025-09-15", allocated=False):
        seat = ("district", OCC)
        return domain.Contender(app_id, (seat,), frozenset({seat} if allocated else ()),
                                {OCC: n}, since, received)

    ranking = domain.competition([contender("a", 2500), contender("b", 3000),
                                  contender("c", 3000, since="2019-01-01"),
                                  contender("d", 3000, since="2019-01-01", received="2025-09-14")],
                                 frozenset())
    assert ranking == {(OCC, "district"): ["d", "c", "b", "a"]}
    urgent = domain.competition([contender("a", 10), contender("b", 3000)], frozenset({OCC}))
    assert urgent[(OCC, "district")] == ["b", "a"]  # both urgent: person-times decide
    # City-wide allocation: the area's own applicants come first, whatever they evaluated.
    mixed = domain.competition([contender("x", 9000, allocated=True), contender("y", 2000),
                                contender("z", 8000, allocated=True)], frozenset())
    assert mixed[(OCC, "district")] == ["y", "x", "z"]


def test_renewal_keeps_a_suspension_and_refuses_after_termination():
    renewed = domain.renewal(domain.SUSPENDED, date(2028, 9, 14))
    assert (renewed.status, renewed.valid_until) == (domain.SUSPENDED, date(2031, 9, 14))
    assert domain.renewal(domain.EXPIRED, date(2028, 9, 14)).status == domain.ACTIVE
    with pytest.raises(FailedPrecondition, match="terminated meanwhile"):
        domain.renewal(domain.TERMINATED, date(2028, 9, 14))


def test_deemed_acceptance_is_dated_the_last_day_of_the_window():
    late = domain.acceptance_decision(domain.ACCEPT, domain.RECEIVED, "2025-09-22",
                                      ["MATERIAL_KIND_WORK_PLAN"], None, date(2025, 9, 23))
    assert late.deemed and late.accepted_on == date(2025, 9, 22)
    with pytest.raises(FailedPrecondition, match="deemed withdrawn"):
        domain.check_supplement_open("2025-10-15", date(2025, 10, 16))
    domain.check_supplement_open("2025-10-15", date(2025, 10, 15))  # its last day: on time
