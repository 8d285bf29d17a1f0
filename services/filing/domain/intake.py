"""The application and its clocks (ch.2 art.3-7): what a submission must contain, the
acceptance, supplement and evaluation deadlines, the regulator's first decisions, filing codes.

Sources: seed 001 ch.2 art.2-9, ch.6 art.5-6; seed 002 §5.
Every number a regulator will check is a named constant here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.idempotency import check_request_id
from services.common.identifiers import uscc_problem
from services.common.vocabulary import (
    OCCUPATION_CODE,
    OCCUPATION_CODE_HINT,
    SKILL_LEVELS,
    normalize_id,
    required_text,
)
from services.common.workdays import Deadline, WorkdayCalendar, add_days

__all__ = [
    "ACCEPTANCE_WORKING_DAYS", "SUPPLEMENT_DAYS", "EVALUATION_WORKING_DAYS", "VALIDITY_YEARS",
    "MAX_SUPPLEMENT_NOTICES", "MATERIALS", "PROHIBITED_NAME_WORDS", "ANYANG_AREAS",
    "EVALUATOR_KIND_SOCIAL", "EVALUATOR_CODE_PROVINCIAL", "MAX_SITE_SERIAL", "RECEIVED",
    "SUPPLEMENT_REQUESTED", "ACCEPTED", "NOT_ACCEPTED", "WITHDRAWN", "FILED", "REFUSED",
    "OPEN_STATES", "ACCEPTED_BY_REGULATOR", "ACCEPTED_BY_DEEMED", "ACTIVE", "SUSPENDED",
    "REGISTER_STATUSES", "DECISION_FILE", "DECISION_REFUSE", "check_request_id", "check_phone",
    "prohibited_words", "check_institution", "check_scope", "check_materials", "Submission",
    "parse_submission", "missing_materials", "merge_materials", "reasons_list",
    "acceptance_due", "supplement_due", "decision_due", "validity_end", "overdue",
    "require_state", "short_state", "check_supplement_request", "supplement_complete",
    "check_acceptance", "check_filing_decision", "sweep_action", "filing_code",
]

# --- numbers of the rules -------------------------------------------------------------
ACCEPTANCE_WORKING_DAYS = 5      # art.5: accept, decline or ask for a supplement
SUPPLEMENT_DAYS = 30             # art.5: calendar days to supplement, else deemed withdrawn
EVALUATION_WORKING_DAYS = 15     # art.6: technical evaluation and decision
VALIDITY_YEARS = 3               # art.9
# "All missing items in one notice": a second notice on the same application is refused.
MAX_SUPPLEMENT_NOTICES = 1
# Reading of "deemed accepted": acceptance is dated the last day of the 5-working-day window,
# so the 15 working days of evaluation start from there, not from the day the sweep noticed.

MATERIALS = (
    "MATERIAL_KIND_BASIC_INFORMATION",
    "MATERIAL_KIND_WORK_PLAN",
    "MATERIAL_KIND_PREMISES_AND_EQUIPMENT",
    "MATERIAL_KIND_CREDIT_REPORT",
    "MATERIAL_KIND_EVALUATION_HISTORY",
    "MATERIAL_KIND_AUTHENTICITY_PLEDGE",
)

# Seed 002 §5: words a name may not use without authority.
PROHIBITED_NAME_WORDS = ("中华人民共和国", "中国", "中华", "国家", "全国", "职业资格", "人员资格",
                         "职业技能鉴定", "包过", "保过")

# Anyang (安阳市, Henan): the city's districts and counties with their GB/T 2260 codes.
# The county-level city of Linzhou counts as a county for the per-county quota.
ANYANG_AREAS = {
    "410502": ("文峰区", "district"),
    "410503": ("北关区", "district"),
    "410505": ("殷都区", "district"),
    "410506": ("龙安区", "district"),
    "410522": ("安阳县", "county"),
    "410523": ("汤阴县", "county"),
    "410526": ("滑县", "county"),
    "410527": ("内黄县", "county"),
    "410581": ("林州市", "county"),
}

# Filing codes carry parts 1-4 of the national certificate number (services/certificates/
# domain.py): kind letter, ministry evaluator code (0000 = filed only at the province), province, site serial.
EVALUATOR_KIND_SOCIAL = "S"
EVALUATOR_CODE_PROVINCIAL = "0000"
MAX_SITE_SERIAL = 999_999

# --- states ---------------------------------------------------------------------------
RECEIVED = "APPLICATION_STATE_RECEIVED"
SUPPLEMENT_REQUESTED = "APPLICATION_STATE_SUPPLEMENT_REQUESTED"
ACCEPTED = "APPLICATION_STATE_ACCEPTED"
NOT_ACCEPTED = "APPLICATION_STATE_NOT_ACCEPTED"
WITHDRAWN = "APPLICATION_STATE_WITHDRAWN"
FILED = "APPLICATION_STATE_FILED"
REFUSED = "APPLICATION_STATE_REFUSED"
OPEN_STATES = frozenset({RECEIVED, SUPPLEMENT_REQUESTED, ACCEPTED})

DECISION_FILE = "DECISION_OUTCOME_FILE"
DECISION_REFUSE = "DECISION_OUTCOME_REFUSE"

ACCEPTED_BY_REGULATOR = "ACCEPTED_BY_REGULATOR"
ACCEPTED_BY_DEEMED = "ACCEPTED_BY_DEEMED"

ACTIVE = "INSTITUTION_STATUS_ACTIVE"
SUSPENDED = "INSTITUTION_STATUS_SUSPENDED"
REGISTER_STATUSES = (ACTIVE, SUSPENDED)

_PHONE = re.compile(r"^[0-9+\-() ]{7,20}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --- validation -----------------------------------------------------------------------
def check_phone(value, path: str, errors: list) -> str:
    phone = value.strip() if isinstance(value, str) else ""
    if phone and not _PHONE.match(phone):
        errors.append(f"{path}: not a phone number")
    return phone


def prohibited_words(name: str) -> list[str]:
    return [w for w in PROHIBITED_NAME_WORDS if w in (name or "")]


def check_institution(details: dict, areas: dict, errors: list, path="institution") -> dict:
    if not details:
        errors.append(f"{path}: required")
        return {}
    institution_id = normalize_id(details.get("institution_id"))
    problem = uscc_problem(institution_id) if institution_id else "required"
    if problem:
        errors.append(f"{path}.institution_id: {problem}")
    name = required_text(details, "name", f"{path}.name", errors, 2, 100)
    words = prohibited_words(name)
    if words:
        errors.append(f"{path}.name: uses prohibited words {', '.join(words)} (seed 002 §5)")
    district = (details.get("district_code") or "").strip()
    if not district:
        errors.append(f"{path}.district_code: required")
    elif district not in areas:
        errors.append(f"{path}.district_code: {district} is not a district or county of this city")
    phone = check_phone(details.get("contact_phone"), f"{path}.contact_phone", errors)
    return {
        "institution_id": institution_id,
        "name": name,
        "legal_representative": required_text(details, "legal_representative",
                                              f"{path}.legal_representative", errors, 1, 50),
        "address": required_text(details, "address", f"{path}.address", errors, 5, 200),
        "district_code": district,
        "contact_phone": phone,
    }


def check_scope(scope: list, errors: list, path="scope") -> list[dict]:
    if not scope:
        errors.append(f"{path}: at least one occupation is required")
        return []
    seen, result = set(), []
    for i, item in enumerate(scope):
        where = f"{path}[{i}]"
        code = (item.get("occupation_code") or "").strip()
        if not OCCUPATION_CODE.match(code):
            errors.append(f"{where}.occupation_code: {OCCUPATION_CODE_HINT}")
        elif code in seen:
            errors.append(f"{where}.occupation_code: {code} listed twice")
        seen.add(code)
        name = required_text(item, "occupation_name", f"{where}.occupation_name", errors, 1, 50)
        levels = item.get("skill_levels") or []
        if not levels:
            errors.append(f"{where}.skill_levels: at least one level is required")
        bad = [lv for lv in levels if lv not in SKILL_LEVELS]
        if bad:
            errors.append(f"{where}.skill_levels: {bad} not in 1-5")
        if len(set(levels)) != len(levels):
            errors.append(f"{where}.skill_levels: a level is listed twice")
        entry = {"occupation_code": code, "occupation_name": name,
                 "skill_levels": sorted(set(lv for lv in levels if lv in SKILL_LEVELS))}
        serves = item.get("serves_district_code")
        serves = serves.strip() if isinstance(serves, str) else ""
        if serves:  # city-wide allocation (quotas.check_allocation says where it may serve)
            entry["serves_district_code"] = serves
        result.append(entry)
    return result


def check_materials(materials: list, errors: list, path="materials") -> list[dict]:
    seen, result = set(), []
    for i, item in enumerate(materials or []):
        where = f"{path}[{i}]"
        kind = item.get("kind") or "MATERIAL_KIND_UNSPECIFIED"
        if kind not in MATERIALS:
            errors.append(f"{where}.kind: must be one of the six materials")
        elif kind in seen:
            errors.append(f"{where}.kind: {kind} given twice")
        seen.add(kind)
        uri = (item.get("document_uri") or "").strip()
        if not uri:
            errors.append(f"{where}.document_uri: required")
        elif len(uri) > 1024:
            errors.append(f"{where}.document_uri: longer than 1024 characters")
        digest = (item.get("sha256") or "").strip().lower()
        if not _SHA256.match(digest):
            errors.append(f"{where}.sha256: must be 64 hex characters")
        result.append({"kind": kind, "document_uri": uri, "sha256": digest})
    return result


@dataclass(frozen=True)
class Submission:
    request_id: str
    institution: dict
    scope: list
    materials: list


def parse_submission(request: dict, areas: dict) -> Submission:
    errors: list[str] = []
    request_id = check_request_id(request.get("request_id"), errors)
    institution = check_institution(request.get("institution") or {}, areas, errors)
    scope = check_scope(request.get("scope") or [], errors)
    materials = check_materials(request.get("materials") or [], errors)
    if errors:
        raise InvalidArgument(errors)
    return Submission(request_id, institution, scope, materials)


def missing_materials(materials: list[dict]) -> list[str]:
    present = {m["kind"] for m in materials}
    return [kind for kind in MATERIALS if kind not in present]


def merge_materials(current: list[dict], supplied: list[dict]) -> list[dict]:
    """Supplied materials replace those of the same kind."""
    by_kind = {m["kind"]: m for m in current}
    by_kind.update({m["kind"]: m for m in supplied})
    return [by_kind[k] for k in MATERIALS if k in by_kind]


def reasons_list(reasons, errors: list, path="reasons") -> list[str]:
    cleaned = [r.strip() for r in reasons or [] if isinstance(r, str) and r.strip()]
    if not cleaned:
        errors.append(f"{path}: at least one reason is required")
    if any(len(r) > 500 for r in cleaned):
        errors.append(f"{path}: a reason is longer than 500 characters")
    return cleaned


# --- the clock ------------------------------------------------------------------------
def acceptance_due(received_on: date, calendar: WorkdayCalendar) -> Deadline:
    return calendar.add_working_days(received_on, ACCEPTANCE_WORKING_DAYS)


def supplement_due(requested_on: date) -> Deadline:
    return add_days(requested_on, SUPPLEMENT_DAYS)


def decision_due(accepted_on: date, calendar: WorkdayCalendar) -> Deadline:
    return calendar.add_working_days(accepted_on, EVALUATION_WORKING_DAYS)


def validity_end(filed_on: date) -> date:
    """Last day of validity: the day before the same date VALIDITY_YEARS later (29 Feb -> 28 Feb)."""
    try:
        anniversary = filed_on.replace(year=filed_on.year + VALIDITY_YEARS)
    except ValueError:  # 29 February: the anniversary is 1 March, so validity ends 28 February
        return date(filed_on.year + VALIDITY_YEARS, 2, 28)
    return date.fromordinal(anniversary.toordinal() - 1)


def overdue(due_iso: str | None, today: date) -> bool:
    """A deadline is missed once its day has fully passed."""
    return bool(due_iso) and date.fromisoformat(due_iso) < today


# --- transitions (each raises FailedPrecondition with the reason it cannot happen) ----
def require_state(state: str, allowed, action: str) -> None:
    if state not in allowed:
        raise FailedPrecondition(f"cannot {action}: application is {short_state(state)}")


def short_state(state: str) -> str:
    return state.replace("APPLICATION_STATE_", "").lower().replace("_", " ")


def check_supplement_request(state: str, notices_so_far: int, missing_now: list[str],
                             requested: list[str], other_items: list[str], today: date,
                             acceptance_due_iso: str) -> None:
    require_state(state, {RECEIVED}, "request a supplement")
    if notices_so_far >= MAX_SUPPLEMENT_NOTICES:
        raise FailedPrecondition("a supplement was already requested: all missing items go in one notice")
    if overdue(acceptance_due_iso, today):
        raise FailedPrecondition(
            f"the {ACCEPTANCE_WORKING_DAYS}-working-day acceptance window ended on {acceptance_due_iso}")
    errors = []
    bad = [k for k in requested if k not in MATERIALS]
    if bad:
        errors.append(f"missing_materials: {bad} are not among the six materials")
    left_out = [k for k in missing_now if k not in requested]
    if left_out:
        errors.append("missing_materials: the notice must list every missing material; "
                      f"also missing: {', '.join(left_out)}")
    not_missing = [k for k in requested if k in MATERIALS and k not in missing_now]
    if not_missing:
        errors.append(f"missing_materials: {', '.join(not_missing)} already provided; "
                      "ask for a corrected version under other_items")
    if not requested and not other_items:
        errors.append("missing_materials/other_items: a notice must name at least one item")
    if any(len(item) > 500 for item in other_items):
        errors.append("other_items: an item is longer than 500 characters")
    if errors:
        raise InvalidArgument(errors)


def supplement_complete(notice: dict, materials: list[dict], answered: list[str]) -> bool:
    still_missing = [k for k in notice.get("missing_materials", []) if k in missing_materials(materials)]
    unanswered = [i for i in notice.get("other_items", []) if i not in answered]
    return not still_missing and not unanswered


def check_acceptance(state: str, missing_now: list[str]) -> None:
    require_state(state, {RECEIVED}, "accept")
    if missing_now:
        raise FailedPrecondition(
            f"cannot accept: materials missing ({', '.join(missing_now)}); request a supplement")


def check_filing_decision(outcome: str, evaluation: dict, reasons: list[str]) -> list[str]:
    errors: list[str] = []
    if outcome == DECISION_FILE:
        failed = [step for step in ("materials_check_passed", "expert_review_passed",
                                    "site_visit_passed") if not evaluation.get(step)]
        if failed:
            raise FailedPrecondition(
                "cannot file: the technical evaluation has not passed " + ", ".join(failed))
        return []
    if outcome == DECISION_REFUSE:
        cleaned = reasons_list(reasons, errors)
        if errors:
            raise InvalidArgument(["a refusal is given in writing with reasons: " + e for e in errors])
        return cleaned
    raise InvalidArgument(f"outcome: must be {DECISION_FILE} or {DECISION_REFUSE}")


def sweep_action(state: str, acceptance_due_iso: str | None, supplement_due_iso: str | None,
                 today: date) -> str | None:
    """What the timer must do to an application today: deem it accepted or withdrawn."""
    if state == RECEIVED and overdue(acceptance_due_iso, today):
        return "deem_accepted"
    if state == SUPPLEMENT_REQUESTED and overdue(supplement_due_iso, today):
        return "deem_withdrawn"
    return None


# --- filing code ----------------------------------------------------------------------
def filing_code(province_code: str, site_serial: int,
                kind: str = EVALUATOR_KIND_SOCIAL,
                evaluator_code: str = EVALUATOR_CODE_PROVINCIAL) -> str:
    if kind not in ("S", "Y"):
        raise ValueError("evaluator kind is S or Y")
    if not re.fullmatch(r"\d{4}", evaluator_code):
        raise ValueError("evaluator code is 4 digits")
    if not re.fullmatch(r"\d{2}", province_code):
        raise ValueError("province code is 2 digits")
    if not 1 <= site_serial <= MAX_SITE_SERIAL:
        raise ValueError(f"site serial must be 1-{MAX_SITE_SERIAL}")
    return f"{kind}{evaluator_code}{province_code}{site_serial:06d}"

