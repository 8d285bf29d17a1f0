"""Grading on the real broker: filing's, certificates' and inspection's events consumed as
their producers publish them, a year run over RPC, and the events grading publishes.
Rules: seeds 000, 001 ch.6-7, 003."""
from __future__ import annotations

import eventlet
import pytest
from nameko.events import event_handler
from nameko.exceptions import RemoteError
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_waiter

from services.grading.service import GradingService
from tests import grading_support as gs
from tests.support import token, uscc


class GradingEvents:
    name = "grading_event_log"
    seen: list = []

    @event_handler("grading", "GradePublished")
    def published(self, body):
        GradingEvents.seen.append(("GradePublished", body))

    @event_handler("grading", "ListedBlack")
    def black(self, body):
        GradingEvents.seen.append(("ListedBlack", body))

    @event_handler("grading", "GradeRevised")
    def revised(self, body):
        GradingEvents.seen.append(("GradeRevised", body))


@pytest.fixture
def grading(start_service, clock):
    clock.set(2026, 1, 5)
    return start_service(GradingService)


@pytest.fixture
def log(start_service):
    GradingEvents.seen = []
    return start_service(GradingEvents, replace_clock=False)


def wait_for(probe, timeout=10.0):
    deadline = eventlet.hubs.get_hub().clock() + timeout
    while not probe():
        assert eventlet.hubs.get_hub().clock() < deadline, "not reached in time"
        eventlet.sleep(0.05)


def deliver(container, rabbit_config, producer, event_type, body, method):
    with entrypoint_waiter(container, method):
        event_dispatcher(rabbit_config)(producer, event_type, body)


def test_an_invalidation_and_a_termination_reach_the_grades_with_their_event_ids(
        grading, log, rpc_as, rabbit_config, clock):
    for n, filed in ((1, "2024-03-01"), (2, "2024-05-01"), (3, "2025-06-01")):
        deliver(grading, rabbit_config, "filing", "InstitutionFiled",
                gs.institution_filed(uscc(n), filed), "on_institution_filed")
    regulator = rpc_as(token("regulator")).grading
    year = regulator.OpenGradingYear({"year": 2025, "system_id": "default",
                                      "self_assessment_working_days": 10,
                                      "request_id": "open-2025"})["year"]
    assert year["self_assessment_due"]["date"] == "2026-01-19"
    inst1 = rpc_as(token("institution", 1)).grading
    inst1.SubmitSelfAssessment({"year": 2025, "values": gs.full_marks(), "final": True,
                                "request_id": "sa-1"})
    invalidated = gs.certificates_invalidated(uscc(1), "2025-05-01")
    deliver(grading, rabbit_config, "certificates", "CertificatesInvalidated", invalidated,
            "on_certificates_invalidated")
    terminated = gs.filing_terminated(uscc(2), "2025-09-01")
    deliver(grading, rabbit_config, "filing", "FilingTerminated", terminated,
            "on_filing_terminated")

    clock.set(2026, 1, 20)
    with entrypoint_waiter(log, "published"):
        answer = regulator.PublishGrades({"year": 2025, "request_id": "publish-2025"})
    assert answer["published"] == 3

    one = regulator.GetGrade({"institution_id": uscc(1), "year": 2025})["grade"]
    assert one["grade"] == "GRADE_A" and one["score_centipoints"] == 9800
    line = next(i for i in one["indicators"] if i["indicator_id"] == "1.3.1.1")
    assert line["source"] == "VALUE_SOURCE_PLATFORM" and line["lost_centi"] == 200
    assert line["source_event_ids"] == [invalidated["meta"]["event_id"]]
    assert one["top_reasons"][0]["indicator_id"] == "1.3.1.1"

    two = regulator.GetGrade({"institution_id": uscc(2), "year": 2025})["grade"]
    assert two["grade"] == "GRADE_D"
    assert two["history"][0]["offences"] == ["D1"]
    assert "filing terminated" in two["reason"]
    three = regulator.GetGrade({"institution_id": uscc(3), "year": 2025})["grade"]
    assert three["grade"] == "GRADE_UNGRADED" and "2025-06-01" in three["reason"]

    wait_for(lambda: len([e for e in GradingEvents.seen if e[0] == "GradePublished"]) >= 3)
    published = {b["institution_id"]: b for kind, b in GradingEvents.seen
                 if kind == "GradePublished"}
    assert published[uscc(2)]["grade"] == "GRADE_D"
    assert published[uscc(1)]["system_hash"] == year["system_hash"]
    # The direct-D termination put the institution on the black list, from the publication.
    black = rpc_as(None).grading.ListBlackList({})["entries"]
    assert [(b["institution_id"], b["basis"]) for b in black] == [(uscc(2), "001 ch.6 art.4")]


def test_a_sanction_after_publication_revises_the_grade_and_a_reversal_restores_it(
        grading, log, rpc_as, rabbit_config, clock):
    deliver(grading, rabbit_config, "filing", "InstitutionFiled",
            gs.institution_filed(uscc(1), "2024-03-01"), "on_institution_filed")
    regulator = rpc_as(token("regulator")).grading
    regulator.OpenGradingYear({"year": 2025, "system_id": "default",
                               "self_assessment_working_days": 5})
    rpc_as(token("institution", 1)).grading.SubmitSelfAssessment(
        {"year": 2025, "values": gs.full_marks(), "final": True, "request_id": "sa"})
    clock.set(2026, 2, 2)
    regulator.PublishGrades({"year": 2025, "request_id": "p"})
    decided = gs.sanction_decided(uscc(1), "DEC-9", "2025-12-20",
                                  tier="SANCTION_TIER_TERMINATION", basis="001 ch.6 art.4(5)",
                                  integrity_record=True, black_list=True, publish=True)
    with entrypoint_waiter(log, "revised"):
        deliver(grading, rabbit_config, "inspection", "SanctionDecided", decided,
                "on_sanction_decided")
    grade = regulator.GetGrade({"institution_id": uscc(1), "year": 2025})["grade"]
    assert grade["grade"] == "GRADE_D" and grade["revision"] == 2
    assert [h["grade"] for h in grade["history"]] == ["GRADE_A", "GRADE_D"]
    assert decided["meta"]["event_id"] in grade["history"][1]["reason"]
    public = rpc_as(None).grading.GetIntegrityFile({"institution_id": uscc(1)})
    kinds = [e["kind"] for e in public["entries"]]
    assert "INTEGRITY_ENTRY_KIND_SANCTION" in kinds and "INTEGRITY_ENTRY_KIND_BLACK_LISTED" in kinds
    assert public["public_view"] is True

    with entrypoint_waiter(log, "revised"):
        deliver(grading, rabbit_config, "inspection", "DecisionReversed",
                gs.decision_reversed(uscc(1), "DEC-9", "2026-02-10"), "on_decision_reversed")
    grade = regulator.GetGrade({"institution_id": uscc(1), "year": 2025})["grade"]
    assert [h["grade"] for h in grade["history"]] == ["GRADE_A", "GRADE_D", "GRADE_A"]
    assert rpc_as(None).grading.ListBlackList({}).get("entries", []) == []
    # the file keeps everything; the public part no longer shows the removed listing
    full = regulator.GetIntegrityFile({"institution_id": uscc(1)})["entries"]
    assert {"INTEGRITY_ENTRY_KIND_BLACK_LISTED", "INTEGRITY_ENTRY_KIND_LIST_REMOVAL",
            "INTEGRITY_ENTRY_KIND_REVERSAL"} <= {e["kind"] for e in full}


def test_redelivered_events_change_nothing_and_rewards_are_given_once(grading, rpc_as,
                                                                     rabbit_config):
    deliver(grading, rabbit_config, "filing", "InstitutionFiled",
            gs.institution_filed(uscc(1), "2024-03-01"), "on_institution_filed")
    issued = gs.certificates_issued(uscc(1), "2025-10-01", 4001)
    for _ in range(2):
        deliver(grading, rabbit_config, "certificates", "CertificatesIssued", issued,
                "on_certificates_issued")
    deliver(grading, rabbit_config, "certificates", "CertificatesIssued",
            gs.certificates_issued(uscc(1), "2025-11-01", 6000), "on_certificates_issued")
    entries = rpc_as(token("regulator")).grading.GetIntegrityFile(
        {"institution_id": uscc(1)})["entries"]
    rewards = [e for e in entries if e["kind"] == "INTEGRITY_ENTRY_KIND_REWARD"]
    assert [e["entry_id"] for e in rewards] == ["reward:occupation:2025:4-10-01-02",
                                               "reward:certificates:2025"]
    assert rewards[0]["source_event_id"] == issued["meta"]["event_id"]


def test_an_assessor_reviews_only_its_institutions(grading, rpc_as, rabbit_config):
    for n in (1, 2):
        deliver(grading, rabbit_config, "filing", "InstitutionFiled",
                gs.institution_filed(uscc(n), "2024-03-01"), "on_institution_filed")
    rpc_as(token("regulator")).grading.OpenGradingYear({
        "year": 2025, "system_id": "default", "self_assessment_working_days": 5,
        "reviewers": [{"assessor_id": "assessor-1", "institution_ids": [uscc(1)]}]})
    for n in (1, 2):
        rpc_as(token("institution", n)).grading.SubmitSelfAssessment(
            {"year": 2025, "values": gs.full_marks(), "final": True, "request_id": f"s{n}"})
    assessor = rpc_as(token("assessor", party_id="assessor-1")).grading
    review = {"year": 2025, "institution_id": uscc(1), "request_id": "r1",
              "adjustments": [{"indicator_id": "2.1.1.1", "points_centi": 100,
                               "reason": "the lease covers half the premises"}]}
    answer = assessor.ReviewAssessment(review)["assessment"]
    assert answer["state"] == "ASSESSMENT_STATE_REVIEWED"
    assert answer["reviews"][0]["assessor_id"] == "assessor-1"
    with pytest.raises(RemoteError) as refused:
        assessor.ReviewAssessment({**review, "institution_id": uscc(2), "request_id": "r2"})
    assert refused.value.exc_type == "PermissionDenied"
