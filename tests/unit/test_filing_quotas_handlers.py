"""Issue 19 with an in-memory unit of work: quota seats and excesses after a move (ch.2 art.8,
ch.6 art.5), two changes racing into a county's last seat, city-wide allocation (全市调配), the
written refusal from the blockers, EvaluationLapsed (ch.6 art.3 (三)) and per-day activity
pruned into months."""
from __future__ import annotations

import pytest
from vocreg.filing.v1 import events_pb2

from services.common.entrypoints import parse_event
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.filing import domain, handlers
from services.filing.models import Application, Institution
from services.filing.settings import FilingSettings
from tests.fakes import FakeClock, FakeUnitOfWork
from tests.support import PASSED_EVALUATION, application_request, uscc
from tests.unit.test_filing_handlers import (
    OCC,
    OTHER,
    SETTINGS,
    FakeFilingRepository,
    accept,
    call,
    count,
    decide,
    file_institution,
    inst,
    issued,
    run_timer,
    scope_of,
    stored,
    submit,
)


@pytest.fixture
def clock():
    return FakeClock()  # Monday 15 September 2025, 10:00 in Shanghai


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeFilingRepository(), events_pb2, clock, "filing")

COUNTY = "410522"          # 安阳县: a quota of 2 per occupation
OTHER_COUNTY = "410523"    # 汤阴县


def move(uow, clock, n, district, request_id="move-1", changed_on="2025-09-15"):
    return call(handlers.file_change, uow, clock, {
        "request_id": request_id, "institution_id": uscc(n), "kind": "CHANGE_KIND_DETAILS",
        "address": f"河南省安阳市某县新址{n}号", "district_code": district,
        "changed_on": changed_on}, inst(n))


def usage(uow, clock, **request):
    return call(handlers.list_quota_usage, uow, clock, request)["usage"]


def seats_in(uow, area, code=OCC) -> list[str]:
    return sorted(t for i in uow.repo.all(Institution) for t in i.seats or ()
                  if t.startswith(f"{area}|{code}|"))


# --- a move into a full county ------------------------------------------------------------
def test_a_move_into_a_full_county_is_recorded_seen_everywhere_and_decided(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    file_institution(uow, clock, 3, "410502")
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1",
                                                 f"county:{COUNTY}|{OCC}|2"]
    clock.set(2025, 10, 9)
    answer = move(uow, clock, 3, COUNTY, changed_on="2025-10-01")
    # The change is filed (the institution did move), and the answer says what it broke.
    [excess] = answer["quota_excess"]
    assert excess["occupation_code"] == OCC and excess["area"] == f"county:{COUNTY}"
    assert (excess["limit"], excess["count"]) == (2, 3)
    assert excess["state"] == domain.EXCESS_AWAITING
    assert excess["cause"] == f"the change of address on 2025-10-01 from 410502 to {COUNTY}"
    institution = answer["institution"]
    assert institution["district_code"] == COUNTY
    assert institution["quota_excess"] == [excess]
    [violation] = institution["violations"]
    assert violation["kind"] == "QUOTA_EXCEEDED" and violation["ref"] == excess["excess_id"]
    assert "3 institutions for at most 2" in violation["description"]
    [event] = uow.events("QuotaExceeded")
    assert event["excess_id"] == excess["excess_id"] and event["count"] == 3
    # No seat was taken beyond the limit; the one it held in the districts is free again.
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1",
                                                 f"county:{COUNTY}|{OCC}|2"]
    assert seats_in(uow, "district") == []
    # GetInstitution, the in-tray, the register and the quota counts all show it.
    got = call(handlers.get_institution, uow, clock, {"institution_id": uscc(3)})["institution"]
    assert got["quota_excess"] == [excess]
    tray = call(handlers.list_pending_decisions, uow, clock, {})
    assert [e["excess"]["excess_id"] for e in tray["quota_excess"]] == [excess["excess_id"]]
    assert tray["quota_excess"][0]["filing_code"] == got["filing_code"]
    register = call(handlers.list_register, uow, clock, {"district_code": COUNTY})["entries"]
    assert [e.get("quota_excess", []) for e in register] == [[], [], [excess]]
    [county] = usage(uow, clock, district_code=COUNTY)
    assert (county["limit"], county["count"], county["exceeding"]) == (2, 3, 1)
    over = [h for h in county["institutions"] if not h.get("seat")]
    assert [h["institution_id"] for h in over] == [uscc(3)]
    assert over[0]["excess"]["state"] == domain.EXCESS_AWAITING
    assert usage(uow, clock, exceeded_only=True) == [county]

    # The regulator keeps it there, with a reason: no longer in the in-tray, still counted.
    decided = call(handlers.decide_quota_excess, uow, clock, {
        "institution_id": uscc(3), "excess_id": excess["excess_id"],
        "outcome": "QUOTA_EXCESS_OUTCOME_KEEP", "reason": "the only 育婴员 site near the "
        "new industrial park", "decision_ref": "安人社〔2025〕9号"})["institution"]
    [kept] = decided["quota_excess"]
    assert kept["state"] == domain.EXCESS_KEPT and kept["decision_ref"] == "安人社〔2025〕9号"
    assert call(handlers.list_pending_decisions, uow, clock, {})["quota_excess"] == []
    [county] = usage(uow, clock, district_code=COUNTY)
    assert county["exceeding"] == 1
    assert [h["excess"]["decision_reason"] for h in county["institutions"]
            if not h.get("seat")] == ["the only 育婴员 site near the new industrial park"]
    assert uow.events("QuotaExcessDecided")[0]["outcome"] == "QUOTA_EXCESS_OUTCOME_KEEP"
    with pytest.raises(FailedPrecondition, match="is kept: only one awaiting a decision"):
        call(handlers.decide_quota_excess, uow, clock, {
            "institution_id": uscc(3), "excess_id": excess["excess_id"],
            "outcome": "QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE", "reason": "r", "decision_ref": "d"})


def test_reducing_the_scope_frees_the_area_and_the_last_occupation_is_never_removed(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    file_institution(uow, clock, 3, "410502", scope=scope_of(OCC, OTHER))
    file_institution(uow, clock, 4, "410503")
    answer = move(uow, clock, 3, COUNTY)
    [excess] = answer["quota_excess"]  # OTHER had a free seat in the county: taken
    assert seats_in(uow, f"county:{COUNTY}", OTHER) == [f"county:{COUNTY}|{OTHER}|1"]
    decided = call(handlers.decide_quota_excess, uow, clock, {
        "institution_id": uscc(3), "excess_id": excess["excess_id"],
        "outcome": "QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE", "reason": "two already serve the county",
        "decision_ref": "D-2"})["institution"]
    assert [s["occupation_code"] for s in decided["scope"]] == [OTHER]
    assert decided["quota_excess"][0]["state"] == domain.EXCESS_REDUCED
    assert uow.events("ScopeChanged")[-1]["removed_occupations"] == [OCC]
    assert not uow.events("QuotaExcessEnded")  # decided, not ended by itself
    [county] = usage(uow, clock, district_code=COUNTY, occupation_code=OCC)
    assert (county["count"], county.get("exceeding", 0)) == (2, 0)
    # Institution 4 moves in too, with OCC only: reducing would leave it nothing.
    [last] = move(uow, clock, 4, COUNTY)["quota_excess"]
    with pytest.raises(FailedPrecondition, match="last occupation in scope"):
        call(handlers.decide_quota_excess, uow, clock, {
            "institution_id": uscc(4), "excess_id": last["excess_id"],
            "outcome": "QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE", "reason": "r", "decision_ref": "d"})
    assert stored(uow, Institution, uscc(4)).quota_excess[0]["state"] == domain.EXCESS_AWAITING


def test_a_decision_on_an_excess_is_checked(uow, clock):
    file_institution(uow, clock, 1)
    with pytest.raises(InvalidArgument) as info:
        call(handlers.decide_quota_excess, uow, clock, {"institution_id": uscc(1)})
    assert info.value.violations == [
        "excess_id: required",
        "outcome: must be QUOTA_EXCESS_OUTCOME_KEEP or QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE",
        "reason: required", "decision_ref: required (the decision's document number)"]
    with pytest.raises(NotFound, match="quota excess nope"):
        call(handlers.decide_quota_excess, uow, clock, {
            "institution_id": uscc(1), "excess_id": "nope", "reason": "r", "decision_ref": "d",
            "outcome": "QUOTA_EXCESS_OUTCOME_KEEP"})


def test_a_move_with_a_free_seat_takes_it_and_a_move_within_the_districts_changes_nothing(
        uow, clock):
    file_institution(uow, clock, 1, COUNTY)
    file_institution(uow, clock, 2, "410502")
    answer = move(uow, clock, 2, "410503")  # the districts share one quota: not a move
    assert "quota_excess" not in answer
    assert seats_in(uow, "district") == [f"district|{OCC}|1"]
    assert "quota_excess" not in move(uow, clock, 2, COUNTY, request_id="move-2")
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1",
                                                 f"county:{COUNTY}|{OCC}|2"]
    assert seats_in(uow, "district") == []
    assert not uow.events("QuotaExceeded")


# --- two changes racing into the last seat -------------------------------------------------
class Interleaved(FakeFilingRepository):
    """A repository whose first look at the seats lets another call run to its end first:
    the other change is written between this call's read and its write."""

    def __init__(self, store_from: FakeFilingRepository, other_call):
        super().__init__()
        self.store, self.counters = store_from.store, store_from.counters
        self.activity_docs = store_from.activity_docs
        self.other_call = other_call

    def seats_taken(self, candidates, other_than):
        taken = super().seats_taken(candidates, other_than)
        if self.other_call is not None:
            run_other, self.other_call = self.other_call, None
            run_other()
        return taken


def test_two_moves_racing_into_a_county_s_last_seat_one_wins_the_other_is_recorded(uow, clock):
    file_institution(uow, clock, 1, COUNTY)
    file_institution(uow, clock, 2, "410502")
    file_institution(uow, clock, 3, "410503", scope=scope_of(OTHER))
    file_institution(uow, clock, 4, "410505")
    # Institution 2's move runs to its end between institution 4's read and its write.
    racing = FakeUnitOfWork(Interleaved(uow.repo, lambda: move(uow, clock, 2, COUNTY)),
                            events_pb2, clock, "filing")
    loser = move(racing, clock, 4, COUNTY, request_id="move-4")
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1",
                                                 f"county:{COUNTY}|{OCC}|2"]
    holders = {i.institution_id for i in uow.repo.all(Institution)
               if f"county:{COUNTY}|{OCC}|2" in (i.seats or [])}
    assert holders == {uscc(2)}  # the first write won the seat
    [excess] = loser["quota_excess"]  # the other read again and found it held
    assert excess["count"] == 3 and excess["limit"] == 2
    assert stored(uow, Institution, uscc(4)).district_code == COUNTY
    assert "quota_excess" not in stored(uow, Institution, uscc(2)).to_mongo() or \
        not stored(uow, Institution, uscc(2)).quota_excess
    [county] = usage(uow, clock, district_code=COUNTY)
    assert county["count"] - county["exceeding"] == county["limit"] == 2


def test_two_filings_racing_for_the_last_seat_the_second_is_refused_nothing_stored(uow, clock):
    file_institution(uow, clock, 1, COUNTY)
    apps = {}
    for n in (2, 3):
        apps[n] = submit(uow, clock, n, district_code=COUNTY)["application_id"]
        accept(uow, clock, apps[n])
    racing = FakeUnitOfWork(Interleaved(uow.repo, lambda: decide(uow, clock, apps[2])),
                            events_pb2, clock, "filing")
    with pytest.raises(FailedPrecondition, match=f"occupation {OCC} already has 2 institutions"):
        decide(racing, clock, apps[3])
    assert stored(uow, Application, apps[3]).state == domain.ACCEPTED
    assert stored(uow, Institution, uscc(3)) is None
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1",
                                                 f"county:{COUNTY}|{OCC}|2"]


# --- seats freed, quotas lowered, documents from before seats --------------------------------
def test_a_freed_seat_goes_to_the_institution_waiting_beyond_the_quota(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    file_institution(uow, clock, 3, "410502")
    [excess] = move(uow, clock, 3, COUNTY)["quota_excess"]
    call(handlers.terminate_filing, uow, clock, {"institution_id": uscc(1),
                                                 "reason": "fraud", "decision_ref": "D-5"})
    assert stored(uow, Institution, uscc(1)).seats in (None, [])
    clock.set(2025, 9, 16)
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["seats"] == 1
    waiting = stored(uow, Institution, uscc(3))
    assert f"county:{COUNTY}|{OCC}|1" in waiting.seats
    assert waiting.quota_excess[0]["state"] == domain.EXCESS_ENDED
    assert waiting.quota_excess[0]["end_reason"] == "a seat became free"
    assert uow.events("QuotaExcessEnded")[0]["excess_id"] == excess["excess_id"]
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["seats"] == 0


def test_a_lowered_quota_and_a_document_from_before_seats_are_settled_by_the_sweep(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    legacy = stored(uow, Institution, uscc(2))
    legacy.seats = None  # as filed before seats were kept
    one = FilingSettings(county_quota=1)
    clock.set(2025, 9, 16)
    assert run_timer(handlers.lifecycle_sweep, uow, clock, one)["seats"] == 1
    excess = stored(uow, Institution, uscc(2)).quota_excess
    assert [(e["limit"], e["count"], e["cause"]) for e in excess] == [
        (1, 2, "being on the register before quota seats were kept")]
    two_and_three = FilingSettings(county_quota=2)
    assert run_timer(handlers.lifecycle_sweep, uow, clock, two_and_three)["seats"] == 1
    assert stored(uow, Institution, uscc(2)).quota_excess[0]["state"] == domain.EXCESS_ENDED


# --- city-wide allocation (全市调配) ------------------------------------------------------------
def allocation_request(n, serves, district="410502", code=OCC):
    request = application_request(n, district_code=district)
    request["scope"] = [{**scope_of(code)[0], "serves_district_code": serves}]
    return request


def test_an_area_with_none_is_served_from_elsewhere_once_and_the_register_says_so(uow, clock):
    for n, district in ((1, "410502"), (2, "410503"), (3, "410505")):
        file_institution(uow, clock, n, district)  # the districts are full for OCC
    request = allocation_request(4, COUNTY, district="410506")
    app = call(handlers.submit_application, uow, clock, request, inst(4))["application"]
    assert app["scope"][0]["serves_district_code"] == COUNTY
    accept(uow, clock, app["application_id"])
    [standing] = call(handlers.list_pending_decisions, uow, clock, {})["decisions"][0]["quota"]
    assert standing["area"] == f"county:{COUNTY}" and standing["allocated"] is True
    filed = decide(uow, clock, app["application_id"])
    assert filed["receipt"]["scope"][0]["serves_district_code"] == COUNTY
    assert seats_in(uow, f"county:{COUNTY}") == [f"county:{COUNTY}|{OCC}|1"]
    [county] = usage(uow, clock, district_code=COUNTY)
    assert county["institutions"][0]["allocated"] is True and county["count"] == 1
    register = call(handlers.list_register, uow, clock, {"district_code": "410506"})["entries"]
    assert register[0]["receipt"]["scope"][0]["serves_district_code"] == COUNTY
    # A second allocation to the county is refused: it has one now; its own applicants are not.
    second = call(handlers.submit_application, uow, clock,
                  allocation_request(5, COUNTY, district="410523"), inst(5))["application"]
    accept(uow, clock, second["application_id"])
    with pytest.raises(FailedPrecondition, match="city-wide allocation .* serves an area with "
                                                 "none"):
        decide(uow, clock, second["application_id"])
    assert file_institution(uow, clock, 6, COUNTY)["application"]["state"] == domain.FILED


def test_an_allocation_must_name_another_area_of_the_city(uow, clock):
    for serves, problem in (("410503", "is in the institution's own quota area; leave it empty"),
                            ("110101", "is not a district or county of this city")):
        with pytest.raises(InvalidArgument) as info:
            call(handlers.submit_application, uow, clock, allocation_request(1, serves), inst(1))
        assert info.value.violations == [f"scope[0].serves_district_code: {serves} {problem}"]
    assert uow.repo.all(Application) == []


def test_the_in_tray_ranks_the_area_s_own_applicants_before_allocations(uow, clock):
    apps = {}
    for n, request in ((1, allocation_request(1, COUNTY)),
                       (2, application_request(2, district_code=COUNTY))):
        apps[n] = call(handlers.submit_application, uow, clock, request, inst(n))[
            "application"]["application_id"]
        accept(uow, clock, apps[n])
    tray = {d["application_id"]: d["quota"][0] for d in
            call(handlers.list_pending_decisions, uow, clock, {})["decisions"]}
    assert (tray[apps[2]]["rank"], tray[apps[1]]["rank"]) == (1, 2)
    assert tray[apps[1]]["competitors"] == 2 and tray[apps[1]]["allocated"] is True


# --- the written refusal from the blockers ------------------------------------------------------
def test_a_quota_refusal_is_issued_with_one_call_and_the_overdue_list_shows_it_ready(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    app = submit(uow, clock, 3, district_code=COUNTY)
    accept(uow, clock, app["application_id"])
    quota = f"quota: occupation {OCC} already has 2 institutions in county {COUNTY} (at most 2)"
    clock.set(2025, 10, 31)  # past the 15 working days
    [late] = call(handlers.list_pending_decisions, uow, clock, {"overdue_only": True})[
        "decisions"]
    assert late["overdue"] and late["blockers"] == [quota] and late["refusal_ready"] is True
    with pytest.raises(InvalidArgument, match="only with DECISION_OUTCOME_REFUSE"):
        decide(uow, clock, app["application_id"], reasons_from_blockers=True)
    refused = call(handlers.decide_application, uow, clock, {
        "application_id": app["application_id"], "outcome": "DECISION_OUTCOME_REFUSE",
        "reasons_from_blockers": True, "reasons": ["see the register of 安阳县"]})["application"]
    assert refused["state"] == domain.REFUSED
    assert refused["reasons"] == [quota, "see the register of 安阳县"]
    assert uow.events("ApplicationRefused")[0]["reasons"] == refused["reasons"]
    assert call(handlers.list_pending_decisions, uow, clock, {"overdue_only": True})[
        "decisions"] == []


def test_a_refusal_from_blockers_needs_a_blocker(uow, clock):
    app = submit(uow, clock, 1)
    accept(uow, clock, app["application_id"])
    assert call(handlers.list_pending_decisions, uow, clock, {})["decisions"][0].get(
        "refusal_ready") is False
    with pytest.raises(FailedPrecondition, match="nothing blocks filing"):
        call(handlers.decide_application, uow, clock, {
            "application_id": app["application_id"], "outcome": "DECISION_OUTCOME_REFUSE",
            "reasons_from_blockers": True})
    assert stored(uow, Application, app["application_id"]).state == domain.ACCEPTED


# --- EvaluationLapsed (ch.6 art.3 (三)) -----------------------------------------------------------
def lapse_sweep(uow, clock, *day):
    clock.set(*day)
    return run_timer(handlers.lifecycle_sweep, uow, clock)["lapsed"]


def test_evaluation_lapsed_after_six_months_without_a_certificate_once_per_lapse(uow, clock):
    file_institution(uow, clock, 1, scope=scope_of(OCC, OTHER))  # filed 2025-09-15
    count(uow, clock, issued("e-1", uscc(1), [{"occupation_code": OCC, "count": 20}],
                             assessment_date="2025-10-01"))
    assert lapse_sweep(uow, clock, 2026, 3, 31) == 0  # 5 months and 30 days
    assert lapse_sweep(uow, clock, 2026, 4, 1) == 1   # 6 months to the day
    [event] = uow.events("EvaluationLapsed")
    assert event["last_evaluation_on"] == "2025-10-01" and event["months"] == 6
    assert lapse_sweep(uow, clock, 2026, 4, 2) == 0   # once per lapse
    # A certificate in the other occupation ends the lapse; a new one is counted from it.
    count(uow, clock, issued("e-2", uscc(1), [{"occupation_code": OTHER, "count": 1}],
                             assessment_date="2026-04-10"))
    assert lapse_sweep(uow, clock, 2026, 10, 9) == 0
    assert lapse_sweep(uow, clock, 2026, 10, 10) == 1
    assert uow.events("EvaluationLapsed")[-1]["last_evaluation_on"] == "2026-04-10"


def test_no_certificate_ever_counts_from_filing_and_a_suspension_is_not_idleness(uow, clock):
    file_institution(uow, clock, 1)
    file_institution(uow, clock, 2, "410503")
    clock.set(2025, 12, 1)
    call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(2),
                                                    "reason": "rectification", "decision_ref": "D"})
    clock.set(2026, 2, 1)
    call(handlers.reinstate_institution, uow, clock, {"institution_id": uscc(2),
                                                      "reason": "rectified", "decision_ref": "E"})
    assert lapse_sweep(uow, clock, 2026, 3, 14) == 0
    assert lapse_sweep(uow, clock, 2026, 3, 15) == 1  # institution 1, from its filing
    assert uow.events("EvaluationLapsed")[0] == {**uow.events("EvaluationLapsed")[0],
                                                 "institution_id": uscc(1),
                                                 "last_evaluation_on": "2025-09-15"}
    assert lapse_sweep(uow, clock, 2026, 7, 31) == 0  # institution 2: active again since 1 Feb
    assert lapse_sweep(uow, clock, 2026, 8, 1) == 1
    assert uow.events("EvaluationLapsed")[-1]["institution_id"] == uscc(2)


def test_a_suspended_institution_raises_no_lapse(uow, clock):
    file_institution(uow, clock, 1)
    call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1),
                                                    "reason": "rectification", "decision_ref": "D"})
    assert lapse_sweep(uow, clock, 2026, 6, 1) == 0


# --- per-day activity pruned into months ----------------------------------------------------------
def test_days_past_the_window_are_summed_into_months_and_the_window_still_counts(uow, clock):
    file_institution(uow, clock, 1)
    for i, day in enumerate(("2025-09-20", "2025-10-03", "2025-10-20", "2026-06-01")):
        count(uow, clock, issued(f"e-{i}", uscc(1), [{"occupation_code": OCC, "count": 10 + i}],
                                 assessment_date=day))
    clock.set(2026, 11, 3)  # 13 months before is 2025-10-03
    before = call(handlers.get_institution, uow, clock,
                  {"institution_id": uscc(1)})["institution"]["activity"]
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["pruned"] == 1
    [doc] = uow.repo.activity(uscc(1))
    assert doc["days"] == {"2025-10-20": 12, "2026-06-01": 13}
    assert doc["months"] == {"2025-09": 10, "2025-10": 11}
    after = call(handlers.get_institution, uow, clock,
                 {"institution_id": uscc(1)})["institution"]["activity"]
    assert after[0]["count_12_months"] == before[0]["count_12_months"] == 13
    assert after[0]["last_evaluation_on"] == "2026-06-01"
    assert after[0]["earlier_months"] == [{"month": "2025-09", "count": 10},
                                          {"month": "2025-10", "count": 11}]
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["pruned"] == 0
    # A late batch for an old day is folded in by the next sweep.
    count(uow, clock, issued("late", uscc(1), [{"occupation_code": OCC, "count": 5}],
                             assessment_date="2025-09-21"))
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["pruned"] == 1
    assert uow.repo.activity(uscc(1))[0]["months"] == {"2025-09": 15, "2025-10": 11}


def test_the_events_filing_raises_fit_its_events_proto():
    for event_type in ("QuotaExceeded", "QuotaExcessDecided", "QuotaExcessEnded",
                       "EvaluationLapsed"):
        assert getattr(events_pb2, event_type).DESCRIPTOR.fields_by_name["institution_id"]
    assert parse_event("filing", "EvaluationLapsed", {
        "meta": {"event_id": "e"}, "institution_id": uscc(1), "months": 6}).months == 6
    assert PASSED_EVALUATION["site_visit_passed"] and SETTINGS.county_quota == 2


def test_a_retried_move_answers_as_the_first_and_records_nothing_twice(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, COUNTY)
    file_institution(uow, clock, 3, "410502")
    first = move(uow, clock, 3, COUNTY)
    again = move(uow, clock, 3, COUNTY)  # the same request_id and content: its first answer
    assert again == first
    assert len(uow.events("QuotaExceeded")) == 1
    assert len(stored(uow, Institution, uscc(3)).quota_excess) == 1
