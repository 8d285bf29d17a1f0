"""What enters the decision log and how an entry reads (services/transparency/domain.py)."""
from __future__ import annotations

import json

from google.protobuf import json_format

from services.common.entrypoints import events_module
from services.transparency import domain

META = {"event_id": "e1", "occurred_at": "2026-06-20T02:00:00Z"}


def test_every_logged_decision_is_a_message_of_its_producers_events_proto():
    for producer, event_type in domain.DECISIONS:
        assert hasattr(events_module(producer), event_type), (producer, event_type)


def test_a_filing_receipt_is_logged_under_its_institution():
    entry = domain.decision_entry("filing", "InstitutionFiled", {
        "meta": META, "institution_id": "X1", "district_code": "410502",
        "receipt": {"institution_name": "甲中心", "filing_code": "S1", "filed_on": "2026-03-02",
                    "valid_until": "2029-03-01", "address": "某路1号"}})
    assert entry == {"v": 1, "kind": "filing.InstitutionFiled", "event_id": "e1",
                     "occurred_at": "2026-06-20T02:00:00Z", "subjects": ["institution:X1"],
                     "decision": {"institution_id": "X1", "district_code": "410502",
                                  "receipt": {"institution_name": "甲中心", "filing_code": "S1",
                                              "filed_on": "2026-03-02",
                                              "valid_until": "2029-03-01"}}}


def test_a_certificate_voiding_is_logged_under_its_operation_and_institutions():
    entry = domain.decision_entry("certificates", "CertificatesInvalidated", {
        "meta": META, "operation_id": "op1", "reason": "INVALIDATION_REASON_FRAUD",
        "decision_ref": "文号", "effective_on": "2026-06-20", "total": 2,
        "counts": [{"institution_id": "X1", "occupation_code": "4-1", "skill_level": 4,
                    "count": 2}]})
    assert entry["subjects"] == ["certificate-operation:op1", "institution:X1"]
    assert entry["decision"]["total"] == 2 and entry["decision"]["decision_ref"] == "文号"


def test_only_published_sanctions_enter_and_named_certificates_are_subjects():
    event = {"meta": META, "decision_id": "d1", "institution_id": "X1", "basis": "ch.6 art.1",
             "summary": "考试违纪", "certificates": {"certificate_numbers": ["S1", "S2"]}}
    assert domain.decision_entry("inspection", "SanctionDecided", event) is None
    entry = domain.decision_entry("inspection", "SanctionDecided", {**event, "publish": True})
    assert entry["subjects"] == ["decision:d1", "institution:X1", "certificate:S1",
                                 "certificate:S2"]


def test_events_that_are_not_decisions_are_not_logged():
    assert domain.decision_entry("filing", "ApplicationSubmitted", {"meta": META}) is None
    assert domain.decision_entry("certificates", "CertificatesIssued", {"meta": META}) is None


def test_a_grade_entry_from_the_producers_own_message():
    module = events_module("grading")
    message = module.GradePublished(institution_id="X1", year=2026, grade=1,
                                    score_centipoints=9150, district_code="410502")
    message.meta.event_id = "g1"
    payload = json_format.MessageToDict(message, preserving_proto_field_name=True)
    entry = domain.decision_entry("grading", "GradePublished", payload)
    assert entry["subjects"] == ["institution:X1", "grade:X1:2026"]
    assert entry["decision"]["grade"] == "GRADE_A"


def test_the_leaf_text_is_canonical():
    entry = {"b": 1, "a": "张", "c": {"z": [1, 2], "y": None}}
    text = domain.canonical(entry)
    assert text == '{"a":"张","b":1,"c":{"y":null,"z":[1,2]}}'
    assert domain.canonical(json.loads(text)) == text
