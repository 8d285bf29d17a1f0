"""Documents as the proto messages' dicts (the JSON mapping with proto field names)."""
from __future__ import annotations

from datetime import UTC, datetime


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # mongomock hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def deadline(date_iso: str | None, provisional: bool) -> dict | None:
    return {"date": date_iso, "provisional": bool(provisional)} if date_iso else None


def _drop_empty(data: dict) -> dict:
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


def application_view(app, missing: list[str]) -> dict:
    return _drop_empty({
        "application_id": app.application_id,
        "institution": _drop_empty(dict(app.institution)),
        "scope": list(app.scope),
        "materials": list(app.materials),
        "state": app.state,
        "submitted_at": timestamp(app.submitted_at),
        "received_on": app.received_on,
        "acceptance_due": deadline(app.acceptance_due, app.acceptance_due_provisional),
        "supplement": _drop_empty(dict(app.supplement or {})),
        "accepted_on": app.accepted_on,
        "accepted_by": app.accepted_by,
        "decision_due": deadline(app.decision_due, app.decision_due_provisional),
        "reasons": list(app.reasons or []),
        "filing_code": app.filing_code,
        "evaluation": _drop_empty(dict(app.evaluation or {})),
        "missing_materials": missing,
        "decided_on": app.decided_on,
        "kind": app.kind or "APPLICATION_KIND_NEW",
        "conditions": dict(app.conditions or {}) or None,
        "unmet_conditions": list(app.unmet_conditions or []),
        "filing_code_before": app.filing_code_before,
    })


def receipt_view(inst) -> dict:
    return _drop_empty({
        "institution_name": inst.name,
        "filing_code": inst.filing_code,
        "address": inst.address,
        "scope": list(inst.scope),
        "filed_on": inst.filed_on,
        "valid_until": inst.valid_until,
    })


def institution_view(inst, activity: list[dict] | None = None) -> dict:
    return _drop_empty({
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
        "history": [_drop_empty(dict(h)) for h in inst.history],
        "status_reason": inst.status_reason,
        "status_decision_ref": inst.status_decision_ref,
        "violations": [_drop_empty(dict(v)) for v in inst.violations or []],
        "proposals": [_drop_empty(dict(p)) for p in inst.proposals or []],
        "activity": [_drop_empty(a) for a in activity or []],
        "contact_phone": inst.contact_phone,
    })


def register_entry_view(inst) -> dict:
    return {"receipt": receipt_view(inst), "status": inst.status,
            "district_code": inst.district_code}
