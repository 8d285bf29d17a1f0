"""Builders for grading's tests (unit, integration, e2e): self-assessments of the default
catalogue, evidence, and other services' events as their producers' messages carry them."""
from __future__ import annotations

import hashlib
import uuid

from services.grading import domain


def evidence(name: str = "proof") -> dict:
    return {"uri": f"s3://vocreg-docs/{name}.pdf",
            "sha256": hashlib.sha256(name.encode()).hexdigest(), "description": name}


def full_marks(system=None, lose: dict | None = None) -> list[dict]:
    """A final self-assessment of every leaf at full points (with evidence where a leaf needs
    it); `lose`: leaf id -> points lost (centipoints) on POINTS and RATE leaves."""
    system = system or domain.default_system()
    values = []
    for leaf in system.leaves:
        if leaf.kind == domain.POINTS:
            item = {"points_centi": leaf.max_centi - (lose or {}).get(leaf.id, 0)}
        elif leaf.kind == domain.RATE:
            kept = leaf.max_centi - (lose or {}).get(leaf.id, 0)
            item = {"rate_basis_points": kept * 10000 // leaf.max_centi}
        else:
            item = {}
        item["indicator_id"] = leaf.id
        if leaf.evidence:
            item["evidence"] = [evidence(leaf.id)]
        values.append(item)
    return values


def meta(**extra) -> dict:
    return {"event_id": uuid.uuid4().hex, "occurred_at": "2025-06-01T02:00:00Z",
            "source": "test", **extra}


def institution_filed(institution_id: str, filed_on: str, district: str = "410502",
                      sequence: int = 1) -> dict:
    return {"meta": meta(sequence=sequence, aggregate_id=institution_id),
            "application_id": f"app-{institution_id}", "institution_id": institution_id,
            "district_code": district,
            "receipt": {"institution_name": f"机构{institution_id[-4:]}", "filed_on": filed_on,
                        "filing_code": "S000041000001"}}


def filing_terminated(institution_id: str, on: str, decision_ref: str = "T-1",
                      sequence: int = 2) -> dict:
    return {"meta": meta(sequence=sequence, aggregate_id=institution_id),
            "institution_id": institution_id, "reason": "terminated", "effective_on": on,
            "decision_ref": decision_ref}


def certificates_invalidated(institution_id: str, on: str, n: int = 3,
                             reason: str = "INVALIDATION_REASON_EXAM_MISCONDUCT") -> dict:
    return {"meta": meta(), "operation_id": uuid.uuid4().hex, "reason": reason,
            "decision_ref": "INV-1", "effective_on": on, "total": n,
            "counts": [{"institution_id": institution_id, "occupation_code": "4-10-01-02",
                        "skill_level": 4, "count": n}]}


def certificates_issued(institution_id: str, on: str, n: int, late: int = 0,
                        occupation: str = "4-10-01-02") -> dict:
    return {"meta": meta(), "batch_id": uuid.uuid4().hex, "institution_id": institution_id,
            "exam_session_id": "s-1", "assessment_date": on, "issued_on": on, "total": n,
            "counts": [{"occupation_code": occupation, "skill_level": 4, "count": n,
                        "late_reported_count": late}]}


def sanction_decided(institution_id: str, decision_id: str, on: str,
                     tier: str = "SANCTION_TIER_WARNING", basis: str = "001 ch.6 art.3(5)",
                     **flags) -> dict:
    return {"meta": meta(), "decision_id": decision_id, "case_id": f"case-{decision_id}",
            "subject_kind": "SUBJECT_KIND_EVALUATION_ORGANISATION",
            "subject_id": institution_id, "institution_id": institution_id, "tier": tier,
            "basis": basis, "summary": f"decision {decision_id}", "decided_on": on, **flags}


def decision_reversed(institution_id: str, decision_id: str, on: str) -> dict:
    return {"meta": meta(), "decision_id": decision_id, "case_id": f"case-{decision_id}",
            "institution_id": institution_id, "review_id": "R-1", "reason": "wrong facts",
            "reversed_on": on}
