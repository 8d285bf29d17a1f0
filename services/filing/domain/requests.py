"""What each request must say, checked before anything is loaded or changed. Every problem of
a request is reported at once: InvalidArgument with "field.path: problem" strings."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.common.errors import InvalidArgument
from services.common.vocabulary import (
    OCCUPATION_CODE,
    OCCUPATION_CODE_HINT,
    check_skill_level,
    normalize_id,
    parse_date,
)
from services.filing.domain.intake import (
    Submission,
    check_materials,
    check_request_id,
    check_scope,
    parse_submission,
)
from services.filing.domain.lifecycle import (
    DETAIL_FIELDS,
    check_conditions,
    decision_text,
    scope_diff,
)
from services.filing.domain.quotas import check_allocation

__all__ = [
    "CHANGE_DETAILS", "CHANGE_SCOPE", "APPROVE", "DISMISS", "parse_application",
    "parse_conditions", "parse_supplement_notice", "parse_supplement", "parse_change_kind",
    "parse_scope_change", "parse_renewal", "EvaluationQuestion", "parse_evaluation_question",
    "parse_status_decision", "ProposalDecision", "parse_proposal_decision",
]

CHANGE_DETAILS = "CHANGE_KIND_DETAILS"
CHANGE_SCOPE = "CHANGE_KIND_SCOPE"
APPROVE = "PROPOSAL_OUTCOME_APPROVE"
DISMISS = "PROPOSAL_OUTCOME_DISMISS"


def _raise_if(errors: list[str]) -> None:
    if errors:
        raise InvalidArgument(errors)


def _required(request: dict, key: str, errors: list) -> str:
    value = request.get(key)
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        errors.append(f"{key}: required")
    return value


# --- applications -------------------------------------------------------------------------
def parse_application(request: dict, areas: dict) -> tuple[Submission, dict | None]:
    """The submission and the declared conditions, with every violation of both."""
    errors: list[str] = []
    submission = None
    try:
        submission = parse_submission(request, areas)
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    codes = [s.get("occupation_code", "") for s in (request.get("scope") or [])]
    conditions = check_conditions(request.get("conditions"), codes, errors)
    if submission is not None:
        check_allocation(submission.scope, submission.institution["district_code"], areas,
                         errors)
    _raise_if(errors)
    return submission, conditions


def parse_conditions(conditions: dict | None, scope: list[dict]) -> dict | None:
    errors: list[str] = []
    cleaned = check_conditions(conditions, [s["occupation_code"] for s in scope], errors)
    _raise_if(errors)
    return cleaned


def parse_supplement_notice(request: dict) -> tuple[list[str], list[str]]:
    """(materials asked for, other items): what the notice lists, in the regulator's order."""
    requested = list(dict.fromkeys(request.get("missing_materials") or []))
    other_items = [i.strip() for i in request.get("other_items") or [] if i.strip()]
    return requested, other_items


def parse_supplement(request: dict, notice: dict) -> tuple[list[dict], list[str]]:
    """(materials supplied, items of the notice answered)."""
    errors: list[str] = []
    supplied = check_materials(request.get("materials") or [], errors)
    notice_items = notice.get("other_items", [])
    answered = [i.strip() for i in request.get("answered_items") or [] if i.strip()]
    unknown = [i for i in answered if i not in notice_items]
    if unknown:
        errors.append(f"answered_items: {unknown} are not items of the notice")
    if not supplied and not answered:
        errors.append("materials/answered_items: a supplement must supply something")
    _raise_if(errors)
    return supplied, answered


# --- changes and renewal (ch.2 art.8-9) ---------------------------------------------------
def parse_change_kind(request: dict, errors: list) -> tuple[str, str]:
    """(kind, request_id). An unknown kind ends the check: the rest depends on it."""
    request_id = check_request_id(request.get("request_id"), errors)
    kind = request.get("kind") or "CHANGE_KIND_UNSPECIFIED"
    if kind not in (CHANGE_DETAILS, CHANGE_SCOPE):
        errors.append(f"kind: must be {CHANGE_DETAILS} or {CHANGE_SCOPE}")
        raise InvalidArgument(errors)
    return kind, request_id


def parse_scope_change(request: dict, filed_scope: list[dict], errors: list,
                       district_code: str = "", areas: dict | None = None,
                       ) -> tuple[list[dict], list[dict], dict | None]:
    """(scope, materials, conditions) of a scope change, evaluated like a new application."""
    for key in (*DETAIL_FIELDS, "changed_on"):
        if request.get(key):
            errors.append(f"{key}: only for {CHANGE_DETAILS}")
    scope = check_scope(request.get("scope") or [], errors)
    check_allocation(scope, district_code, areas or {}, errors)
    materials = check_materials(request.get("materials") or [], errors)
    conditions = check_conditions(request.get("conditions"),
                                  [s["occupation_code"] for s in scope], errors)
    if not errors:
        added, removed = scope_diff(filed_scope, scope)
        if not added and not removed and scope == list(filed_scope):
            errors.append("scope: the same as the filed scope")
    _raise_if(errors)
    return scope, materials, conditions


def parse_renewal(request: dict) -> tuple[str, str, list[dict]]:
    """(institution_id, request_id, materials)."""
    errors: list[str] = []
    request_id = check_request_id(request.get("request_id"), errors)
    materials = check_materials(request.get("materials") or [], errors)
    institution_id = _required(request, "institution_id", errors)
    _raise_if(errors)
    return institution_id, request_id, materials


# --- questions and decisions ---------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationQuestion:
    institution_id: str
    occupation_code: str
    skill_level: int
    on: date


def parse_evaluation_question(request: dict) -> EvaluationQuestion:
    errors: list[str] = []
    institution_id = normalize_id(request.get("institution_id"))
    if not institution_id:
        errors.append("institution_id: required")
    code = request.get("occupation_code")
    code = code.strip() if isinstance(code, str) else ""
    if not OCCUPATION_CODE.match(code):
        errors.append(f"occupation_code: {OCCUPATION_CODE_HINT}")
    level = check_skill_level(request.get("skill_level"), "skill_level", errors)
    on = parse_date(request.get("on_date"), "on_date", errors)
    _raise_if(errors)
    return EvaluationQuestion(institution_id, code, level, on)


def parse_status_decision(request: dict) -> tuple[str, str, str]:
    """(institution_id, reason, decision_ref) of a suspension, reinstatement or termination."""
    errors: list[str] = []
    institution_id = _required(request, "institution_id", errors)
    reason, ref = decision_text(request, errors)
    _raise_if(errors)
    return institution_id, reason, ref


@dataclass(frozen=True)
class ProposalDecision:
    institution_id: str
    proposal_id: str
    approve: bool
    reason: str
    decision_ref: str


def parse_proposal_decision(request: dict) -> ProposalDecision:
    errors: list[str] = []
    institution_id = _required(request, "institution_id", errors)
    proposal_id = _required(request, "proposal_id", errors)
    outcome = request.get("outcome") or "PROPOSAL_OUTCOME_UNSPECIFIED"
    if outcome not in (APPROVE, DISMISS):
        errors.append(f"outcome: must be {APPROVE} or {DISMISS}")
    reason, ref = decision_text(request, errors)
    _raise_if(errors)
    return ProposalDecision(institution_id, proposal_id, outcome == APPROVE, reason, ref)
