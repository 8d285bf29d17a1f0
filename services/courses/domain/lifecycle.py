"""A course's life (review, delisting, relisting, deletion) and the provider's sanctions.

Sources: seed 004 二(一) (what experts review), 三(一)1-2 (who reviews and supervises),
四(一) (interview, rectification, delisting: temporary, which rectification lifts, or
permanent; the written rectification notice, 附件1).
"""
from __future__ import annotations

from datetime import date

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.vocabulary import CLIENT_ID, parse_date

SUBMITTED = "COURSE_STATE_SUBMITTED"
LISTED = "COURSE_STATE_LISTED"
REJECTED = "COURSE_STATE_REJECTED"
REJECTED_PERMANENTLY = "COURSE_STATE_REJECTED_PERMANENTLY"
DELISTED_TEMPORARILY = "COURSE_STATE_DELISTED_TEMPORARILY"
DELISTED_PERMANENTLY = "COURSE_STATE_DELISTED_PERMANENTLY"
COURSE_STATES = (SUBMITTED, LISTED, REJECTED, REJECTED_PERMANENTLY, DELISTED_TEMPORARILY,
                 DELISTED_PERMANENTLY)

APPROVED = "REVIEW_OUTCOME_APPROVED"
REJECT = "REVIEW_OUTCOME_REJECTED"
REJECT_PERMANENTLY = "REVIEW_OUTCOME_REJECTED_PERMANENTLY"
STATE_AFTER_REVIEW = {APPROVED: LISTED, REJECT: REJECTED, REJECT_PERMANENTLY: REJECTED_PERMANENTLY}
MAX_REASON_CHARS = 500

INTERVIEW = "PROVIDER_SANCTION_INTERVIEW"
RECTIFICATION = "PROVIDER_SANCTION_RECTIFICATION"
TEMPORARY_DELISTING = "PROVIDER_SANCTION_TEMPORARY_DELISTING"
PERMANENT_DELISTING = "PROVIDER_SANCTION_PERMANENT_DELISTING"
SANCTIONS = (INTERVIEW, RECTIFICATION, TEMPORARY_DELISTING, PERMANENT_DELISTING)
# Sanctions that wait for the provider's rectification (四(一)2-3: "临时下架的课程经整改后可继续上架").
RECTIFIED_SANCTIONS = (RECTIFICATION, TEMPORARY_DELISTING)
DELISTINGS = (TEMPORARY_DELISTING, PERMANENT_DELISTING)

SANCTION_DONE = "SANCTION_STATE_DONE"
SANCTION_RECTIFYING = "SANCTION_STATE_RECTIFYING"
SANCTION_RECTIFIED = "SANCTION_STATE_RECTIFIED"

STANDING_GOOD = "PROVIDER_STANDING_GOOD"
STANDING_RECTIFYING = "PROVIDER_STANDING_RECTIFYING"
STANDING_PERMANENTLY_DELISTED = "PROVIDER_STANDING_PERMANENTLY_DELISTED"

ISSUE_KINDS = ("PROVIDER_ISSUE_KIND_QUESTION_BANK_LEAKED",
               "PROVIDER_ISSUE_KIND_SELLING_THROUGH_AGENTS",
               "PROVIDER_ISSUE_KIND_DISCOUNTS_OR_KICKBACKS", "PROVIDER_ISSUE_KIND_NO_SUPPORT_TEAM",
               "PROVIDER_ISSUE_KIND_SLOW_HANDLING", "PROVIDER_ISSUE_KIND_POOR_HANDLING",
               "PROVIDER_ISSUE_KIND_OTHER")

CONFLICT_OPEN = "CONFLICT_STATE_OPEN"
CONFLICT_CONFIRMED = "CONFLICT_STATE_RIGHTS_CONFIRMED"
CONFLICT_REFUSED = "CONFLICT_STATE_CLAIM_REFUSED"


def reasons_list(values, path: str, errors: list, required: bool) -> list[str]:
    reasons = [v.strip() for v in values or [] if isinstance(v, str) and v.strip()]
    if len(reasons) != len(values or []):
        errors.append(f"{path}: an entry is empty")
    if required and not reasons:
        errors.append(f"{path}: at least one reason is required")
    return reasons


def check_id(value, path: str, errors: list) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        errors.append(f"{path}: required")
    elif not CLIENT_ID.match(text):
        errors.append(f"{path}: not an id this service issues")
    return text


def parse_review(request: dict) -> tuple[str, str, list[str]]:
    errors: list[str] = []
    course_id = check_id(request.get("course_id"), "course_id", errors)
    outcome = request.get("outcome")
    if outcome not in STATE_AFTER_REVIEW:
        errors.append(f"outcome: required, one of {', '.join(STATE_AFTER_REVIEW)}")
    reasons = reasons_list(request.get("reasons"), "reasons", errors,
                           required=outcome in (REJECT, REJECT_PERMANENTLY))
    if errors:
        raise InvalidArgument(errors)
    return course_id, outcome, reasons


def review_refusal(state: str, outcome: str, blocking: int) -> FailedPrecondition | None:
    """Only a SUBMITTED course is reviewed; approval waits until no ERROR finding stands."""
    if state != SUBMITTED:
        return FailedPrecondition(f"the course is {state.removeprefix('COURSE_STATE_')}; only "
                                  "a SUBMITTED course is reviewed", reason="COURSE_NOT_SUBMITTED")
    if outcome == APPROVED and blocking:
        return FailedPrecondition(f"{blocking} finding(s) of severity ERROR stand: reject, or "
                                  "settle the copyright conflict first",
                                  reason="COURSE_HAS_ERRORS")
    return None


def deletion_refusal(state: str, by_provider: bool) -> FailedPrecondition | None:
    """A listed course must be delisted first; a permanently rejected one is kept as evidence
    against its repackaging (the regulator may still delete it)."""
    if state == LISTED:
        return FailedPrecondition("a listed course is not deleted; it is delisted",
                                  reason="COURSE_LISTED")
    if by_provider and state in (REJECTED_PERMANENTLY, DELISTED_PERMANENTLY):
        return FailedPrecondition("a permanently rejected or delisted course is kept as "
                                  "evidence; only the regulator deletes it",
                                  reason="COURSE_KEPT_AS_EVIDENCE")
    return None


# --- providers ------------------------------------------------------------------------------
def parse_notice(data: dict, kind: str, today: date, errors: list) -> dict:
    """The written rectification notice (附件1) every sanction is delivered with: its number
    and findings; for a rectification or a temporary delisting also what to rectify and by
    when."""
    data = data or {}
    number = (data.get("notice_number") or "").strip()
    if not number:
        errors.append("notice.notice_number: required")
    notice = {"notice_number": number,
              "findings": reasons_list(data.get("findings"), "notice.findings", errors, True)}
    needs_rectification = kind in RECTIFIED_SANCTIONS
    requirements = reasons_list(data.get("requirements"), "notice.requirements", errors,
                                needs_rectification)
    due = parse_date(data.get("due_on"), "notice.due_on", errors, required=needs_rectification)
    if due is not None and due < today:
        errors.append(f"notice.due_on: {due} is in the past")
    notice["requirements"] = requirements
    if due is not None:
        notice["due_on"] = due.isoformat()
    return notice


def provider_standing(sanctions: list[dict]) -> str:
    if any(s["kind"] == PERMANENT_DELISTING for s in sanctions):
        return STANDING_PERMANENTLY_DELISTED
    if any(s["state"] == SANCTION_RECTIFYING for s in sanctions):
        return STANDING_RECTIFYING
    return STANDING_GOOD


def delistable(state: str, kind: str) -> bool:
    """Which courses a delisting takes off: listed ones; a permanent delisting also those
    only temporarily off."""
    if kind == TEMPORARY_DELISTING:
        return state == LISTED
    return state in (LISTED, DELISTED_TEMPORARILY, SUBMITTED)
