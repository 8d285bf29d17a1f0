"""Filing's side of inspection's decisions with an in-memory unit of work: SanctionDecided
(suspend_filing, terminate_filing), RectificationAccepted and DecisionReversed, exactly once
per decision id and in any delivery order (seed 001 ch.6 art.3-4, art.7-8). The messages are
inspection's own (protos/vocreg/inspection/v1/events.proto), parsed as on_event parses them."""
from __future__ import annotations

import uuid

import pytest
from vocreg.filing.v1 import events_pb2

from services.common.entrypoints import parse_event
from services.common.errors import FailedPrecondition
from services.filing import domain, handlers
from services.filing.models import Institution
from tests.fakes import FakeClock, FakeUnitOfWork
from tests.support import uscc
from tests.unit.test_filing_handlers import (
    OCC,
    FakeFilingRepository,
    call,
    file_institution,
    stored,
)


@pytest.fixture
def clock():
    return FakeClock()  # Monday 15 September 2025, 10:00 in Shanghai


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeFilingRepository(), events_pb2, clock, "filing")

COUNTY = "410522"


def message(event_type, **fields):
    body = {"meta": {"event_id": uuid.uuid4().hex, "source": "inspection",
                     "actor": "regulator:r1"}, **fields}
    return parse_event("inspection", event_type, body)


def sanction(decision_id, n=1, suspend=False, terminate=False, decided_on="2025-10-09"):
    return message("SanctionDecided", decision_id=decision_id, case_id=f"case-{decision_id}",
                   institution_id=uscc(n), subject_kind="SUBJECT_KIND_EVALUATION_ORGANISATION",
                   subject_id=uscc(n), tier="SANCTION_TIER_WARNING", basis="001 ch.6 art.3(5)",
                   summary="rectification ordered", decided_on=decided_on,
                   rectification_due="2025-11-09", suspend_filing=suspend,
                   terminate_filing=terminate)


def rectified(decision_id, n=1, accepted_on="2025-10-20"):
    return message("RectificationAccepted", decision_id=decision_id, case_id="c",
                   institution_id=uscc(n), accepted_on=accepted_on)


def reversed_(decision_id, n=1, reversed_on="2025-10-25"):
    return message("DecisionReversed", decision_id=decision_id, case_id="c",
                   institution_id=uscc(n), review_id="R-1", reason="the facts were wrong",
                   reversed_on=reversed_on)


HANDLERS = {"SanctionDecided": handlers.sanction_decided,
            "RectificationAccepted": handlers.rectification_accepted,
            "DecisionReversed": handlers.decision_reversed}


def deliver(uow, clock, event, settings=None):
    """As Worker.handle_event runs it: once per event id, then flush and publish."""
    from tests.unit.test_filing_handlers import SETTINGS
    handler = HANDLERS[type(event).DESCRIPTOR.name]
    key = f"{handler.__name__}:{event.meta.event_id}"
    uow.begin()
    if uow.repo.handled(key):
        return None
    result = handler(event, uow, clock, settings or SETTINGS)
    uow.flush()
    uow.repo.mark_handled(key)
    uow.publish()
    return result


def status(uow, n=1):
    return stored(uow, Institution, uscc(n)).status


def test_a_suspension_stands_until_its_rectification_is_accepted(uow, clock):
    file_institution(uow, clock)
    clock.set(2025, 10, 10)
    event = sanction("D-1", suspend=True)
    assert deliver(uow, clock, event) == "applied"
    inst = stored(uow, Institution, uscc(1))
    assert inst.status == domain.SUSPENDED and inst.status_decision_ref == "D-1"
    assert inst.history[-1]["effective_on"] == "2025-10-09"  # the decision's own date
    assert inst.history[-1]["decision_ref"] == "D-1"
    [suspended] = uow.events("InstitutionSuspended")
    assert suspended["decision_ref"] == "D-1" and suspended["meta"]["actor"] == "service:inspection"
    # The same message again, and the same decision published anew: nothing more.
    assert deliver(uow, clock, event) is None
    assert deliver(uow, clock, sanction("D-1", suspend=True)) == "already applied"
    assert len(uow.events("InstitutionSuspended")) == 1
    right = call(handlers.check_evaluation_right, uow, clock, {
        "institution_id": uscc(1), "occupation_code": OCC, "skill_level": 4,
        "on_date": "2025-10-09"})
    assert right["denial"] == "EVALUATION_DENIAL_SUSPENDED"
    # The regulator cannot lift it by hand: inspection's decision stands.
    with pytest.raises(FailedPrecondition, match="suspended by inspection decision D-1"):
        call(handlers.reinstate_institution, uow, clock, {
            "institution_id": uscc(1), "reason": "r", "decision_ref": "X"})
    clock.set(2025, 10, 21)
    assert deliver(uow, clock, rectified("D-1")) == "applied"
    assert status(uow) == domain.ACTIVE
    [reinstated] = uow.events("InstitutionReinstated")
    assert reinstated["decision_ref"] == "D-1" and reinstated["effective_on"] == "2025-10-20"
    got = call(handlers.get_institution, uow, clock, {"institution_id": uscc(1)})["institution"]
    [record] = got["inspection_decisions"]
    assert record["effect"] == domain.EFFECT_SUSPEND
    assert record["rectification_accepted_on"] == "2025-10-20"
    assert "suspensions" not in got


def test_an_institution_is_active_again_only_when_no_suspension_stands(uow, clock):
    file_institution(uow, clock)
    deliver(uow, clock, sanction("D-1", suspend=True))
    deliver(uow, clock, sanction("D-2", suspend=True, decided_on="2025-10-12"))
    clock.set(2025, 10, 21)
    deliver(uow, clock, rectified("D-1"))
    assert status(uow) == domain.SUSPENDED
    assert [h["decision_ref"] for h in stored(uow, Institution, uscc(1)).suspensions] == ["D-2"]
    assert not uow.events("InstitutionReinstated")
    deliver(uow, clock, reversed_("D-2", reversed_on="2025-10-21"))
    assert status(uow) == domain.ACTIVE
    reason = stored(uow, Institution, uscc(1)).history[-1]["reason"]
    assert reason == "decision D-2 reversed on review R-1: the facts were wrong"


def test_a_manual_suspension_and_an_inspection_one_stand_side_by_side(uow, clock):
    file_institution(uow, clock)
    call(handlers.suspend_institution, uow, clock, {"institution_id": uscc(1),
                                                    "reason": "own check", "decision_ref": "M-1"})
    deliver(uow, clock, sanction("D-1", suspend=True))
    deliver(uow, clock, rectified("D-1"))
    assert status(uow) == domain.SUSPENDED  # the regulator's own suspension stands
    call(handlers.reinstate_institution, uow, clock, {"institution_id": uscc(1),
                                                      "reason": "done", "decision_ref": "M-2"})
    assert status(uow) == domain.ACTIVE


def test_rectification_accepted_before_the_decision_arrives(uow, clock):
    file_institution(uow, clock)
    clock.set(2025, 10, 22)
    assert deliver(uow, clock, rectified("D-1")) == "applied"
    assert status(uow) == domain.ACTIVE
    deliver(uow, clock, sanction("D-1", suspend=True))
    assert status(uow) == domain.ACTIVE
    inst = stored(uow, Institution, uscc(1))
    assert [(h["status"], h["effective_on"]) for h in inst.history[1:]] == [
        (domain.SUSPENDED, "2025-10-09"), (domain.ACTIVE, "2025-10-20")]
    right = {"institution_id": uscc(1), "occupation_code": OCC, "skill_level": 4}
    assert call(handlers.check_evaluation_right, uow, clock, {**right, "on_date": "2025-10-15"})[
        "denial"] == "EVALUATION_DENIAL_SUSPENDED"
    assert call(handlers.check_evaluation_right, uow, clock,
                {**right, "on_date": "2025-10-20"})["allowed"]
    assert [e["event_type"] for e in uow.published][-2:] == ["InstitutionSuspended",
                                                             "InstitutionReinstated"]


def test_a_reversal_that_arrives_first_is_not_lost(uow, clock):
    file_institution(uow, clock)
    clock.set(2025, 10, 26)
    deliver(uow, clock, reversed_("D-1"))
    deliver(uow, clock, sanction("D-1", terminate=True))
    assert status(uow) == domain.ACTIVE
    [record] = stored(uow, Institution, uscc(1)).inspection_decisions
    assert record["notes"][-1] == "not applied: reversed on 2025-10-25 before it arrived"
    assert not uow.events("FilingTerminated")
    deliver(uow, clock, rectified("D-1"))  # late and moot
    assert status(uow) == domain.ACTIVE and not uow.events("InstitutionReinstated")


def test_a_termination_frees_the_seat_and_its_reversal_reinstates_with_the_reason(uow, clock):
    file_institution(uow, clock, 1, COUNTY)
    clock.set(2025, 10, 10)
    deliver(uow, clock, sanction("D-9", terminate=True, suspend=True))
    inst = stored(uow, Institution, uscc(1))
    assert inst.status == domain.TERMINATED and not inst.seats
    [terminated] = uow.events("FilingTerminated")
    assert terminated["decision_ref"] == "D-9" and terminated["filing_code"] == inst.filing_code
    assert inst.suspensions == []  # termination, not a suspension as well
    clock.set(2025, 10, 26)
    deliver(uow, clock, reversed_("D-9"))
    inst = stored(uow, Institution, uscc(1))
    assert inst.status == domain.ACTIVE and inst.seats == [f"county:{COUNTY}|{OCC}|1"]
    assert inst.history[-1]["reason"] == "decision D-9 reversed on review R-1: the facts were wrong"
    assert uow.events("InstitutionReinstated")[-1]["decision_ref"] == "D-9"
    deliver(uow, clock, reversed_("D-9"))  # published again: nothing more
    assert len(uow.events("InstitutionReinstated")) == 1


def test_a_termination_undone_into_a_full_county_is_recorded_as_an_excess(uow, clock):
    file_institution(uow, clock, 1, COUNTY)
    file_institution(uow, clock, 2, COUNTY)
    deliver(uow, clock, sanction("D-9", n=1, terminate=True))
    file_institution(uow, clock, 3, COUNTY)  # the freed seat is taken meanwhile
    deliver(uow, clock, reversed_("D-9", n=1))
    inst = stored(uow, Institution, uscc(1))
    assert inst.status == domain.ACTIVE and not inst.seats
    [excess] = inst.quota_excess
    assert excess["cause"] == "the termination undone on the reversal of decision D-9"
    assert excess["count"] == 3 and excess["state"] == domain.EXCESS_AWAITING


def test_a_decision_for_a_filing_already_ended_or_unknown_changes_nothing(uow, clock):
    file_institution(uow, clock)
    call(handlers.terminate_filing, uow, clock, {"institution_id": uscc(1), "reason": "fraud",
                                                 "decision_ref": "M-1"})
    deliver(uow, clock, sanction("D-1", suspend=True))
    inst = stored(uow, Institution, uscc(1))
    assert inst.status == domain.TERMINATED
    assert inst.inspection_decisions[0]["notes"] == ["not applied: the filing is terminated"]
    deliver(uow, clock, reversed_("D-1"))  # the regulator's own termination is not undone
    assert status(uow) == domain.TERMINATED
    assert deliver(uow, clock, sanction("D-2", n=7, suspend=True)) == "not filed"
    assert deliver(uow, clock, message("SanctionDecided", decision_id="D-3")) == "ignored"
