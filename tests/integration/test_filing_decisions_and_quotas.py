"""Filing on the real broker: inspection's decisions dispatched as inspection publishes them
(nameko's standalone event dispatcher on "inspection.events", the messages of
protos/vocreg/inspection/v1/events.proto), in every order and more than once; and quota seats
under concurrent changes, settled by the database's unique index. Rules: seed 001 ch.2 art.8,
ch.6 art.3-6."""
from __future__ import annotations

import uuid

import eventlet
import pytest
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook

from services.filing.service import FilingService
from tests.integration.test_filing_lifecycle import file_institution, institution
from tests.support import uscc

OCC = "4-10-01-02"
COUNTY = "410522"


def inspection_event(**fields) -> dict:
    return {"meta": {"event_id": uuid.uuid4().hex, "source": "inspection",
                     "actor": "regulator:r1"}, **fields}


def sanction(decision_id, n=1, **effect) -> dict:
    return inspection_event(decision_id=decision_id, case_id=f"case-{decision_id}",
                            subject_kind="SUBJECT_KIND_EVALUATION_ORGANISATION",
                            subject_id=uscc(n), institution_id=uscc(n),
                            tier="SANCTION_TIER_WARNING", basis="001 ch.6 art.3(5)",
                            summary="rectification ordered", decided_on="2025-10-09",
                            rectification_due="2025-11-09", **effect)


def wait_for(probe, what: str, timeout: float = 30.0):
    # Generous: events cross the broker between containers, and on a loaded 2-core machine
    # a handful of them took over 10 s; a passing probe returns at once whatever the timeout.
    deadline = eventlet.hubs.get_hub().clock() + timeout
    while True:
        value = probe()
        if value:
            return value
        if eventlet.hubs.get_hub().clock() > deadline:
            raise AssertionError(f"{what} not reached (last: {value!r})")
        eventlet.sleep(0.05)


def decisions_of(regulator, n=1) -> dict:
    inst = regulator.GetInstitution({"institution_id": uscc(n)})["institution"]
    return {d["decision_id"]: d for d in inst.get("inspection_decisions", [])}


def test_inspection_s_suspension_until_rectification_once_per_decision(filing, rpc_as, regulator,
                                                                       rabbit_config, clock):
    file_institution(rpc_as, regulator, 1)
    clock.set(2025, 10, 10)
    dispatch = event_dispatcher(rabbit_config)
    decided = sanction("D-1", suspend_filing=True)
    dispatch("inspection", "SanctionDecided", decided)
    dispatch("inspection", "SanctionDecided", decided)                      # redelivered
    dispatch("inspection", "SanctionDecided", sanction("D-1", suspend_filing=True))  # again
    wait_for(lambda: "D-1" in decisions_of(regulator), "the suspension")
    inst = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert inst["status"] == "INSTITUTION_STATUS_SUSPENDED"
    assert inst["status_decision_ref"] == "D-1"
    assert [h["status"] for h in inst["history"]] == ["INSTITUTION_STATUS_ACTIVE",
                                                      "INSTITUTION_STATUS_SUSPENDED"]
    assert [s["decision_ref"] for s in inst["suspensions"]] == ["D-1"]
    clock.set(2025, 10, 21)
    dispatch("inspection", "RectificationAccepted", inspection_event(
        decision_id="D-1", case_id="case-D-1", institution_id=uscc(1), accepted_on="2025-10-20"))
    wait_for(lambda: decisions_of(regulator)["D-1"].get("rectification_accepted_on"),
             "the rectification")
    inst = regulator.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert inst["status"] == "INSTITUTION_STATUS_ACTIVE"
    assert [h["status"] for h in inst["history"]].count("INSTITUTION_STATUS_SUSPENDED") == 1
    right = regulator.CheckEvaluationRight({"institution_id": uscc(1), "occupation_code": OCC,
                                            "skill_level": 4, "on_date": "2025-10-15"})
    assert right["denial"] == "EVALUATION_DENIAL_SUSPENDED"


def test_a_reversal_before_its_decision_and_a_termination_undone(filing, rpc_as, regulator,
                                                                rabbit_config, clock):
    file_institution(rpc_as, regulator, 1)
    file_institution(rpc_as, regulator, 2, district="410503")
    clock.set(2025, 10, 26)
    dispatch = event_dispatcher(rabbit_config)
    reversal = inspection_event(decision_id="D-7", case_id="c", institution_id=uscc(1),
                                review_id="R-1", reason="wrong facts", reversed_on="2025-10-25")
    dispatch("inspection", "DecisionReversed", reversal)
    wait_for(lambda: decisions_of(regulator).get("D-7", {}).get("reversed_on"), "the reversal")
    dispatch("inspection", "SanctionDecided", sanction("D-7", terminate_filing=True))
    wait_for(lambda: decisions_of(regulator)["D-7"].get("decided_on"), "the late decision")
    assert regulator.GetInstitution({"institution_id": uscc(1)})["institution"]["status"] == \
        "INSTITUTION_STATUS_ACTIVE"
    # Institution 2: terminated, then the decision is reversed on review.
    dispatch("inspection", "SanctionDecided", sanction("D-8", n=2, terminate_filing=True))
    wait_for(lambda: regulator.GetInstitution({"institution_id": uscc(2)})["institution"][
        "status"] == "INSTITUTION_STATUS_TERMINATED", "the termination")
    dispatch("inspection", "DecisionReversed", {**reversal, "decision_id": "D-8",
                                                "institution_id": uscc(2),
                                                "meta": {"event_id": uuid.uuid4().hex}})
    inst = wait_for(lambda: (lambda i: i if i["status"] == "INSTITUTION_STATUS_ACTIVE" else None)(
        regulator.GetInstitution({"institution_id": uscc(2)})["institution"]), "the reversal")
    assert inst["history"][-1]["reason"] == "decision D-8 reversed on review R-1: wrong facts"
    assert inst["history"][-1]["decision_ref"] == "D-8"


def test_racing_moves_into_a_county_s_last_seat_leave_one_holder_and_one_excess(
        filing, rpc_as, regulator):
    file_institution(rpc_as, regulator, 1, district=COUNTY)
    for n, district in ((2, "410502"), (3, "410503")):
        file_institution(rpc_as, regulator, n, district=district)
    calls = [institution(rpc_as, n).FileChange.call_async({
        "request_id": f"move-{n}", "institution_id": uscc(n), "kind": "CHANGE_KIND_DETAILS",
        "address": f"河南省安阳县新址{n}号", "district_code": COUNTY, "changed_on": "2025-09-15"})
        for n in (2, 3)]
    answers = [c.result() for c in calls]
    assert sorted(len(a.get("quota_excess", [])) for a in answers) == [0, 1]
    [county] = regulator.ListQuotaUsage({"district_code": COUNTY})["usage"]
    assert (county["limit"], county["count"], county["exceeding"]) == (2, 3, 1)
    held = [h for h in county["institutions"] if h.get("seat")]
    assert len(held) == 2
    [over] = [h for h in county["institutions"] if not h.get("seat")]
    assert over["excess"]["state"] == "QUOTA_EXCESS_STATE_AWAITING_DECISION"
    tray = regulator.ListPendingDecisions({})["quota_excess"]
    assert [e["institution_id"] for e in tray] == [over["institution_id"]]


def test_the_database_refuses_a_second_holder_of_one_seat(start_service, rpc_as, regulator):
    """Below the handlers: two writers that both read the seat free write the same token;
    the unique index on the institution's seats keeps exactly one."""
    from mongoengine.errors import NotUniqueError

    from services.filing.models import Institution

    container = start_service(FilingService)
    file_institution(rpc_as, regulator, 1, district=COUNTY)
    file_institution(rpc_as, regulator, 2, district="410502")
    file_institution(rpc_as, regulator, 3, district="410503")
    token = f"county:{COUNTY}|{OCC}|2"
    with entrypoint_hook(container, "health") as health:
        health()  # the worker's connection is up: use it as the handlers do
    first, second = (Institution.objects(pk=uscc(n)).first() for n in (2, 3))
    first.seats, second.seats = [token], [token]
    first.commit()
    with pytest.raises(NotUniqueError):
        second.commit()
    holders = [i.institution_id for i in Institution.objects(seats=token)]
    assert holders == [uscc(2)]
