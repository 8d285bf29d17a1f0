"""Filing's handlers with an in-memory unit of work: the rules of each RPC, event and timer,
no broker, no database. Rules: seed 001 ch.2 and ch.6."""
from __future__ import annotations

import pytest
from vocreg.filing.v1 import events_pb2

from services.common.auth import ANONYMOUS
from services.common.entrypoints import ContractViolation, parse_event
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.filing import domain, handlers
from services.filing.models import Application, Institution
from services.filing.repository import FilingRepository
from services.filing.settings import FilingSettings
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, page_of, run
from tests.support import (
    PASSED_EVALUATION,
    SIX_MATERIALS,
    application_request,
    conditions,
    material,
    uscc,
)

OCC = "4-10-01-02"
OTHER = "6-01-02-03"
SETTINGS = FilingSettings()
REGULATOR = caller("regulator")


class FakeFilingRepository(FakeRepository, FilingRepository):
    """Filing's queries over the fake store; certificate activity in a plain dict."""

    def __init__(self):
        super().__init__("filing")
        self.activity_docs: dict[str, dict] = {}

    def _apps(self, keep):
        return self.load_all(Application, keep)

    def _filed(self, keep=lambda i: True):
        return self.load_all(Institution, lambda i: i.status in domain.REGISTER_STATUSES
                             and keep(i))

    def application(self, application_id):
        return self.load(Application, application_id)

    def open_application_id(self, institution_id):
        return next((a.application_id for a in self.all(Application)
                     if a.open_key == institution_id), "")

    def applications_page(self, institution_id, state, kind, size, after):
        rows = self._apps(lambda a: (not institution_id or a.institution_id == institution_id)
                          and (not state or a.state == state)
                          and (not kind or (a.kind or domain.NEW) == kind))
        return page_of(rows, "application_id", size, after)

    def pending_applications(self):
        return self._apps(lambda a: a.state in (domain.RECEIVED, domain.ACCEPTED))

    def overdue_applications(self, today_iso):
        return self._apps(lambda a: (a.state == domain.RECEIVED and a.acceptance_due < today_iso)
                          or (a.state == domain.SUPPLEMENT_REQUESTED
                              and a.supplement_due < today_iso))

    def institution(self, institution_id):
        return self.load(Institution, institution_id)

    def register_page(self, occupation_code, district_code, size, after, name=None):
        rows = self._filed(lambda i: (not occupation_code or occupation_code in
                                      [s["occupation_code"] for s in i.scope])
                           and (not district_code or i.district_code == district_code)
                           and (not name or name in i.name))
        return page_of(rows, "filing_code", size, after)

    def count_filed(self, other_than=None):
        return len(self._filed(lambda i: i.institution_id != other_than))

    def register_scopes(self, occupations=None):
        return [(i.institution_id, i.district_code, list(i.scope)) for i in self._filed(
            lambda i: occupations is None
            or any(s["occupation_code"] in occupations for s in i.scope))]

    def seats_taken(self, candidates, other_than):
        wanted = set(candidates)
        return [t for i in self.all(Institution) if i.institution_id != other_than
                for t in i.seats or () if t in wanted]

    def register_rows(self, occupation_code=None):
        return [i for i in self.all(Institution) if i.status in domain.REGISTER_STATUSES
                and (not occupation_code or occupation_code in
                     [s["occupation_code"] for s in i.scope])]

    def with_open_excess(self):
        return [i for i in self.all(Institution)
                if any(e.get("state") == domain.EXCESS_AWAITING for e in i.quota_excess)]

    def with_open_proposals(self):
        return self.load_all(Institution, lambda i: any(
            p.get("state") == domain.PROPOSAL_OPEN for p in i.proposals))

    def expired_ids(self, today_iso):
        return [i.institution_id for i in self.all(Institution)
                if i.status in domain.REGISTER_STATUSES and i.valid_until < today_iso]

    def renewal_candidates(self, today_iso):
        return [(i.institution_id, i.valid_until, i.renewal_notice_for)
                for i in self.all(Institution)
                if i.status in domain.REGISTER_STATUSES and i.valid_until >= today_iso]

    def activity_unchecked_ids(self, today_iso):
        return [i.institution_id for i in self.all(Institution)
                if i.status == domain.ACTIVE and i.activity_checked_on != today_iso]

    def activity(self, institution_id):
        return [{"occupation_code": d["occupation_code"], "last": d["last"],
                 "days": dict(d["days"]), "months": dict(d["months"])}
                for key, d in sorted(self.activity_docs.items())
                if d["institution_id"] == institution_id]

    def add_activity(self, institution_id, occupation_code, days, last, event_id):
        doc = self.activity_docs.setdefault(f"{institution_id}:{occupation_code}", {
            "institution_id": institution_id, "occupation_code": occupation_code,
            "days": {}, "last": "", "event_ids": [], "months": {}, "first_day": None})
        if event_id in doc["event_ids"]:
            return
        for day, n in days.items():
            doc["days"][day] = doc["days"].get(day, 0) + n
        doc["last"] = max(doc["last"], last)
        doc["first_day"] = min(filter(None, [doc["first_day"], *days]))
        doc["event_ids"].append(event_id)

    def activity_to_prune(self, cutoff):
        return [{"key": key, "first_day": d["first_day"], "days": dict(d["days"])}
                for key, d in sorted(self.activity_docs.items())
                if d["first_day"] is None or d["first_day"] <= cutoff]

    def fold_activity_days(self, key, first_day, stale, monthly, new_first):
        doc = self.activity_docs[key]
        if doc["first_day"] != first_day or any(doc["days"].get(d) != n
                                                for d, n in stale.items()):
            return False
        for day in stale:
            del doc["days"][day]
        for month, n in monthly.items():
            doc["months"][month] = doc["months"].get(month, 0) + n
        doc["first_day"] = new_first
        return True


@pytest.fixture
def clock():
    return FakeClock()  # Monday 15 September 2025, 10:00 in Shanghai


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeFilingRepository(), events_pb2, clock, "filing")


def inst(n):
    return caller("institution", uscc(n))


def call(handler, uow, clock, request=None, who=REGULATOR, settings=SETTINGS):
    return run(handler, uow, clock, settings, request or {}, who)


def submit(uow, clock, n=1, settings=SETTINGS, **kwargs):
    return call(handlers.submit_application, uow, clock, application_request(n, **kwargs),
                inst(n), settings)["application"]


def accept(uow, clock, app_id):
    return call(handlers.accept_application, uow, clock,
                {"application_id": app_id, "decision": "ACCEPTANCE_DECISION_ACCEPT"})["application"]


def decide(uow, clock, app_id, settings=SETTINGS, **extra):
    return call(handlers.decide_application, uow, clock,
                {"application_id": app_id, "outcome": "DECISION_OUTCOME_FILE",
                 "evaluation": PASSED_EVALUATION, **extra}, settings=settings)


def file_institution(uow, clock, n=1, district="410502", scope=None, settings=SETTINGS):
    request = application_request(n, district_code=district)
    if scope:
        request["scope"] = scope
    app = call(handlers.submit_application, uow, clock, request, inst(n), settings)["application"]
    accept(uow, clock, app["application_id"])
    return decide(uow, clock, app["application_id"], settings)


def stored(uow, cls, pk):
    return uow.repo.get(cls, pk)


def scope_of(*codes, levels=(4,)):
    return [{"occupation_code": c, "occupation_name": "育婴员", "skill_levels": list(levels)}
            for c in codes]


# --- submitting (art.3-5) ---------------------------------------------------------------------
def test_a_submission_is_received_today_with_its_acceptance_deadline_and_event(uow, clock):
    app = submit(uow, clock)
    assert app["state"] == domain.RECEIVED and app["received_on"] == "2025-09-15"
    assert app["acceptance_due"] == {"date": "2025-09-22", "provisional": False}
    [event] = uow.events("ApplicationSubmitted")
    assert event["application_id"] == app["application_id"]
    assert event["meta"]["aggregate_id"] == app["application_id"]
    assert event["meta"]["actor"] == "institution:institution"
    assert stored(uow, Application, app["application_id"]).pending_events == []


def test_a_retried_submission_answers_the_first_and_other_content_is_refused(uow, clock):
    first = submit(uow, clock)
    assert submit(uow, clock)["application_id"] == first["application_id"]
    assert len(uow.events("ApplicationSubmitted")) == 1
    changed = application_request(1)
    changed["institution"]["address"] = "河南省安阳市文峰区另一条路1号"
    with pytest.raises(AlreadyExists, match="request_id was already used"):
        call(handlers.submit_application, uow, clock, changed, inst(1))


def test_a_second_open_application_is_refused_naming_the_first(uow, clock):
    first = submit(uow, clock)
    with pytest.raises(AlreadyExists, match=f"open application {first['application_id']}"):
        submit(uow, clock, request_id="req-2")
    assert len(uow.repo.all(Application)) == 1 and len(uow.published) == 1


def test_an_institution_applies_only_in_its_own_name_and_only_once_filed(uow, clock):
    with pytest.raises(PermissionDenied):
        call(handlers.submit_application, uow, clock, application_request(2), inst(1))
    file_institution(uow, clock)
    with pytest.raises(FailedPrecondition, match="already filed"):
        submit(uow, clock, request_id="req-again")


def test_every_problem_of_a_submission_is_reported_and_nothing_stored(uow, clock):
    request = application_request(1)
    request["request_id"] = "bad id!"
    request["conditions"] = {"evaluation_history_since": "2025-02-30",
                             "occupations": [{"occupation_code": "9-99-99-99"}]}
    with pytest.raises(InvalidArgument) as info:
        call(handlers.submit_application, uow, clock, request, inst(1))
    assert info.value.violations == [
        "request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
        "conditions.evaluation_history_since: 2025-02-30 is not a calendar date",
        "conditions.occupations[0].occupation_code: 9-99-99-99 is not in the scope applied for",
        f"conditions.occupations: no entry for {OCC}"]
    assert uow.repo.store == {} and uow.published == []


CONDITIONS = conditions(since="2024-01-01", person_times=800, occupations=(OCC,))


def test_unmet_conditions_are_listed_relaxed_for_urgent_occupations_and_block_filing(uow, clock):
    urgent = FilingSettings(urgent_occupations=frozenset({OCC}))
    request = {**application_request(1), "conditions": CONDITIONS}
    app = call(handlers.submit_application, uow, clock, request, inst(1), urgent)["application"]
    assert "unmet_conditions" not in app  # urgent: 1 year and 500 person-times suffice
    request = {**application_request(2), "conditions": CONDITIONS}
    app = call(handlers.submit_application, uow, clock, request, inst(2))["application"]
    assert app["unmet_conditions"] == [
        "condition (七) not met: training-evaluation history since 2024-01-01 is under 3 years",
        f"{OCC}: condition (七) not met: 800 person-times in 3 years, under 2000"]
    accept(uow, clock, app["application_id"])
    with pytest.raises(FailedPrecondition, match="under 3 years"):
        decide(uow, clock, app["application_id"])


# --- supplements and acceptance (art.5) -------------------------------------------------------
def test_a_supplement_notice_lists_every_missing_item_once(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:4])
    ask = {"application_id": app["application_id"]}
    with pytest.raises(InvalidArgument, match="also missing"):
        call(handlers.request_supplement, uow, clock, {**ask, "missing_materials": [SIX_MATERIALS[4]]})
    clock.set(2025, 9, 17)
    app = call(handlers.request_supplement, uow, clock, {
        **ask, "missing_materials": list(SIX_MATERIALS[4:]), "other_items": ["signed site plan"]}
    )["application"]
    assert app["state"] == domain.SUPPLEMENT_REQUESTED
    assert app["supplement"]["due_on"] == "2025-10-17"  # 30 calendar days
    with pytest.raises(FailedPrecondition, match="cannot request a supplement"):
        call(handlers.request_supplement, uow, clock, {**ask, "other_items": ["one more"]})
    [event] = uow.events("SupplementRequested")
    assert event["due_on"] == "2025-10-17" and event["other_items"] == ["signed site plan"]


def test_no_supplement_notice_after_the_acceptance_window(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:5])
    clock.set(2025, 9, 23)
    with pytest.raises(FailedPrecondition, match="acceptance window ended on 2025-09-22"):
        call(handlers.request_supplement, uow, clock, {
            "application_id": app["application_id"], "missing_materials": [SIX_MATERIALS[5]]})


def test_a_complete_supplement_is_a_new_day_of_receipt(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:4])
    call(handlers.request_supplement, uow, clock, {
        "application_id": app["application_id"], "missing_materials": list(SIX_MATERIALS[4:]),
        "other_items": ["signed site plan"]})
    supply = {"application_id": app["application_id"]}
    with pytest.raises(InvalidArgument, match="not items of the notice"):
        call(handlers.supplement_application, uow, clock,
             {**supply, "answered_items": ["something else"]}, inst(1))
    with pytest.raises(PermissionDenied):
        call(handlers.supplement_application, uow, clock,
             {**supply, "materials": [material(SIX_MATERIALS[4])]}, inst(2))
    clock.set(2025, 9, 26)
    partial = call(handlers.supplement_application, uow, clock,
                   {**supply, "materials": [material(SIX_MATERIALS[4])]}, inst(1))["application"]
    assert partial["state"] == domain.SUPPLEMENT_REQUESTED
    done = call(handlers.supplement_application, uow, clock, {
        **supply, "materials": [material(SIX_MATERIALS[5])],
        "answered_items": ["signed site plan"]}, inst(1))["application"]
    assert done["state"] == domain.RECEIVED and done["received_on"] == "2025-09-26"
    assert done["acceptance_due"]["date"] == "2025-10-10"  # across National Day
    assert done["supplement"]["completed_on"] == "2025-09-26"
    assert [e["complete"] for e in uow.events("ApplicationSupplemented")] == [False, True]


def test_a_supplement_after_its_30_days_is_refused_the_application_is_withdrawn(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:5])
    call(handlers.request_supplement, uow, clock, {
        "application_id": app["application_id"], "missing_materials": [SIX_MATERIALS[5]]})
    clock.set(2025, 10, 16)
    with pytest.raises(FailedPrecondition, match="due by 2025-10-15: the application is deemed"):
        call(handlers.supplement_application, uow, clock, {
            "application_id": app["application_id"],
            "materials": [material(SIX_MATERIALS[5])]}, inst(1))


def test_acceptance_by_the_regulator_starts_the_15_working_days(uow, clock):
    app = submit(uow, clock)
    app = accept(uow, clock, app["application_id"])
    assert app["accepted_by"] == domain.ACCEPTED_BY_REGULATOR
    assert app["decision_due"]["date"] == "2025-10-11"  # a make-up Saturday counts
    [event] = uow.events("ApplicationAccepted")
    assert event["meta"]["actor"] == "regulator:regulator"


def test_incomplete_materials_cannot_be_accepted(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:5])
    with pytest.raises(FailedPrecondition, match="materials missing"):
        accept(uow, clock, app["application_id"])
    assert stored(uow, Application, app["application_id"]).state == domain.RECEIVED


def test_accepting_after_the_window_records_the_deemed_acceptance_on_its_last_day(uow, clock):
    app = submit(uow, clock, materials=SIX_MATERIALS[:5])
    clock.set(2025, 9, 23)
    app = accept(uow, clock, app["application_id"])
    assert app["accepted_by"] == domain.ACCEPTED_BY_DEEMED and app["accepted_on"] == "2025-09-22"
    [event] = uow.events("ApplicationAccepted")
    assert event["meta"]["actor"] == "service:system"


def test_declining_needs_reasons_within_the_window_and_frees_the_institution(uow, clock):
    app = submit(uow, clock)
    decline = {"application_id": app["application_id"],
               "decision": "ACCEPTANCE_DECISION_NOT_ACCEPT"}
    with pytest.raises(InvalidArgument, match="reasons: at least one reason"):
        call(handlers.accept_application, uow, clock, decline)
    with pytest.raises(InvalidArgument, match="decision: must be"):
        call(handlers.accept_application, uow, clock, {"application_id": app["application_id"]})
    out = call(handlers.accept_application, uow, clock,
               {**decline, "reasons": ["not an evaluation institution"]})["application"]
    assert out["state"] == domain.NOT_ACCEPTED
    assert uow.events("ApplicationNotAccepted")[0]["reasons"] == ["not an evaluation institution"]
    assert submit(uow, clock, request_id="req-2")["state"] == domain.RECEIVED


def test_declining_after_the_window_is_refused_it_is_deemed_accepted(uow, clock):
    app = submit(uow, clock)
    clock.set(2025, 9, 23)
    with pytest.raises(FailedPrecondition, match="deemed accepted"):
        call(handlers.accept_application, uow, clock, {
            "application_id": app["application_id"], "reasons": ["late"],
            "decision": "ACCEPTANCE_DECISION_NOT_ACCEPT"})


def test_unknown_or_missing_application_ids(uow, clock):
    with pytest.raises(NotFound):
        call(handlers.get_application, uow, clock, {"application_id": "nope"})
    with pytest.raises(InvalidArgument, match="application_id: required"):
        call(handlers.get_application, uow, clock, {"application_id": "  "})


# --- the decision (art.6-7) -------------------------------------------------------------------
def test_filing_issues_a_receipt_with_a_serial_code_and_a_retry_answers_the_same(uow, clock):
    out = file_institution(uow, clock)
    receipt = out["receipt"]
    assert out["application"]["state"] == domain.FILED
    assert receipt["filing_code"] == "S000041000001" and receipt["valid_until"] == "2028-09-14"
    institution = stored(uow, Institution, uscc(1))
    assert institution.history[0]["decision_ref"] == out["application"]["application_id"]
    assert institution.scope_history == [{"effective_on": "2025-09-15",
                                          "scope": institution.scope}]
    again = decide(uow, clock, out["application"]["application_id"])
    assert again["receipt"] == receipt
    assert len(uow.events("InstitutionFiled")) == 1
    assert uow.events("InstitutionFiled")[0]["receipt"]["filing_code"] == "S000041000001"
    assert file_institution(uow, clock, 2)["receipt"]["filing_code"] == "S000041000002"


def test_a_refusal_is_in_writing_with_reasons_and_a_failed_evaluation_cannot_be_filed(uow, clock):
    app = submit(uow, clock)
    accept(uow, clock, app["application_id"])
    with pytest.raises(FailedPrecondition, match="site_visit_passed"):
        decide(uow, clock, app["application_id"],
               evaluation={**PASSED_EVALUATION, "site_visit_passed": False})
    refuse = {"application_id": app["application_id"], "outcome": "DECISION_OUTCOME_REFUSE"}
    with pytest.raises(InvalidArgument, match="in writing with reasons"):
        call(handlers.decide_application, uow, clock, refuse)
    out = call(handlers.decide_application, uow, clock,
               {**refuse, "reasons": ["no video surveillance"]})["application"]
    assert out["state"] == domain.REFUSED and out["reasons"] == ["no video surveillance"]
    assert uow.repo.all(Institution) == []


def test_a_fourth_institution_in_the_city_districts_is_refused_and_nothing_changes(uow, clock):
    for n, district in ((1, "410502"), (2, "410503"), (3, "410505")):
        file_institution(uow, clock, n, district)
    app = submit(uow, clock, 4, district_code="410506")
    accept(uow, clock, app["application_id"])
    with pytest.raises(FailedPrecondition, match="already has 3 institutions in the city"):
        decide(uow, clock, app["application_id"])
    assert stored(uow, Application, app["application_id"]).state == domain.ACCEPTED
    assert file_institution(uow, clock, 5, "410522")["application"]["state"] == domain.FILED


def test_the_city_wide_quota(uow, clock):
    one = FilingSettings(city_quotas={"default": 1})
    file_institution(uow, clock, 1, settings=one)
    app = submit(uow, clock, 2, district_code="410522")
    accept(uow, clock, app["application_id"])
    with pytest.raises(FailedPrecondition, match="city-wide quota of 1"):
        decide(uow, clock, app["application_id"], settings=one)


# --- the regulator's in-tray ------------------------------------------------------------------
def test_pending_decisions_rank_competitors_urgent_first_then_person_times(uow, clock):
    settings = FilingSettings(urgent_occupations=frozenset({OTHER}))
    apps = {}
    for n, count, codes in ((1, 2500, (OCC,)), (2, 3000, (OCC,)), (3, 2100, (OCC, OTHER))):
        request = application_request(n, district_code="410502")
        request["scope"] = scope_of(*codes)
        request["conditions"] = conditions(since="2020-01-01", person_times=count,
                                           occupations=codes)
        app = call(handlers.submit_application, uow, clock, request, inst(n), settings)
        apps[n] = app["application"]["application_id"]
        accept(uow, clock, apps[n])
    waiting = submit(uow, clock, 4)  # not accepted yet: not competing
    out = call(handlers.list_pending_decisions, uow, clock, {}, settings=settings)
    by_id = {d["application_id"]: d for d in out["decisions"]}
    assert by_id[waiting["application_id"]]["stage"] == "PENDING_STAGE_ACCEPTANCE"
    assert "quota" not in by_id[waiting["application_id"]]
    ranks = {n: {q["occupation_code"]: (q["rank"], q["competitors"])
                 for q in by_id[apps[n]]["quota"]} for n in apps}
    assert ranks == {1: {OCC: (2, 3)}, 2: {OCC: (1, 3)}, 3: {OCC: (3, 3), OTHER: (1, 1)}}
    assert by_id[apps[3]]["quota"][1]["urgently_needed"] is True
    assert out["city_quota"] == 40 and out["city_filed"] == 0
    clock.set(2025, 10, 31)  # every decision is overdue now, the acceptance deemed
    late = call(handlers.list_pending_decisions, uow, clock, {"overdue_only": True})["decisions"]
    assert {d["application_id"] for d in late} == {*apps.values(), waiting["application_id"]}
    assert all(d["overdue"] and d["working_days_overdue"] > 0 for d in late)


def test_lists_of_applications_an_institution_sees_only_its_own(uow, clock):
    mine = submit(uow, clock, 1)
    submit(uow, clock, 2)
    listed = call(handlers.list_applications, uow, clock, {}, inst(1))["applications"]
    assert [a["application_id"] for a in listed] == [mine["application_id"]]
    with pytest.raises(PermissionDenied):
        call(handlers.list_applications, uow, clock, {"institution_id": uscc(2)}, inst(1))
    page = call(handlers.list_applications, uow, clock, {"page": {"page_size": 1},
                                                         "kind": domain.NEW})
    assert len(page["applications"]) == 1 and page["page"]["next_page_token"]
    rest = call(handlers.list_applications, uow, clock, {"kind": domain.NEW, "page": {
        "page_size": 1, "page_token": page["page"]["next_page_token"]}})
    assert len(rest["applications"]) == 1 and rest["page"]["next_page_token"] == ""


def test_the_register_pages_by_filing_code_and_filters(uow, clock):
    file_institution(uow, clock, 1, "410502")
    file_institution(uow, clock, 2, "410522")
    page = call(handlers.list_register, uow, clock, {"page": {"page_size": 1}}, ANONYMOUS)
    assert [e["receipt"]["filing_code"] for e in page["entries"]] == ["S000041000001"]
    assert "legal_representative" not in str(page)
    county = call(handlers.list_register, uow, clock, {"district_code": "410522"})
    assert [e["receipt"]["filing_code"] for e in county["entries"]] == ["S000041000002"]
    with pytest.raises(InvalidArgument, match="page_size"):
        call(handlers.list_register, uow, clock, {"page": {"page_size": 1000}})


# --- changes (ch.2 art.8) ---------------------------------------------------------------------
def change(n=1, **fields):
    return {"request_id": "c1", "institution_id": uscc(n), "kind": "CHANGE_KIND_DETAILS",
            **fields}


def test_a_details_change_on_day_31_is_late_recorded_with_its_citation(uow, clock):
    file_institution(uow, clock)
    clock.set(2025, 10, 31)
    on_time = call(handlers.file_change, uow, clock,
                   change(legal_representative="李四", changed_on="2025-10-01"), inst(1))
    assert on_time["late"] is False and not uow.events("ChangeOverdue")
    clock.set(2025, 11, 1)
    late = call(handlers.file_change, uow, clock, change(
        request_id="c2", address="河南省安阳市文峰区新地址8号", changed_on="2025-10-01"), inst(1))
    assert late["late"] is True
    [violation] = late["institution"]["violations"]
    assert violation["description"] == (
        "change of address on 2025-10-01 filed on 2025-11-01, 1 days after the 30 days ending "
        "2025-10-31 (seed 001 ch.2 art.8; ch.6 art.3 (八))")
    [overdue] = uow.events("ChangeOverdue")
    assert overdue["days_late"] == 1 and overdue["due_on"] == "2025-10-31"
    assert uow.events("DetailsChanged")[-1]["receipt"]["address"] == "河南省安阳市文峰区新地址8号"
    events = len(uow.published)
    again = call(handlers.file_change, uow, clock, change(
        request_id="c2", address="河南省安阳市文峰区新地址8号", changed_on="2025-10-01"), inst(1))
    assert again["late"] is True and len(uow.published) == events


def test_a_change_request_is_checked_whole(uow, clock):
    file_institution(uow, clock)
    with pytest.raises(InvalidArgument) as info:
        call(handlers.file_change, uow, clock, change(request_id="", kind=None), inst(1))
    assert info.value.violations == ["request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
                                     "kind: must be CHANGE_KIND_DETAILS or CHANGE_KIND_SCOPE"]
    with pytest.raises(InvalidArgument) as info:
        call(handlers.file_change, uow, clock, change(name="全国培训中心", changed_on="2099-01-01"),
             inst(1))
    assert info.value.violations == [
        "name: uses prohibited words 全国 (seed 002 §5)",
        "changed_on: 2099-01-01 is in the future; file a change once it happened"]
    with pytest.raises(InvalidArgument) as info:
        call(handlers.file_change, uow, clock, change(
            kind="CHANGE_KIND_SCOPE", name="安阳新名字", scope=scope_of(OCC, OTHER)), inst(1))
    assert info.value.violations == ["name: only for CHANGE_KIND_DETAILS"]
    with pytest.raises(InvalidArgument) as info:
        call(handlers.file_change, uow, clock, change(
            kind="CHANGE_KIND_SCOPE", scope=scope_of(OCC, levels=(5, 4, 3))), inst(1))
    assert info.value.violations == ["scope: the same as the filed scope"]
    with pytest.raises(PermissionDenied):
        call(handlers.file_change, uow, clock, change(name="安阳新名字", changed_on="2025-09-15"),
             inst(2))
    assert stored(uow, Institution, uscc(1)).name == application_request(1)["institution"]["name"]


def test_a_scope_change_is_evaluated_like_a_new_application(uow, clock):
    file_institution(uow, clock)
    clock.set(2025, 10, 9)
    scope = scope_of(OCC, levels=(3, 4, 5)) + scope_of(OTHER)
    answer = call(handlers.file_change, uow, clock, {
        "request_id": "s1", "institution_id": uscc(1), "kind": "CHANGE_KIND_SCOPE",
        "scope": scope, "materials": application_request(1)["materials"]}, inst(1))
    app = answer["application"]
    assert app["kind"] == domain.SCOPE_CHANGE and app["filing_code_before"] == "S000041000001"
    assert app["institution"]["institution_id"] == uscc(1)
    accept(uow, clock, app["application_id"])
    out = decide(uow, clock, app["application_id"])
    assert out["receipt"]["scope"] == scope
    institution = stored(uow, Institution, uscc(1))
    assert institution.scope_since == {OCC: "2025-09-15", OTHER: "2025-10-09"}
    assert institution.scope_history[-1] == {"effective_on": "2025-10-09", "scope": scope,
                                             "decision_ref": app["application_id"]}
    [changed] = uow.events("ScopeChanged")
    assert changed["added_occupations"] == [OTHER] and changed["reason"] == "scope change filed"
    # The right to evaluate follows the scope in force on the date.
    right = {"institution_id": uscc(1), "occupation_code": OTHER, "skill_level": 4}
    before = call(handlers.check_evaluation_right, uow, clock, {**right, "on_date": "2025-10-08"})
    assert before["denial"] == "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"
    assert call(handlers.check_evaluation_right, uow, clock,
                {**right, "on_date": "2025-10-09"})["allowed"] is True


def test_a_terminated_filing_takes_no_changes(uow, clock):
    file_institution(uow, clock)
    call(handlers.terminate_filing, uow, clock, {"institution_id": uscc(1), "reason": "fraud",
                                                 "decision_ref": "D-1"})
    with pytest.raises(FailedPrecondition, match="the filing is terminated"):
        call(handlers.file_change, uow, clock, change(name="安阳新名字", changed_on="2025-09-15"),
             inst(1))


# --- renewal (ch.2 art.9) ---------------------------------------------------------------------
def renewal_request(n=1, request_id="renew-1"):
    return {"request_id": request_id, "institution_id": uscc(n),
            "materials": application_request(n)["materials"]}


def test_renewal_29_days_before_expiry_is_refused_30_accepted_and_extends_3_years(uow, clock):
    file_institution(uow, clock)
    clock.set(2028, 8, 16)
    with pytest.raises(FailedPrecondition, match="by 2028-08-15"):
        call(handlers.apply_renewal, uow, clock, renewal_request(), inst(1))
    clock.set(2028, 8, 15)
    answer = call(handlers.apply_renewal, uow, clock, renewal_request(), inst(1))
    assert answer["apply_by"] == "2028-08-15"
    app = answer["application"]
    assert app["kind"] == domain.RENEWAL
    assert uow.events("RenewalApplied")[0]["valid_until"] == "2028-09-14"
    clock.set(2028, 8, 16)  # a retry after the deadline still answers the renewal applied
    again = call(handlers.apply_renewal, uow, clock, renewal_request(), inst(1))
    assert again["application"]["application_id"] == app["application_id"]
    accept(uow, clock, app["application_id"])
    out = decide(uow, clock, app["application_id"])
    assert out["receipt"]["valid_until"] == "2031-09-14"
    assert out["receipt"]["filing_code"] == "S000041000001"
    assert uow.events("FilingRenewed")[0]["valid_until"] == "2031-09-14"


def test_a_renewal_keeps_a_suspension_and_a_termination_meanwhile_ends_it(uow, clock):
    for n in (1, 2):
        file_institution(uow, clock, n, district="410502" if n == 1 else "410503")
    clock.set(2028, 8, 1)
    apps = {n: call(handlers.apply_renewal, uow, clock, renewal_request(n), inst(n))[
        "application"]["application_id"] for n in (1, 2)}
    decision = {"reason": "rectification", "decision_ref": "D-9"}
    call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1), **decision})
    call(handlers.terminate_filing, uow, clock, {"institution_id": uscc(2), **decision})
    for app_id in apps.values():
        accept(uow, clock, app_id)
    renewed = decide(uow, clock, apps[1])
    assert renewed["receipt"]["valid_until"] == "2031-09-14"
    suspended = stored(uow, Institution, uscc(1))
    assert suspended.status == domain.SUSPENDED
    assert suspended.status_reason == "renewed until 2031-09-14"
    with pytest.raises(FailedPrecondition, match="terminated meanwhile"):
        decide(uow, clock, apps[2])
    assert stored(uow, Application, apps[2]).state == domain.ACCEPTED


def test_a_renewal_request_is_checked_whole(uow, clock):
    with pytest.raises(InvalidArgument) as info:
        call(handlers.apply_renewal, uow, clock, {"request_id": "bad id!",
                                                  "materials": [{"kind": "MATERIAL_KIND_WORK_PLAN"}]},
             inst(1))
    assert info.value.violations == [
        "request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
        "materials[0].document_uri: required", "materials[0].sha256: must be 64 hex characters",
        "institution_id: required"]


# --- status (ch.6 art.3-4) --------------------------------------------------------------------
def test_suspend_reinstate_terminate_keep_a_history_and_answer_the_right_to_evaluate(uow, clock):
    file_institution(uow, clock)
    ask = {"institution_id": uscc(1), "occupation_code": OCC, "skill_level": 4}
    clock.set(2025, 10, 9)
    call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1),
                                                    "reason": "rectification",
                                                    "decision_ref": "安人社〔2025〕1号"})
    right = call(handlers.check_evaluation_right, uow, clock, {**ask, "on_date": "2025-10-09"},
                 caller("service"))
    assert right["allowed"] is False and "suspended since 2025-10-09" in right["reason"]
    with pytest.raises(FailedPrecondition, match="cannot suspend: the institution is suspended"):
        call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1),
                                                        "reason": "again", "decision_ref": "D"})
    clock.set(2025, 10, 20)
    call(handlers.reinstate_institution, uow, clock, {"institution_id": uscc(1),
                                                      "reason": "rectified", "decision_ref": "2"})
    out = call(handlers.terminate_filing, uow, clock, {"institution_id": uscc(1),
                                                       "reason": "false materials",
                                                       "decision_ref": "3"})["institution"]
    assert [h["status"] for h in out["history"]] == [
        domain.ACTIVE, domain.SUSPENDED, domain.ACTIVE, domain.TERMINATED]
    assert uow.events("FilingTerminated")[0]["filing_code"] == "S000041000001"
    assert [e["event_type"] for e in uow.published][-3:] == [
        "InstitutionSuspended", "InstitutionReinstated", "FilingTerminated"]


def test_a_status_decision_needs_its_reason_and_document_number(uow, clock):
    with pytest.raises(InvalidArgument) as info:
        call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1)})
    assert info.value.violations == [
        "reason: required", "decision_ref: required (the decision's document number)"]
    with pytest.raises(NotFound):
        call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(9), "reason": "r",
                                                        "decision_ref": "d"})


def test_the_right_to_evaluate_question_is_checked_and_answers_unknown_institutions(uow, clock):
    with pytest.raises(InvalidArgument) as info:
        call(handlers.check_evaluation_right, uow, clock,
             {"occupation_code": "x", "skill_level": 7, "on_date": "2025/10/01"})
    assert info.value.violations == [
        "institution_id: required", "occupation_code: must look like 4-10-01-02",
        "skill_level: must be 1-5", "on_date: must be a date YYYY-MM-DD"]
    unknown = call(handlers.check_evaluation_right, uow, clock, {
        "institution_id": uscc(9), "occupation_code": OCC, "skill_level": 4,
        "on_date": "2025-10-21"})
    assert unknown == {"allowed": False, "reason": "the institution is not filed",
                       "denial": "EVALUATION_DENIAL_NOT_FILED"}
    with pytest.raises(PermissionDenied):
        call(handlers.check_evaluation_right, uow, clock, {
            "institution_id": uscc(9), "occupation_code": OCC, "skill_level": 4,
            "on_date": "2025-10-21"}, inst(1))


def test_check_name(uow, clock):
    answer = call(handlers.check_name, uow, clock, {"name": "国家职业技能鉴定中心"}, ANONYMOUS)
    assert answer == {"acceptable": False, "prohibited_words": ["国家", "职业技能鉴定"],
                      "problems": ["uses prohibited words 国家, 职业技能鉴定 (seed 002 §5)"]}
    with pytest.raises(InvalidArgument, match="name: required"):
        call(handlers.check_name, uow, clock, {"name": " "})


# --- dynamic scope (ch.6 art.4 (七), art.6) --------------------------------------------------
def issued(event_id, institution_id, counts, assessment_date="2026-06-01"):
    body = {"meta": {"event_id": event_id}, "institution_id": institution_id,
            "assessment_date": assessment_date, "counts": counts}
    return parse_event("certificates", "CertificatesIssued", body)


def count(uow, clock, event):
    return handlers.count_certificates_issued(event, uow.begin(), clock, SETTINGS)


def test_certificates_issued_are_counted_per_occupation_once_per_event(uow, clock):
    event = issued("e-1", uscc(2).lower(), [
        {"occupation_code": OCC, "skill_level": 4, "count": 400},
        {"occupation_code": OCC, "skill_level": 3, "count": 200},
        {"occupation_code": "", "skill_level": 4, "count": 5},       # malformed: skipped
        {"occupation_code": OTHER, "skill_level": 4, "count": 0}])   # malformed: skipped
    assert count(uow, clock, event) == 1
    assert count(uow, clock, event) == 1  # the same event again adds nothing
    assert uow.repo.activity(uscc(2)) == [
        {"occupation_code": OCC, "last": "2026-06-01", "days": {"2026-06-01": 600},
         "months": {}}]
    assert count(uow, clock, issued("e-2", "", [{"occupation_code": OCC, "count": 1}])) == 0
    assert count(uow, clock, issued("e-3", uscc(2), [{"occupation_code": OCC, "count": 1}],
                                    assessment_date="June")) == 0


def test_a_certificates_issued_body_that_does_not_parse_is_refused():
    with pytest.raises(ContractViolation):
        parse_event("certificates", "CertificatesIssued", {
            "meta": {"event_id": "e"}, "counts": [{"count": "many"}]})
    with pytest.raises(ContractViolation):
        parse_event("certificates", "CertificatesIssued", {"counts": []})  # no event id


def file_two_for_proposals(uow, clock):
    file_institution(uow, clock, 1, scope=scope_of(OCC, OTHER))
    file_institution(uow, clock, 2, district="410503", scope=scope_of(OCC))
    count(uow, clock, issued("e-1", uscc(2), [{"occupation_code": OCC, "count": 600}]))
    clock.set(2026, 9, 16)  # 12 months and a day after filing


def test_the_sweep_proposes_idle_occupations_but_spares_the_sole_provider(uow, clock):
    file_two_for_proposals(uow, clock)
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["proposals"] == 2
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["proposals"] == 0
    idle = stored(uow, Institution, uscc(1))
    assert sorted((p["kind"], p["occupation_code"]) for p in idle.proposals) == [
        (domain.PROPOSAL_SCOPE_REMOVAL, OCC), (domain.PROPOSAL_TERMINATION, "")]
    assert stored(uow, Institution, uscc(2)).proposals == []
    removal = uow.events("ScopeRemovalProposed")[0]
    assert removal["occupation_code"] == OCC and "12 consecutive months" in removal["grounds"][0]
    assert len(uow.events("TerminationProposed")) == 1
    in_tray = call(handlers.list_pending_decisions, uow, clock, {})["proposals"]
    assert len(in_tray) == 2 and {p["institution_id"] for p in in_tray} == {uscc(1)}


def proposal_of(uow, kind):
    return next(p for p in stored(uow, Institution, uscc(1)).proposals if p["kind"] == kind)


def test_deciding_proposals_removal_dismissal_and_the_last_occupation(uow, clock):
    file_two_for_proposals(uow, clock)
    run_timer(handlers.lifecycle_sweep, uow, clock)
    removal = proposal_of(uow, domain.PROPOSAL_SCOPE_REMOVAL)
    decide_it = {"institution_id": uscc(1), "reason": "idle 12 months", "decision_ref": "D-1"}
    out = call(handlers.decide_proposal, uow, clock, {
        **decide_it, "proposal_id": removal["proposal_id"],
        "outcome": "PROPOSAL_OUTCOME_APPROVE"})["institution"]
    assert [s["occupation_code"] for s in out["scope"]] == [OTHER]
    assert uow.events("ScopeChanged")[-1]["removed_occupations"] == [OCC]
    with pytest.raises(FailedPrecondition, match="already decided"):
        call(handlers.decide_proposal, uow, clock, {
            **decide_it, "proposal_id": removal["proposal_id"],
            "outcome": "PROPOSAL_OUTCOME_APPROVE"})
    termination = proposal_of(uow, domain.PROPOSAL_TERMINATION)
    out = call(handlers.decide_proposal, uow, clock, {
        **decide_it, "proposal_id": termination["proposal_id"],
        "outcome": "PROPOSAL_OUTCOME_DISMISS"})["institution"]
    assert out["status"] == domain.ACTIVE
    assert uow.events("ProposalDismissed")[0]["proposal_id"] == termination["proposal_id"]
    with pytest.raises(NotFound):
        call(handlers.decide_proposal, uow, clock, {**decide_it, "proposal_id": "nope",
                                                    "outcome": "PROPOSAL_OUTCOME_DISMISS"})
    with pytest.raises(InvalidArgument) as info:
        call(handlers.decide_proposal, uow, clock, {})
    assert info.value.violations[:3] == [
        "institution_id: required", "proposal_id: required",
        "outcome: must be PROPOSAL_OUTCOME_APPROVE or PROPOSAL_OUTCOME_DISMISS"]
    # The last occupation is never removed: terminate instead.
    uow.repo.get(Institution, uscc(1)).proposals.append({
        "proposal_id": "p-last", "kind": domain.PROPOSAL_SCOPE_REMOVAL,
        "occupation_code": OTHER, "state": domain.PROPOSAL_OPEN})
    with pytest.raises(FailedPrecondition, match="last occupation in scope"):
        call(handlers.decide_proposal, uow, clock, {**decide_it, "proposal_id": "p-last",
                                                    "outcome": "PROPOSAL_OUTCOME_APPROVE"})


def test_approving_termination_terminates_and_closes_every_open_proposal(uow, clock):
    file_two_for_proposals(uow, clock)
    run_timer(handlers.lifecycle_sweep, uow, clock)
    termination = proposal_of(uow, domain.PROPOSAL_TERMINATION)
    out = call(handlers.decide_proposal, uow, clock, {
        "institution_id": uscc(1), "proposal_id": termination["proposal_id"],
        "outcome": "PROPOSAL_OUTCOME_APPROVE", "reason": "idle", "decision_ref": "D-7"}
    )["institution"]
    assert out["status"] == domain.TERMINATED
    states = {p["kind"]: (p["state"], p["decision_reason"]) for p in out["proposals"]}
    assert states == {domain.PROPOSAL_TERMINATION: (domain.PROPOSAL_APPROVED, "idle"),
                      domain.PROPOSAL_SCOPE_REMOVAL: (domain.PROPOSAL_DISMISSED,
                                                      "filing terminated")}
    assert uow.events("FilingTerminated")[0]["decision_ref"] == "D-7"


# --- the clock ----------------------------------------------------------------------------------
def run_timer(handler, uow, clock, settings=SETTINGS):
    result = handler(uow.begin(), clock, settings)
    uow.flush()
    uow.publish()
    return result


def test_the_sweep_deems_acceptance_and_withdrawal_once(uow, clock):
    deemed = submit(uow, clock, 1)
    withdrawn = submit(uow, clock, 2, materials=SIX_MATERIALS[:5])
    call(handlers.request_supplement, uow, clock, {"application_id": withdrawn["application_id"],
                                                   "missing_materials": [SIX_MATERIALS[5]]})
    clock.set(2025, 9, 22)
    assert run_timer(handlers.sweep, uow, clock) == {"changed": 0}
    clock.set(2025, 10, 16)
    assert run_timer(handlers.sweep, uow, clock) == {"changed": 2}
    assert run_timer(handlers.sweep, uow, clock) == {"changed": 0}
    app = stored(uow, Application, deemed["application_id"])
    assert (app.state, app.accepted_by, app.accepted_on) == (
        domain.ACCEPTED, domain.ACCEPTED_BY_DEEMED, "2025-09-22")
    gone = stored(uow, Application, withdrawn["application_id"])
    assert gone.state == domain.WITHDRAWN and gone.open_key is None
    assert "deemed withdrawn" in uow.events("ApplicationWithdrawn")[0]["reason"]


def test_a_sweep_skips_what_another_writer_changed_and_finishes_the_rest(uow, clock):
    first = submit(uow, clock, 1)
    second = submit(uow, clock, 2)
    clock.set(2025, 9, 23)
    uow.concurrent.add((Application, first["application_id"]))
    assert run_timer(handlers.sweep, uow, clock) == {"changed": 1}
    assert stored(uow, Application, first["application_id"]).state == domain.RECEIVED
    assert stored(uow, Application, second["application_id"]).state == domain.ACCEPTED
    assert run_timer(handlers.sweep, uow, clock) == {"changed": 1}  # the next sweep does it


def test_the_lifecycle_sweep_raises_renewal_due_once_then_expires(uow, clock):
    file_institution(uow, clock)
    clock.set(2028, 7, 16)  # 60 days before 2028-09-14
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["renewal_due"] == 1
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["renewal_due"] == 0
    assert uow.events("RenewalDue") == [{**uow.events("RenewalDue")[0],
                                         "valid_until": "2028-09-14", "apply_by": "2028-08-15"}]
    clock.set(2028, 9, 15)
    assert run_timer(handlers.lifecycle_sweep, uow, clock)["expired"] == 1
    institution = stored(uow, Institution, uscc(1))
    assert institution.status == domain.EXPIRED
    assert institution.history[-1]["effective_on"] == "2028-09-15"
    assert institution.status_reason == "validity ended on 2028-09-14"
    assert uow.events("FilingExpired")[0]["filing_code"] == "S000041000001"
