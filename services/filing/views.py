"""Documents as the proto messages' dicts (the JSON mapping with proto field names)."""
from __future__ import annotations

from datetime import UTC, date, datetime

from services.common.vocabulary import drop_empty
from services.filing import domain


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # mongomock hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def deadline(date_iso: str | None, provisional: bool) -> dict | None:
    return {"date": date_iso, "provisional": bool(provisional)} if date_iso else None


def application_view(app) -> dict:
    return drop_empty({
        "application_id": app.application_id,
        "institution": drop_empty(dict(app.institution)),
        "scope": list(app.scope),
        "materials": list(app.materials),
        "state": app.state,
        "submitted_at": timestamp(app.submitted_at),
        "received_on": app.received_on,
        "acceptance_due": deadline(app.acceptance_due, app.acceptance_due_provisional),
        "supplement": drop_empty(dict(app.supplement or {})),
        "accepted_on": app.accepted_on,
        "accepted_by": app.accepted_by,
        "decision_due": deadline(app.decision_due, app.decision_due_provisional),
        "reasons": list(app.reasons or []),
        "filing_code": app.filing_code,
        "evaluation": drop_empty(dict(app.evaluation or {})),
        "missing_materials": domain.missing_materials(app.materials),
        "decided_on": app.decided_on,
        "kind": app.kind or domain.NEW,
        "conditions": dict(app.conditions or {}) or None,
        "unmet_conditions": list(app.unmet_conditions or []),
        "filing_code_before": app.filing_code_before,
    })


def application_answer(app) -> dict:
    return {"application": application_view(app)}


def receipt_view(inst) -> dict:
    return drop_empty({
        "institution_name": inst.name,
        "filing_code": inst.filing_code,
        "address": inst.address,
        "scope": list(inst.scope),
        "filed_on": inst.filed_on,
        "valid_until": inst.valid_until,
    })


def activity_view(activity: list[dict], today: date) -> list[dict]:
    """Certificates counted per occupation: the last evaluation and the 12-month count."""
    return [drop_empty({"occupation_code": a["occupation_code"],
                        "last_evaluation_on": a["last"],
                        "count_12_months": domain.count_in_window(a["days"], today),
                        "earlier_months": [{"month": m, "count": n} for m, n in
                                           sorted((a.get("months") or {}).items())]})
            for a in activity]


def institution_view(inst, activity: list[dict] | None = None) -> dict:
    return drop_empty({
        "institution_id": inst.institution_id,
        "name": inst.name,
        "legal_representative": inst.legal_representative,
        "address": inst.address,
        "district_code": inst.district_code,
        "filing_code": inst.filing_code,
        "scope": list(inst.scope),
        "status": inst.status,
        "filed_on": inst.filed_on,
        "valid_until": inst.valid_until,
        "application_id": inst.application_id,
        "history": [drop_empty(dict(h)) for h in inst.history],
        "status_reason": inst.status_reason,
        "status_decision_ref": inst.status_decision_ref,
        "violations": [drop_empty(dict(v)) for v in inst.violations or []],
        "proposals": [drop_empty(dict(p)) for p in inst.proposals or []],
        "activity": list(activity or []),
        "contact_phone": inst.contact_phone,
        "quota_excess": [drop_empty(dict(e)) for e in inst.quota_excess or []],
        "inspection_decisions": [drop_empty(dict(d)) for d in inst.inspection_decisions or []],
        "suspensions": [drop_empty(dict(h)) for h in inst.suspensions or []],
    })


def standing_excess_view(inst) -> list[dict]:
    """The excesses that stand (awaiting a decision, or kept with a reason)."""
    return [drop_empty(dict(e)) for e in inst.quota_excess or []
            if e.get("state") in domain.STANDING_EXCESS]


def register_entry_view(inst) -> dict:
    return drop_empty({"receipt": receipt_view(inst), "status": inst.status,
                       "district_code": inst.district_code,
                       "quota_excess": standing_excess_view(inst),
                       "institution_id": inst.institution_id})


def open_proposals_view(inst) -> list[dict]:
    """An institution's open proposals, for the regulator's in-tray."""
    return [{"institution_id": inst.institution_id, "institution_name": inst.name,
             "proposal": drop_empty(dict(p))}
            for p in inst.proposals if p.get("state") == domain.PROPOSAL_OPEN]


def open_excess_view(inst) -> list[dict]:
    """An institution's excesses awaiting the regulator's decision, for the in-tray."""
    return [{"institution_id": inst.institution_id, "institution_name": inst.name,
             "filing_code": inst.filing_code, "excess": drop_empty(dict(e))}
            for e in inst.quota_excess or [] if e.get("state") == domain.EXCESS_AWAITING]
