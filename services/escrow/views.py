"""Documents as the proto messages' dicts (the JSON mapping with proto field names). Personal
data (trainee and complainant names, phones) is masked for every caller but the regulator."""
from __future__ import annotations

from datetime import datetime, timezone

from services.common.vocabulary import drop_empty
from services.escrow.domain import ledger as L
from services.escrow.domain import rules

ENUM_KIND = {L.POSTED: "TRANSFER_KIND_POSTED", L.PENDING: "TRANSFER_KIND_PENDING",
             L.POST_PENDING: "TRANSFER_KIND_POST_PENDING",
             L.VOID_PENDING: "TRANSFER_KIND_VOID_PENDING",
             L.EXPIRE_PENDING: "TRANSFER_KIND_EXPIRE_PENDING"}
KIND_OF_ENUM = {v: k for k, v in ENUM_KIND.items()}
KIND_OF_ENUM.update({i + 1: k for i, k in enumerate(
    (L.POSTED, L.PENDING, L.POST_PENDING, L.VOID_PENDING, L.EXPIRE_PENDING))})


def timestamp(value: datetime | None) -> str:
    """RFC 3339 in UTC with milliseconds (what the database keeps)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sees_personal_data(caller) -> bool:
    return caller is not None and caller.role == "regulator"


def scheme_view(s) -> dict:
    return drop_empty({
        "scheme_id": s.scheme_id, "institution_id": s.institution_id,
        "scheme_code": s.scheme_code, "name": s.name, "courses": list(s.courses or []),
        "price_per_hour_fen": s.price_per_hour_fen, "class_hours": s.class_hours,
        "valid_from": s.valid_from, "valid_until": s.valid_until,
        "refund_terms": drop_empty(dict(s.refund_terms or {})),
        "custodian_id": s.custodian_id, "filed_on": s.filed_on,
        "max_hours_per_charge": s.max_hours_per_charge,
        "max_months_per_charge": s.max_months_per_charge})


def charge_view(charge: dict) -> dict:
    return drop_empty({k: charge.get(k) for k in (
        "bank_reference", "class_hours", "amount_fen", "paid_on", "classes_until",
        "transfer_id")} | {"lesson_fee_ids": list(charge.get("lesson_fee_ids") or [])})


def contract_view(c, money: dict, caller) -> dict:
    name = c.trainee_name if sees_personal_data(caller) else rules.mask_name(c.trainee_name)
    return drop_empty({
        "institution_id": c.institution_id, "contract_id": c.contract_id,
        "scheme_id": c.scheme_id, "trainee_id": c.trainee_id, "trainee_name": name,
        "signed_on": c.signed_on, "state": c.state,
        "price_per_hour_fen": c.price_per_hour_fen, "hours_bought": c.hours_bought,
        "lessons_taken": c.lessons_taken, **money,
        "charges": [charge_view(ch) for ch in c.charges or []],
        "first_lesson_on": c.first_lesson_on, "closed_on": c.closed_on,
        "close_reason": c.close_reason})


def complaint_view(c, caller) -> dict:
    personal = sees_personal_data(caller)
    return drop_empty({
        "complaint_id": c.complaint_id, "institution_id": c.institution_id,
        "contract_id": c.contract_id, "district_code": c.district_code,
        "complainant_name": c.complainant_name if personal else
        rules.mask_name(c.complainant_name),
        "complainant_phone": c.complainant_phone if personal else
        rules.mask_phone(c.complainant_phone),
        "reason": c.reason, "filed_on": c.filed_on, "on_behalf": c.on_behalf,
        "state": c.state, "quote_at_filing": dict(c.quote_at_filing or {}),
        "refunded_fen": c.refunded_fen, "decision_reasons": list(c.decision_reasons or []),
        "decision_ref": c.decision_ref, "resolved_on": c.resolved_on,
        "transfer_id": c.transfer_id})


def leg_view(leg: dict) -> dict:
    return drop_empty({"account_id": L.local_id(leg["a"]), "debit_fen": leg.get("d", 0),
                       "credit_fen": leg.get("c", 0),
                       "debit_pending_fen": leg.get("dp", 0),
                       "credit_pending_fen": leg.get("cp", 0)})


def transfer_view(doc: dict, pending_state: str = "") -> dict:
    return drop_empty({
        "id": doc["transfer_id"], "institution_id": doc["ledger"],
        "kind": ENUM_KIND[doc["kind"]], "legs": [leg_view(leg) for leg in doc["legs"]],
        "amount_fen": doc.get("amount", 0), "pending_id": doc.get("pending_id"),
        "timeout_at": timestamp(doc.get("timeout_at")), "code": doc.get("code"),
        "reference": doc.get("reference"), "effective_at": timestamp(doc.get("effective_at")),
        "recorded_at": timestamp(doc.get("recorded_at")), "sequence": doc["seq"],
        "contract_id": doc.get("contract_id"), "complaint_id": doc.get("complaint_id"),
        "pending_state": f"PENDING_STATE_{pending_state}" if pending_state else ""})


def transfer_result_view(doc: dict) -> dict:
    return {"id": doc["transfer_id"], "sequence": doc["seq"],
            "recorded_at": timestamp(doc["recorded_at"])}


def account_view(doc: dict, balance: L.Balance, seq: int) -> dict:
    kind = doc["kind"]
    return drop_empty({
        "id": L.local_id(doc["_id"]), "institution_id": doc["ledger"],
        "kind": f"ACCOUNT_KIND_{kind}",
        "debits_must_not_exceed_credits": kind in L.DEBITS_MUST_NOT_EXCEED_CREDITS,
        "credits_must_not_exceed_debits": kind in L.CREDITS_MUST_NOT_EXCEED_DEBITS,
        "debits_pending_fen": balance.dp, "debits_posted_fen": balance.d,
        "credits_pending_fen": balance.cp, "credits_posted_fen": balance.c,
        "balance_fen": L.balance_on_normal_side(kind, balance), "sequence": seq})
