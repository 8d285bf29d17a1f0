"""Documents as the proto messages' dicts (the JSON mapping with proto field names)."""
from __future__ import annotations

from services.certificates import domain
from services.common.vocabulary import drop_empty as _drop_empty


def certificate_view(cert) -> dict:
    """The full certificate: only for the regulator, inspectors and the issuing institution."""
    return _drop_empty({
        "certificate_number": cert.certificate_number,
        "institution_id": cert.institution_id,
        "filing_code": cert.filing_code,
        "exam_session_id": cert.exam_session_id,
        "batch_id": cert.batch_id,
        "holder_name": cert.holder_name,
        "holder_id_number": cert.holder_id_number,
        "occupation_code": cert.occupation_code,
        "occupation_name": cert.occupation_name,
        "skill_level": cert.skill_level,
        "assessment_date": cert.assessment_date,
        "issued_on": cert.issued_on,
        "late_reported": cert.late_reported,
        "status": cert.status,
        "invalidation": _drop_empty(dict(cert.invalidation or {})),
        "history": [_drop_empty(dict(h)) for h in cert.history or ()],
    })


RESULT_BY_STATUS = {
    domain.VALID: "VERIFICATION_RESULT_VALID",
    domain.INVALIDATED: "VERIFICATION_RESULT_INVALIDATED",
    domain.WITHDRAWN: "VERIFICATION_RESULT_WITHDRAWN",
}


def verification_view(record) -> dict:
    """The public answer: masked holder, no institution id, batch or session. `record` is the
    stored certificate as a mapping (public.find reads only these fields)."""
    invalidation = record.get("invalidation") or {}
    return _drop_empty({
        "result": RESULT_BY_STATUS[record["status"]],
        "certificate_number": record["certificate_number"],
        "holder_name_masked": domain.mask_name(record.get("holder_name")),
        "holder_id_number_masked": domain.mask_id_number(record.get("holder_id_number")),
        "occupation_code": record.get("occupation_code"),
        "occupation_name": record.get("occupation_name"),
        "skill_level": record.get("skill_level"),
        "issued_on": record.get("issued_on"),
        "issuer_name": record.get("issuer_name"),
        "reason": invalidation.get("reason"),
        "effective_on": invalidation.get("effective_on"),
        "operation_id": invalidation.get("operation_id"),
    })


def not_found_view(number: str) -> dict:
    # The same answer whether the number does not exist or the name does not match it: a
    # scraper walking serials learns nothing without each holder's name.
    return {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": number}


def row_result_view(row, number: str | None, status: str) -> dict:
    return _drop_empty({"index": row.index, "row_ref": row.row_ref, "status": status,
                        "certificate_number": number, "errors": list(row.errors)})
