"""request_id on every mutating RPC (services/common/idempotency.py), through the handlers of
filing and certificates with the in-memory unit of work: the same request again answers as the
first time did; the same id with other content is ALREADY_EXISTS; a bad id is refused with the
request's other problems and nothing stored."""
from __future__ import annotations

from datetime import timedelta

import pytest
from vocreg.certificates.v1 import events_pb2 as certificate_events
from vocreg.filing.v1 import events_pb2 as filing_events

from services.certificates import handlers as certificates
from services.certificates.models import Operation
from services.certificates.settings import CertificatesSettings
from services.common import idempotency
from services.common.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument
from services.filing import handlers as filing
from services.filing.models import Application
from services.filing.settings import FilingSettings
from tests.fakes import FakeClock, FakeUnitOfWork, caller, run
from tests.support import PASSED_EVALUATION, application_request, uscc
from tests.unit.test_certificates_handlers import (
    INSTITUTION,
    FakeCertificatesRepository,
    FakeFiling,
    batch,
    row,
)
from tests.unit.test_filing_handlers import FakeFilingRepository

REGULATOR = caller("regulator")
INST = caller("institution", INSTITUTION)
FILING = FilingSettings()
CERTS = CertificatesSettings()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def certs(clock):
    return FakeUnitOfWork(FakeCertificatesRepository(), certificate_events, clock, "certificates")


@pytest.fixture
def files(clock):
    return FakeUnitOfWork(FakeFilingRepository(), filing_events, clock, "filing")


def issue(uow, clock, request, filing_port=None):
    return run(certificates.issue_certificates, uow, clock, CERTS, request, INST,
               filing=filing_port or FakeFiling())


# --- IssueCertificates: the answer rebuilt from what the first call wrote -------------------
def test_a_retried_batch_gets_the_first_answer_and_nothing_more_happens(certs, clock):
    request = {**batch(row(1), row(2, level=5), row(3, occupation="4-03-02-01"), row(1)),
               "request_id": "upload-2025-09-15"}
    first = issue(certs, clock, request)
    assert [r["status"] for r in first["results"]] == [
        "ROW_STATUS_ISSUED", "ROW_STATUS_ISSUED", "ROW_STATUS_REJECTED", "ROW_STATUS_REJECTED"]
    asked = FakeFiling()
    again = issue(certs, clock, request, asked)
    assert again == first  # the same batch_id, numbers, refusals and counts
    assert asked.asked == []  # filing is not asked again: nothing is decided again
    assert len(certs.repo.certificates) == 2 and len(certs.events("CertificatesIssued")) == 1
    # Without the request_id the same rows are a new upload: nothing issued twice.
    blind = issue(certs, clock, {k: v for k, v in request.items() if k != "request_id"})
    assert blind["batch_id"] != first["batch_id"] and blind["duplicate_count"] == 2
    assert blind["issued_count"] == 0 and len(certs.repo.certificates) == 2


def test_a_retried_batch_after_earlier_duplicates_still_answers_as_the_first(certs, clock):
    issue(certs, clock, batch(row(1)))
    request = {**batch(row(1), row(2)), "request_id": "second"}
    first = issue(certs, clock, request)
    assert [r["status"] for r in first["results"]] == ["ROW_STATUS_DUPLICATE", "ROW_STATUS_ISSUED"]
    assert issue(certs, clock, request) == first


def test_the_same_request_id_with_other_rows_is_already_exists(certs, clock):
    issue(certs, clock, {**batch(row(1)), "request_id": "upload-1"})
    with pytest.raises(AlreadyExists, match=r"request_id was already used .*\(upload-1\)"):
        issue(certs, clock, {**batch(row(1), row(2)), "request_id": "upload-1"})
    assert len(certs.repo.certificates) == 1 and len(certs.repo.all(Operation)) == 1


def test_a_batch_cut_short_is_finished_by_its_retry_once_its_worker_is_gone(certs, clock):
    request = {**batch(row(1), row(2)), "request_id": "crashed"}
    first = issue(certs, clock, request)
    [op] = certs.repo.all(Operation)
    # As a crash after the certificates, before the operation was DONE, leaves it:
    op.state, op.summary, op.pending_events = "PENDING", {}, []
    certs.published.clear()
    with pytest.raises(Conflict, match="being processed"):
        issue(certs, clock, request)  # its worker is alive: the first call may still be running
    op.owner = "a-worker-that-died"  # it beats no more: the crash the state above says
    assert issue(certs, clock, request) == first
    [event] = certs.events("CertificatesIssued")
    assert event["batch_id"] == first["batch_id"] and event["total"] == 2


def test_another_caller_may_use_the_same_request_id(certs, clock):
    other = caller("institution", uscc(2))
    issue(certs, clock, {**batch(row(1)), "request_id": "same"})
    answer = run(certificates.issue_certificates, certs, clock, CERTS,
                 {**batch(row(1), session="S-other"), "request_id": "same"}, other,
                 filing=FakeFiling())
    assert answer["issued_count"] == 1


# --- invalidation: the first answer, not "unchanged" ----------------------------------------
def test_a_retried_invalidation_answers_as_the_first(certs, clock):
    number = issue(certs, clock, batch(row(1)))["results"][0]["certificate_number"]
    request = {"selection": {"certificate_numbers": [number, "S000041000123254999999"]},
               "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "AY-2025-9",
               "request_id": "void-1"}
    first = run(certificates.invalidate_certificates, certs, clock, CERTS, request, REGULATOR)
    assert first["result"]["changed_count"] == 1
    assert first["result"]["not_found"] == ["S000041000123254999999"]
    again = run(certificates.invalidate_certificates, certs, clock, CERTS, request, REGULATOR)
    assert again == first and len(certs.events("CertificatesInvalidated")) == 1
    blind = run(certificates.invalidate_certificates, certs, clock, CERTS,
                {**request, "request_id": ""}, REGULATOR)
    assert blind["result"]["changed_count"] == 0 and blind["result"]["unchanged_count"] == 1


def test_an_invalidation_cut_short_before_the_certificates_changed_is_finished(certs, clock):
    number = issue(certs, clock, batch(row(1)))["results"][0]["certificate_number"]
    request = {"selection": {"certificate_numbers": [number]}, "request_id": "void-2",
               "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "AY-2025-10"}
    first = run(certificates.invalidate_certificates, certs, clock, CERTS, request, REGULATOR)
    op = certs.repo.get(Operation, first["result"]["operation_id"])
    # As a crash right after the operation's first write leaves things:
    op.state, op.summary, op.pending_events = "PENDING", {}, []
    certs.repo.certificates[0].update(status="CERTIFICATE_STATUS_VALID", invalidation={},
                                      operation_id=None)
    op.owner = "a-worker-that-died"
    assert run(certificates.invalidate_certificates, certs, clock, CERTS, request,
               REGULATOR) == first
    assert certs.repo.certificates[0]["status"] == "CERTIFICATE_STATUS_INVALIDATED"


# --- filing: stored answers ----------------------------------------------------------------------
def submitted(files, clock, n=1):
    return run(filing.submit_application, files, clock, FILING, application_request(n),
               caller("institution", uscc(n)))["application"]["application_id"]


def test_a_retried_acceptance_gets_the_first_answer_even_after_the_application_moved_on(
        files, clock):
    app_id = submitted(files, clock)
    request = {"application_id": app_id, "decision": "ACCEPTANCE_DECISION_ACCEPT",
               "request_id": "accept-1"}
    first = run(filing.accept_application, files, clock, FILING, request, REGULATOR)
    run(filing.decide_application, files, clock, FILING,
        {"application_id": app_id, "outcome": "DECISION_OUTCOME_FILE",
         "evaluation": PASSED_EVALUATION, "request_id": "decide-1"}, REGULATOR)
    again = run(filing.accept_application, files, clock, FILING, request, REGULATOR)
    assert again == first and again["application"]["state"] == "APPLICATION_STATE_ACCEPTED"
    assert len(files.events("ApplicationAccepted")) == 1
    with pytest.raises(FailedPrecondition):  # without the request_id: the state decides
        run(filing.accept_application, files, clock, FILING,
            {**request, "request_id": ""}, REGULATOR)
    with pytest.raises(AlreadyExists):  # the id names that acceptance, not another one
        run(filing.accept_application, files, clock, FILING,
            {**request, "application_id": submitted(files, clock, 2)}, REGULATOR)


def test_a_bad_request_id_is_reported_with_the_other_problems_and_nothing_is_stored(
        files, clock):
    app_id = submitted(files, clock)
    before = files.repo.get(Application, app_id).version
    with pytest.raises(InvalidArgument) as info:
        run(filing.accept_application, files, clock, FILING,
            {"request_id": "not ok!", "decision": "ACCEPTANCE_DECISION_ACCEPT"}, REGULATOR)
    assert info.value.violations == ["request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
                                     "application_id: required"]
    with pytest.raises(InvalidArgument) as info:  # nothing else wrong: refused before loading
        run(filing.accept_application, files, clock, FILING,
            {"application_id": app_id, "request_id": "x" * 65,
             "decision": "ACCEPTANCE_DECISION_ACCEPT"}, REGULATOR)
    assert info.value.violations == ["request_id: required, 1-64 of A-Z a-z 0-9 . _ : -"]
    assert files.repo.get(Application, app_id).version == before
    assert files.repo.get(Application, app_id).state == "APPLICATION_STATE_RECEIVED"


def test_a_bad_request_id_is_the_answer_whatever_the_state(certs, clock):
    with pytest.raises(InvalidArgument) as info:  # not NotFound: nothing matches, but first
        run(certificates.invalidate_certificates, certs, clock, CERTS,
            {"selection": {"certificate_numbers": ["S000041000123254000001"]},
             "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "AY-1", "request_id": "a b"},
            REGULATOR)
    assert info.value.violations == ["request_id: required, 1-64 of A-Z a-z 0-9 . _ : -"]
    assert certs.repo.all(Operation) == []


def test_a_required_request_id_missing_stores_nothing(files, clock):
    request = application_request(1)
    del request["request_id"]
    with pytest.raises(InvalidArgument, match="request_id: required"):
        run(filing.submit_application, files, clock, FILING, request,
            caller("institution", uscc(1)))
    assert files.repo.store == {}


def test_two_copies_of_one_request_at_once_answer_alike(files, clock, monkeypatch):
    """The second copy read before the first wrote: its write loses the race (the same derived
    application id), and it answers with the first copy's answer."""
    first = run(filing.submit_application, files, clock, FILING, application_request(1),
                caller("institution", uscc(1)))
    real, looks = files.repo.request_entries, []

    def first_look_misses(key):  # the second copy looks before the first copy's write
        looks.append(key)
        return [] if len(looks) == 1 else real(key)

    monkeypatch.setattr(files.repo, "request_entries", first_look_misses)
    second = run(filing.submit_application, files, clock, FILING, application_request(1),
                 caller("institution", uscc(1)))
    assert second == first and len(files.repo.all(Application)) == 1
    assert len(files.events("ApplicationSubmitted")) == 1 and len(looks) == 2


def test_request_ids_are_remembered_for_seven_days(files, clock):
    app_id = submitted(files, clock)
    request = {"application_id": app_id, "decision": "ACCEPTANCE_DECISION_ACCEPT",
               "request_id": "accept-late"}
    run(filing.accept_application, files, clock, FILING, request, REGULATOR)
    clock.current += idempotency.RETENTION + timedelta(minutes=1)
    with pytest.raises(FailedPrecondition):  # forgotten: run again, and the state decides
        run(filing.accept_application, files, clock, FILING, request, REGULATOR)


def test_an_aggregate_keeps_its_newest_request_records_only(clock):
    record = idempotency.RequestRecord("k", "d", "r")
    entries = []
    for i in range(idempotency.KEPT_PER_AGGREGATE + 5):
        entries = idempotency.remember(
            entries, idempotency.RequestRecord(f"k{i}", "d", "r").entry(clock.now()), clock.now())
    assert len(entries) == idempotency.KEPT_PER_AGGREGATE and entries[-1]["key"] == "k36"
    entries = idempotency.remember(entries, record.entry(clock.now(), {"a": 1}), clock.now())
    entries = idempotency.remember(entries, record.entry(clock.now(), {"a": 2}), clock.now())
    assert [idempotency.decode_answer(e["answer"]) for e in entries if e["key"] == "k"] == [
        {"a": 2}]


def test_content_is_compared_as_proto3_means_it():
    assert idempotency.canonical({"note": "", "a": [{"x": 0, "y": "z"}], "b": False}) == \
        {"a": [{"y": "z"}]}


def test_an_operation_from_before_workers_named_themselves_is_finished_once_stale(certs, clock):
    request = {**batch(row(1)), "request_id": "old"}
    first = issue(certs, clock, request)
    [op] = certs.repo.all(Operation)
    op.state, op.summary, op.pending_events, op.owner = "PENDING", {}, [], None
    with pytest.raises(Conflict, match="being processed"):
        issue(certs, clock, request)
    clock.current += timedelta(seconds=CERTS.stale_operation_seconds + 1)
    assert issue(certs, clock, request) == first


def test_a_batch_whose_worker_died_before_storing_rows_is_issued_whole_by_its_retry(certs, clock):
    request = {**batch(row(1), row(2)), "request_id": "killed-early"}
    first = issue(certs, clock, request)
    [op] = certs.repo.all(Operation)
    # As a kill right after the operation's first write leaves things: no certificate yet.
    op.state, op.summary, op.pending_events, op.owner = "PENDING", {}, [], "a-worker-that-died"
    certs.repo.certificates.clear()
    certs.published.clear()
    again = issue(certs, clock, request)
    assert again["batch_id"] == first["batch_id"] and again["issued_count"] == 2
    assert {c["batch_id"] for c in certs.repo.certificates} == {first["batch_id"]}
    [event] = certs.events("CertificatesIssued")
    assert event["total"] == 2


@pytest.mark.parametrize("kind, owner_alive, age, has_request, abandoned", [
    ("issue", True, 10_000, True, False),      # its worker beats: never taken over
    ("issue", False, 0, True, True),           # gone: its retry takes it over at once
    ("issue", False, 599, False, False),       # the sweep leaves a batch to its retry...
    ("issue", False, 600, False, True),        # ...for the stale window only
    ("invalidate", False, 0, False, True),     # a stored selection: the sweep at once
])
def test_who_may_finish_a_pending_operation(kind, owner_alive, age, has_request, abandoned):
    from services.certificates.domain import operation_abandoned
    assert operation_abandoned(kind, "w1", owner_alive, age, 600, has_request) is abandoned
