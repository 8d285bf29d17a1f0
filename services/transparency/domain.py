"""What enters the decision log, and how an entry is written: pure, no I/O.

A published regulatory decision is appended once, when its producer's event arrives (the
producer's events.proto is the contract): the entry keeps what the public may read of it
(never a person's name or ID number: the log cannot forget) and the subjects it is found
under. Rules: "一公开": results are published (the register of filed institutions,
certificates, grades, sanctions).
"""
from __future__ import annotations

import json
from collections.abc import Callable

ENTRY_VERSION = 1


def _receipt(receipt: dict) -> dict:
    return {k: receipt.get(k) for k in ("institution_name", "filing_code", "filed_on",
                                         "valid_until") if receipt.get(k)}


def _filed(e: dict):
    return [f"institution:{e['institution_id']}"], {
        "institution_id": e.get("institution_id"), "district_code": e.get("district_code"),
        "receipt": _receipt(e.get("receipt") or {})}


def _renewed(e: dict):
    return [f"institution:{e['institution_id']}"], {
        "institution_id": e.get("institution_id"), "valid_until": e.get("valid_until"),
        "receipt": _receipt(e.get("receipt") or {})}


def _terminated(e: dict):
    return [f"institution:{e['institution_id']}"], {
        k: e.get(k) for k in ("institution_id", "filing_code", "reason", "decision_ref",
                              "effective_on")}


def _certificates(e: dict):
    counts = [{k: c.get(k) for k in ("institution_id", "occupation_code", "skill_level",
                                     "count")} for c in e.get("counts") or ()]
    subjects = [f"certificate-operation:{e['operation_id']}"]
    subjects += sorted({f"institution:{c['institution_id']}" for c in counts
                        if c.get("institution_id")})
    decision = {k: e.get(k) for k in ("operation_id", "reason", "decision_ref", "effective_on",
                                      "recover_subsidies", "total")}
    decision["counts"] = counts
    return subjects, decision


def _sanction(e: dict):
    if not e.get("publish"):
        return None  # only published sanctions (一公开) enter the public log
    certificates = (e.get("certificates") or {}).get("certificate_numbers") or []
    subjects = [f"decision:{e['decision_id']}"]
    if e.get("institution_id"):
        subjects.append(f"institution:{e['institution_id']}")
    subjects += [f"certificate:{n}" for n in certificates]
    decision = {k: e.get(k) for k in ("decision_id", "institution_id", "subject_kind", "tier",
                                      "basis", "summary", "decided_on", "rectification_due",
                                      "suspend_filing", "terminate_filing", "black_list")}
    decision["certificate_numbers"] = list(certificates)
    return subjects, decision


def _reversed(e: dict):
    return [f"decision:{e['decision_id']}", f"institution:{e['institution_id']}"], {
        k: e.get(k) for k in ("decision_id", "institution_id", "reason", "reversed_on")}


def _grade(e: dict):
    return [f"institution:{e['institution_id']}", f"grade:{e['institution_id']}:{e.get('year')}"], {
        k: e.get(k) for k in ("institution_id", "year", "grade", "previous_grade",
                              "score_centipoints", "revision", "reason", "system_hash")}


# (producer, event type) -> (event as proto JSON dict) -> (subjects, public fields) or None.
DECISIONS: dict[tuple[str, str], Callable] = {
    ("filing", "InstitutionFiled"): _filed,
    ("filing", "FilingRenewed"): _renewed,
    ("filing", "FilingTerminated"): _terminated,
    ("certificates", "CertificatesInvalidated"): _certificates,
    ("certificates", "CertificatesWithdrawn"): _certificates,
    ("inspection", "SanctionDecided"): _sanction,
    ("inspection", "DecisionReversed"): _reversed,
    ("grading", "GradePublished"): _grade,
    ("grading", "GradeRevised"): _grade,
}


def _clean(value):
    """Without empty values (proto3 JSON leaves defaults out; the entry does the same)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v not in (None, "", [], {}, False)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def decision_entry(producer: str, event_type: str, event: dict) -> dict | None:
    """The log entry of an event (proto JSON with proto field names), or None when the event
    is not a published decision."""
    build = DECISIONS.get((producer, event_type))
    if build is None:
        return None
    built = build(event)
    if built is None:
        return None
    subjects, decision = built
    meta = event.get("meta") or {}
    return {"v": ENTRY_VERSION, "kind": f"{producer}.{event_type}",
            "event_id": meta.get("event_id"), "occurred_at": meta.get("occurred_at"),
            "subjects": subjects, "decision": _clean(decision)}


def canonical(entry: dict) -> str:
    """The leaf's text: JSON with sorted keys and no spaces, UTF-8 as is (its bytes are
    hashed, so one entry has one text)."""
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
