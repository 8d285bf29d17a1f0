"""Issue 19 through gRPC only (grpcio -> edge -> RabbitMQ -> filing), and filing's side of
inspection's decisions from the bus: a move into a full county recorded and decided, two
moves racing into a county's last seat, city-wide allocation, the written refusal from the
blockers, EvaluationLapsed on both sides of its edge, per-day activity pruned into months.
The register's counts per area are never above the quota without a recorded, visible
decision. Rules: seed 001 ch.2 art.8, ch.6 art.3-6.

One clocked platform serves the module; each test uses its own occupation codes (the quotas
count per occupation) and institution numbers (3xx).
"""
from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from kombu import Connection, Exchange

from tests.e2e.grpc_client import status_of
from tests.e2e.test_filing_lifecycle_grpc import (
    SWEEP,
    Client,
    EventTap,
    accept,
    at,
    decide_file,
    institution_of,
    publish_certificates_issued,
    regulator,
    scope_of,
)
from tests.platform import Platform, eventually
from tests.support import application_request, uscc

pytestmark = pytest.mark.e2e

OK = grpc.StatusCode
COUNTY = "410522"


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("quotas"), clock=True,
                       SWEEP_INTERVAL=SWEEP).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0}, f"unclean shutdown {codes}:\n{started.logs()}"


def inst(plat, n):
    return Client(plat.channel, "institution", n)


def file_one(plat, n, district, code, serves=None) -> dict:
    request = application_request(n, district_code=district)
    request["scope"] = scope_of(code)
    if serves:
        request["scope"][0]["serves_district_code"] = serves
    app = inst(plat, n).SubmitApplication(request)["application"]
    accept(plat, app["application_id"])
    return decide_file(plat, app["application_id"])


def move(plat, n, district, request_id=None) -> dict:
    return inst(plat, n).FileChange({
        "request_id": request_id or f"move-{n}", "institution_id": uscc(n),
        "kind": "CHANGE_KIND_DETAILS", "address": f"河南省安阳县新址{n}号",
        "district_code": district, "changed_on": "2025-09-15"})


def usage(plat, **request) -> list[dict]:
    return Client(plat.channel).ListQuotaUsage(request).get("usage", [])  # public


def assert_never_over_without_a_decision(plat):
    """The register's counts per area: above the limit only by recorded excesses."""
    for row in usage(plat):
        holders = [h for h in row["institutions"] if h.get("seat")]
        assert len(holders) <= row["limit"], row
        for h in row["institutions"]:
            if not h.get("seat"):
                assert h["excess"]["state"] in ("QUOTA_EXCESS_STATE_AWAITING_DECISION",
                                                "QUOTA_EXCESS_STATE_KEPT"), row


def test_a_move_into_a_full_county_is_recorded_visible_and_decided(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-01-01"
    file_one(plat, 301, COUNTY, code)
    file_one(plat, 302, COUNTY, code)
    file_one(plat, 303, "410502", code)
    answer = move(plat, 303, COUNTY)
    [excess] = answer["quota_excess"]
    assert (excess["occupation_code"], excess["area"], excess["limit"], excess["count"]) == (
        code, f"county:{COUNTY}", 2, 3)
    assert answer["institution"]["district_code"] == COUNTY
    assert answer["institution"]["violations"][0]["kind"] == "QUOTA_EXCEEDED"
    assert institution_of(plat, 303)["quota_excess"] == [excess]
    tray = regulator(plat).ListPendingDecisions({}).get("quota_excess", [])
    assert excess["excess_id"] in [e["excess"]["excess_id"] for e in tray]
    [county] = usage(plat, district_code=COUNTY, occupation_code=code)
    assert (county["count"], county["exceeding"]) == (3, 1)
    entries = Client(plat.channel).ListRegister({"occupation_code": code})["entries"]
    assert [e["quota_excess"][0]["excess_id"] for e in entries if e.get("quota_excess")] == [
        excess["excess_id"]]
    assert_never_over_without_a_decision(plat)
    # Bad decisions are answered precisely and change nothing; a good one keeps it there.
    code_, details = status_of(regulator(plat).DecideQuotaExcess, {
        "institution_id": uscc(303), "excess_id": excess["excess_id"]})
    assert code_ == OK.INVALID_ARGUMENT and "outcome: must be" in details
    assert status_of(inst(plat, 303).DecideQuotaExcess, {
        "institution_id": uscc(303), "excess_id": excess["excess_id"],
        "outcome": "QUOTA_EXCESS_OUTCOME_KEEP", "reason": "r",
        "decision_ref": "d"})[0] == OK.PERMISSION_DENIED
    kept = regulator(plat).DecideQuotaExcess({
        "institution_id": uscc(303), "excess_id": excess["excess_id"],
        "outcome": "QUOTA_EXCESS_OUTCOME_KEEP", "reason": "serves the new industrial park",
        "decision_ref": "安人社〔2025〕9号", "request_id": "keep-303"})["institution"]
    assert kept["quota_excess"][0]["state"] == "QUOTA_EXCESS_STATE_KEPT"
    code_, _ = status_of(regulator(plat).DecideQuotaExcess, {
        "institution_id": uscc(303), "excess_id": excess["excess_id"],
        "outcome": "QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE", "reason": "r", "decision_ref": "d"})
    assert code_ == OK.FAILED_PRECONDITION
    [county] = usage(plat, district_code=COUNTY, occupation_code=code)
    [over] = [h for h in county["institutions"] if not h.get("seat")]
    assert over["excess"]["decision_reason"] == "serves the new industrial park"
    assert_never_over_without_a_decision(plat)


def test_two_moves_racing_into_a_county_s_last_seat(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-02-01"
    file_one(plat, 311, COUNTY, code)
    file_one(plat, 312, "410502", code)
    file_one(plat, 313, "410503", code)
    answers, start = {}, threading.Barrier(2)

    def race(n):
        start.wait()
        answers[n] = move(plat, n, COUNTY)

    threads = [threading.Thread(target=race, args=(n,)) for n in (312, 313)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(len(a.get("quota_excess", [])) for a in answers.values()) == [0, 1]
    [county] = usage(plat, district_code=COUNTY, occupation_code=code)
    assert (county["limit"], county["count"], county["exceeding"]) == (2, 3, 1)
    assert sum(1 for h in county["institutions"] if h.get("seat")) == 2
    assert_never_over_without_a_decision(plat)


def test_city_wide_allocation_serves_an_area_with_none_and_the_register_says_which(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-03-01"
    filed = file_one(plat, 321, "410502", code, serves="410526")
    assert filed["receipt"]["scope"][0]["serves_district_code"] == "410526"
    [row] = usage(plat, occupation_code=code)
    assert row["area"] == "county:410526" and row["institutions"][0]["allocated"] is True
    entry = Client(plat.channel).ListRegister({"occupation_code": code})["entries"][0]
    assert entry["receipt"]["scope"][0]["serves_district_code"] == "410526"
    request = application_request(322, district_code="410523")
    request["scope"] = scope_of(code)
    request["scope"][0]["serves_district_code"] = "410526"
    second = inst(plat, 322).SubmitApplication(request)["application"]
    accept(plat, second["application_id"])
    pending = regulator(plat).ListPendingDecisions({})["decisions"]
    mine = next(d for d in pending if d["application_id"] == second["application_id"])
    assert mine["quota"][0]["allocated"] is True and mine["refusal_ready"] is True
    code_, details = status_of(regulator(plat).DecideApplication, {
        "application_id": second["application_id"], "outcome": "DECISION_OUTCOME_FILE",
        "evaluation": {"materials_check_passed": True, "expert_review_passed": True,
                       "site_visit_passed": True}})
    assert code_ == OK.FAILED_PRECONDITION and "serves an area with none" in details
    request["scope"][0]["serves_district_code"] = "410523"  # its own area: refused as input
    code_, details = status_of(inst(plat, 323).SubmitApplication,
                               {**request, "request_id": "req-323",
                                "institution": {**request["institution"],
                                                "institution_id": uscc(323)}})
    assert code_ == OK.INVALID_ARGUMENT and "own quota area" in details


def test_a_quota_refusal_is_issued_with_one_call_and_shown_overdue_until_then(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-04-01"
    file_one(plat, 331, "410523", code)
    file_one(plat, 332, "410523", code)
    request = application_request(333, district_code="410523")
    request["scope"] = scope_of(code)
    app = inst(plat, 333).SubmitApplication(request)["application"]
    accept(plat, app["application_id"])
    at(plat, 2025, 10, 31)
    late = regulator(plat).ListPendingDecisions({"overdue_only": True})["decisions"]
    mine = next(d for d in late if d["application_id"] == app["application_id"])
    assert mine["overdue"] and mine["refusal_ready"] and len(mine["blockers"]) == 1
    refused = regulator(plat).DecideApplication({
        "application_id": app["application_id"], "outcome": "DECISION_OUTCOME_REFUSE",
        "reasons_from_blockers": True, "request_id": "refuse-333"})["application"]
    assert refused["state"] == "APPLICATION_STATE_REFUSED"
    assert refused["reasons"] == mine["blockers"]
    late = regulator(plat).ListPendingDecisions({"overdue_only": True}).get("decisions", [])
    assert app["application_id"] not in [d["application_id"] for d in late]


def drain(tap, seconds: float) -> None:
    """Collect what the tap receives for a while (sweeps run meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            tap.conn.drain_events(timeout=0.1)
        except TimeoutError:
            pass


def test_evaluation_lapsed_once_six_months_after_the_last_certificate(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-05-01"
    file_one(plat, 341, "410527", code)
    publish_certificates_issued(plat, {
        "meta": {"event_id": uuid.uuid4().hex}, "institution_id": uscc(341),
        "assessment_date": "2025-10-01", "counts": [{"occupation_code": code, "count": 30}]})
    eventually(lambda: institution_of(plat, 341).get("activity"), what="the activity")
    with EventTap(plat, "EvaluationLapsed") as tap:
        at(plat, 2026, 3, 31, 23)
        drain(tap, 4 * SWEEP)
        assert not [b for b in tap.bodies if b["institution_id"] == uscc(341)]
        at(plat, 2026, 4, 1)
        [lapse] = tap.wait_for(lambda b: b["institution_id"] == uscc(341))
        assert lapse["last_evaluation_on"] == "2025-10-01" and lapse["months"] == 6
        at(plat, 2026, 4, 3)
        drain(tap, 4 * SWEEP)
        assert len([b for b in tap.bodies if b["institution_id"] == uscc(341)]) == 1


def test_per_day_counts_past_the_window_are_kept_per_month(plat):
    at(plat, 2025, 9, 15)
    code = "4-98-06-01"
    file_one(plat, 351, "410581", code)
    for day, n in (("2025-09-20", 10), ("2025-10-20", 11), ("2026-06-01", 12)):
        publish_certificates_issued(plat, {
            "meta": {"event_id": uuid.uuid4().hex}, "institution_id": uscc(351),
            "assessment_date": day, "counts": [{"occupation_code": code, "count": n}]})
    eventually(lambda: (institution_of(plat, 351).get("activity") or [{}])[0].get(
        "last_evaluation_on") == "2026-06-01", what="the activity")
    at(plat, 2026, 11, 3)
    activity = eventually(lambda: (lambda a: a if a[0].get("earlier_months") else None)(
        institution_of(plat, 351)["activity"]), what="the monthly summary")
    assert activity[0]["earlier_months"] == [{"month": "2025-09", "count": 10}]
    assert activity[0]["count_12_months"] == 12


def publish_inspection(plat, event_type: str, body: dict) -> None:
    """What inspection publishes (nameko's event exchange "inspection.events")."""
    exchange = Exchange("inspection.events", type="topic", durable=True)
    with Connection(plat.amqp_uri) as conn:
        conn.Producer().publish(body, exchange=exchange, routing_key=event_type,
                                serializer="json", delivery_mode=2, declare=[exchange])


def test_inspection_s_decisions_suspend_until_rectified_and_reversal_undoes(plat):
    at(plat, 2025, 10, 10)
    code = "4-98-07-01"
    file_one(plat, 361, "410502", code)
    meta = {"source": "inspection", "actor": "regulator:r1"}
    decided = {"meta": {**meta, "event_id": uuid.uuid4().hex}, "decision_id": "D-361",
               "case_id": "case-361", "institution_id": uscc(361),
               "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION", "subject_id": uscc(361),
               "tier": "SANCTION_TIER_WARNING", "decided_on": "2025-10-10",
               "suspend_filing": True}
    with EventTap(plat, "InstitutionSuspended", "InstitutionReinstated") as tap:
        publish_inspection(plat, "SanctionDecided", decided)
        publish_inspection(plat, "SanctionDecided", decided)  # redelivered: once
        [suspended] = tap.wait_for(lambda b: b["institution_id"] == uscc(361))
        assert suspended["decision_ref"] == "D-361"
        assert institution_of(plat, 361)["status"] == "INSTITUTION_STATUS_SUSPENDED"
        code_, details = status_of(regulator(plat).ReinstateInstitution, {
            "institution_id": uscc(361), "reason": "r", "decision_ref": "X"})
        assert code_ == OK.FAILED_PRECONDITION and "D-361" in details
        at(plat, 2025, 10, 20)
        publish_inspection(plat, "DecisionReversed", {
            "meta": {**meta, "event_id": uuid.uuid4().hex}, "decision_id": "D-361",
            "institution_id": uscc(361), "review_id": "R-9", "reason": "wrong facts",
            "reversed_on": "2025-10-20"})
        tap.wait_for(lambda b: b["institution_id"] == uscc(361)
                     and b.get("reason", "").startswith("decision D-361 reversed"))
    got = institution_of(plat, 361)
    assert got["status"] == "INSTITUTION_STATUS_ACTIVE"
    assert got["history"][-1]["reason"] == "decision D-361 reversed on review R-9: wrong facts"
    [record] = got["inspection_decisions"]
    assert record["reversed_on"] == "2025-10-20" and record["review_id"] == "R-9"
    assert len([h for h in got["history"] if h["status"] == "INSTITUTION_STATUS_SUSPENDED"]) == 1
