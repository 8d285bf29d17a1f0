"""The report's read model on the real broker and database: events from every producer
dispatched as their services publish them, each logged once and projected into the daily
figures; redeliveries, lost handled-marks and a rebuild from the log change nothing; editions
generated, submitted and corrected over the bus."""
from __future__ import annotations

import mongoengine
import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_waiter

from services.reporting.service import ReportingService
from tests import reporting_events as R
from tests.support import token

HANDLERS = {
    ("filing", "InstitutionSuspended"): "on_filing_suspended",
    ("filing", "FilingTerminated"): "on_filing_terminated",
    ("certificates", "CertificatesInvalidated"): "on_certificates_invalidated",
    ("certificates", "CertificatesWithdrawn"): "on_certificates_withdrawn",
    ("inspection", "InspectionCompleted"): "on_inspection_completed",
    ("inspection", "FindingRecorded"): "on_inspection_finding",
    ("inspection", "SanctionDecided"): "on_inspection_sanction",
    ("inspection", "CaseOutcomeRecorded"): "on_inspection_outcome",
    ("escrow", "ComplaintResolved"): "on_escrow_complaint_resolved",
    ("courses", "CourseDelisted"): "on_courses_delisted",
    ("courses", "CheatingConfirmed"): "on_courses_cheating_confirmed",
}


@pytest.fixture
def reporting(start_service, clock):
    clock.set(2026, 8, 14)
    return start_service(ReportingService)


@pytest.fixture
def publish(reporting, rabbit_config):
    dispatch = event_dispatcher(rabbit_config)

    def send(producer, event_type, body):
        with entrypoint_waiter(reporting, HANDLERS[(producer, event_type)], timeout=10):
            dispatch(producer, event_type, body)
    return send


def test_every_source_of_the_definition_has_its_handler():
    from services.reporting.domain.definition import SOURCES

    assert set(SOURCES) == set(HANDLERS)
    assert all(hasattr(ReportingService, name) for name in HANDLERS.values())


def daily(rpc, first="2026-06-01", last="2026-12-31"):
    answer = rpc.GetDailyFigures({"from_day": first, "to_day": last})
    return answer, {(f["figure"], f["day"]): (f["value"], f["log_position"])
                    for f in answer["figures"]}


def test_figures_follow_the_events_once_whatever_the_redeliveries(reporting, publish, rpc_as):
    events = R.report_year()
    for producer, event_type, body in events:
        publish(producer, event_type, body)
    regulator = rpc_as(token("regulator")).reporting
    answer, figures = daily(regulator)
    assert answer["log_position"] == str(len(events))
    assert answer["projected_position"] == str(len(events))
    # one figure by hand: two complaints resolved, each on its day, each with its position
    assert figures[("refund_complaints_resolved", "2026-07-06")][0] == "1"
    assert figures[("amount_refunded", "2026-07-06")][0] == "350000"
    assert figures[("checked_training", "2026-06-20")][0] == "1"  # kept, never in an edition

    # The same events again, as a redelivery would bring them: nothing moves.
    for producer, event_type, body in events[:5]:
        publish(producer, event_type, body)
    # And with the handled-marks lost (a crash between the handler's writes and its mark):
    # the log knows each event and each figure its last position.
    db = mongoengine.get_db("reporting")  # the container's connection, in this process
    db["processed_events"].delete_many({})
    db["checkpoints"].delete_many({})
    for producer, event_type, body in events[5:9]:
        publish(producer, event_type, body)
    again, figures_again = daily(regulator)
    assert figures_again == figures and again["log_position"] == str(len(events))

    # A rebuild from the log gives the same figures: nothing to change.
    rebuilt = regulator.RebuildFigures({"request_id": "rebuild-1"})
    assert rebuilt["figures_changed"] == 0 and rebuilt["events_replayed"] == len(events)
    assert daily(regulator)[1] == figures

    # A figure damaged in the database is found and repaired by the rebuild.
    db["daily_figures"].update_one({"_id": "amount_refunded|2026-07-06"},
                                   {"$set": {"value": 1}})
    assert regulator.RebuildFigures({"request_id": "rebuild-2"})["figures_changed"] == 1
    assert daily(regulator)[1] == figures


def test_an_edition_over_the_bus_generated_submitted_and_refused_twice(reporting, publish,
                                                                        rpc_as, clock):
    for producer, event_type, body in R.report_year():
        publish(producer, event_type, body)
    regulator = rpc_as(token("regulator")).reporting
    first = regulator.GenerateEdition({"cut_off": "2026-07-14", "request_id": "g-1"})
    edition = first["edition"]
    assert first["created"] and edition["edition_id"] == "2026-p01-r1"
    assert R.values(edition["rows"]) == R.expected_full(R.EXPECTED_P01)
    again = regulator.GenerateEdition({"cut_off": "2026-07-14"})
    assert not again.get("created") and again["edition"]["edition_id"] == "2026-p01-r1"

    submitted = regulator.SubmitEdition({"edition_id": "2026-p01-r1", "request_id": "s-1"})
    assert submitted["edition"]["state"] == "EDITION_STATE_SUBMITTED"
    assert submitted["edition"]["submitted_late"]  # due 2026-07-16, the clock says 08-14
    assert regulator.SubmitEdition({"edition_id": "2026-p01-r1",
                                    "request_id": "s-1"}) == submitted
    with pytest.raises(RemoteError) as refused:
        regulator.SubmitEdition({"edition_id": "2026-p01-r1"})
    assert refused.value.exc_type == "FailedPrecondition"
    assert "submitted already" in refused.value.value

    with pytest.raises(RemoteError) as not_yet:
        regulator.GenerateEdition({"cut_off": "2026-08-25"})
    assert not_yet.value.exc_type == "FailedPrecondition"
    with pytest.raises(RemoteError) as not_a_cut_off:
        regulator.GenerateEdition({"cut_off": "2026-07-15"})
    assert not_a_cut_off.value.exc_type == "InvalidArgument"
    with pytest.raises(RemoteError) as institution:
        rpc_as(token("institution", 1)).reporting.ListEditions({"year": 2026})
    assert institution.value.exc_type == "PermissionDenied"


def test_workers_following_the_log_at_once_count_each_event_once(reporting, publish, rpc_as):
    """Three followers over the same entries at once (as three worker processes would be):
    each daily figure takes each position once, whoever gets there first."""
    import eventlet

    from services.reporting import handlers
    from services.reporting.repository import ReportingRepository

    for producer, event_type, body in R.report_year():
        publish(producer, event_type, body)
    regulator = rpc_as(token("regulator")).reporting
    _, figures = daily(regulator)
    db = mongoengine.get_db("reporting")
    db["daily_figures"].delete_many({})
    db["checkpoints"].delete_one({"_id": "figures"})

    class Follower:
        repo = ReportingRepository("reporting")

    threads = [eventlet.spawn(handlers._follow, Follower()) for _ in range(3)]
    applied = [t.wait() for t in threads]
    contributions = sum(len(d["contributions"]) for d in db["daily_figures"].find({}))
    assert sum(applied) == contributions  # no contribution applied twice
    assert daily(regulator)[1] == figures
    assert regulator.RebuildFigures({"request_id": "rebuild-3"}).get("figures_changed", 0) == 0
