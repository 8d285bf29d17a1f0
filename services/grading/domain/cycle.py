"""The yearly cycle (seed 000: "由培训机构自评,培委会组织评估小组或委托第三方评估机构复评,综合确定
评估结果 ... 原则上每年开展一次"): which institutions a year grades, what a self-assessment, a
review and an appeal may say, which platform facts count, which offences set D, and the
deadlines. Pure functions; violations as "path: problem" strings, every one at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from services.common.identifiers import uscc_problem
from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT, normalize_id
from services.grading.domain.indicators import (
    DEDUCTION,
    MAX_OCCURRENCES,
    MAX_RATE_BP,
    POINTS,
    RATE,
    IndicatorSystem,
    Leaf,
)
from services.grading.domain.scoring import GRADE_BY_NAME, GRADE_D

__all__ = [
    "FIRST_YEAR", "LAST_YEAR", "MAX_SELF_ASSESSMENT_DAYS", "APPEAL_WORKING_DAYS",
    "check_year", "check_open_year", "check_days", "parse_reviewers", "parse_evidence",
    "parse_values", "parse_adjustments", "parse_findings", "parse_overall",
    "parse_appeal_items", "parse_appeal_decisions", "leaf_value", "value_fields",
    "year_bounds", "in_population", "ungraded_reason", "facts_in_year", "fact_occurrences",
    "offences_found", "Value", "assessor_of", "check_institution_id",
]

FIRST_YEAR, LAST_YEAR = 2000, 2100
MAX_SELF_ASSESSMENT_DAYS = 120
# The project's default where the seeds give no number: an appeal within 15 working days of
# publication.
APPEAL_WORKING_DAYS = 15

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
VALUE_FIELD = {POINTS: "points_centi", DEDUCTION: "occurrences", RATE: "rate_basis_points"}
VALUE_FIELDS = tuple(VALUE_FIELD.values())


def _int(value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return 0


def check_year(value, errors: list, path: str = "year") -> int:
    year = _int(value)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        errors.append(f"{path}: required, {FIRST_YEAR}-{LAST_YEAR}")
    return year


def check_open_year(value, today: date, errors: list) -> int:
    """A year is graded once it has begun (usually in the next, over the whole year)."""
    year = check_year(value, errors)
    if FIRST_YEAR <= year <= LAST_YEAR and year > today.year:
        errors.append(f"year: {year} has not begun (today is {today.isoformat()})")
    return year


def check_days(value, errors: list) -> int:
    days = _int(value)
    if not 1 <= days <= MAX_SELF_ASSESSMENT_DAYS:
        errors.append(f"self_assessment_working_days: must be 1-{MAX_SELF_ASSESSMENT_DAYS}")
    return days


def check_institution_id(value, path: str, errors: list, required: bool = True) -> str:
    institution_id = normalize_id(value)
    if not institution_id:
        if required:
            errors.append(f"{path}: required (unified social credit code)")
        return ""
    problem = uscc_problem(institution_id)
    if problem:
        errors.append(f"{path}: {problem}")
    return institution_id


def parse_reviewers(items, errors: list) -> list[dict]:
    reviewers, assessors, assigned = [], set(), {}
    for i, item in enumerate(items or []):
        path = f"reviewers[{i}]"
        assessor = (item.get("assessor_id") or "").strip()
        if not CLIENT_ID.match(assessor):
            errors.append(f"{path}.assessor_id: required, {CLIENT_ID_HINT}")
        elif assessor in assessors:
            errors.append(f"{path}.assessor_id: {assessor} is listed twice")
        assessors.add(assessor)
        ids = []
        for j, value in enumerate(item.get("institution_ids") or []):
            institution_id = check_institution_id(value, f"{path}.institution_ids[{j}]", errors)
            if institution_id in assigned and institution_id:
                errors.append(f"{path}.institution_ids[{j}]: already assigned to "
                              f"{assigned[institution_id]}")
            assigned.setdefault(institution_id, assessor)
            ids.append(institution_id)
        if not ids:
            errors.append(f"{path}.institution_ids: at least one institution")
        reviewers.append({"assessor_id": assessor, "institution_ids": ids})
    return reviewers


def assessor_of(reviewers: list[dict], institution_id: str) -> str | None:
    return next((r["assessor_id"] for r in reviewers or ()
                 if institution_id in (r.get("institution_ids") or ())), None)


def parse_evidence(items, path: str, errors: list) -> list[dict]:
    evidence = []
    for i, item in enumerate(items or []):
        uri = (item.get("uri") or "").strip()
        digest = (item.get("sha256") or "").strip().lower()
        if not uri:
            errors.append(f"{path}[{i}].uri: required")
        if not _SHA256.match(digest):
            errors.append(f"{path}[{i}].sha256: 64 hexadecimal characters (SHA-256)")
        evidence.append({k: v for k, v in (("uri", uri), ("sha256", digest), (
            "description", (item.get("description") or "").strip())) if v})
    return evidence


def value_fields(leaf: Leaf, value: int) -> dict:
    """A leaf's value as the LeafValue fields (the one field of its rule)."""
    return {VALUE_FIELD[leaf.kind]: value} if value else {}


def leaf_value(leaf: Leaf, item: dict, path: str, errors: list) -> int:
    """The value an entry gives a leaf: the field of its rule, in its range; the other two
    fields must stay 0."""
    wanted = VALUE_FIELD[leaf.kind]
    for name in VALUE_FIELDS:
        if name != wanted and _int(item.get(name)):
            errors.append(f"{path}.{name}: indicator {leaf.id} is scored by "
                          f"{leaf.kind.removeprefix('SCORING_RULE_KIND_')}: give {wanted}")
    value = _int(item.get(wanted))
    high = {POINTS: leaf.max_centi, DEDUCTION: MAX_OCCURRENCES, RATE: MAX_RATE_BP}[leaf.kind]
    if not 0 <= value <= high:
        errors.append(f"{path}.{wanted}: must be 0-{high} for indicator {leaf.id}")
        value = min(max(value, 0), high)
    return value


@dataclass(frozen=True)
class Value:
    indicator_id: str
    value: int
    evidence: tuple = ()
    note: str = ""
    reason: str = ""

    def entry(self, leaf: Leaf) -> dict:
        data = {"indicator_id": self.indicator_id, **value_fields(leaf, self.value)}
        if self.evidence:
            data["evidence"] = [dict(e) for e in self.evidence]
        if self.note:
            data["note"] = self.note
        if self.reason:
            data["reason"] = self.reason
        return data


def _leaf_of(system: IndicatorSystem, item: dict, path: str, errors: list, seen: set):
    indicator_id = (item.get("indicator_id") or "").strip()
    leaf = system.leaf(indicator_id)
    if not indicator_id:
        errors.append(f"{path}.indicator_id: required")
    elif leaf is None:
        errors.append(f"{path}.indicator_id: {indicator_id!r} is not a third-level indicator "
                      f"of {system.system_id}")
    elif indicator_id in seen:
        errors.append(f"{path}.indicator_id: {indicator_id} given twice")
        leaf = None
    seen.add(indicator_id)
    return leaf


def parse_values(system: IndicatorSystem, items, final: bool, errors: list,
                 path: str = "values") -> list[Value]:
    """A self-assessment's declarations. A final one carries evidence for every declared leaf
    whose definition names the evidence it needs."""
    values, seen = [], set()
    for i, item in enumerate(items or []):
        ipath = f"{path}[{i}]"
        leaf = _leaf_of(system, item, ipath, errors, seen)
        evidence = parse_evidence(item.get("evidence"), f"{ipath}.evidence", errors)
        note = (item.get("note") or "").strip()
        if leaf is None:
            continue
        value = leaf_value(leaf, item, ipath, errors)
        if final and leaf.evidence and not evidence:
            errors.append(f"{ipath}.evidence: indicator {leaf.id} needs evidence "
                          f"({'; '.join(leaf.evidence)})")
        values.append(Value(leaf.id, value, tuple(evidence), note))
    return values


def parse_adjustments(system: IndicatorSystem, items, errors: list) -> list[Value]:
    values, seen = [], set()
    for i, item in enumerate(items or []):
        path = f"adjustments[{i}]"
        leaf = _leaf_of(system, item, path, errors, seen)
        reason = (item.get("reason") or "").strip()
        if not reason:
            errors.append(f"{path}.reason: required: every adjustment says why")
        if leaf is not None:
            values.append(Value(leaf.id, leaf_value(leaf, item, path, errors), reason=reason))
    return values


def parse_findings(system: IndicatorSystem, items, errors: list) -> list[dict]:
    findings, seen = [], set()
    for i, item in enumerate(items or []):
        path = f"offences[{i}]"
        offence_id = (item.get("offence_id") or "").strip()
        if system.offence(offence_id) is None:
            errors.append(f"{path}.offence_id: {offence_id!r} is not a direct-D offence of "
                          f"{system.system_id}")
        elif offence_id in seen:
            errors.append(f"{path}.offence_id: {offence_id} given twice")
        seen.add(offence_id)
        reason = (item.get("reason") or "").strip()
        if not reason:
            errors.append(f"{path}.reason: required")
        evidence = parse_evidence(item.get("evidence"), f"{path}.evidence", errors)
        findings.append({"offence_id": offence_id, "reason": reason, "evidence": evidence})
    return findings


def parse_overall(item, errors: list) -> dict | None:
    """The overall judgement: a grade A-D with its written reason, or None."""
    item = item or {}
    grade = item.get("grade") or "GRADE_UNSPECIFIED"
    reason = (item.get("reason") or "").strip()
    if grade in ("GRADE_UNSPECIFIED", 0):
        if reason:
            errors.append("overall.grade: required with a reason (A, B, C or D)")
        return None
    number = GRADE_BY_NAME.get(grade) if isinstance(grade, str) else grade
    if number not in (1, 2, 3, GRADE_D):
        errors.append("overall.grade: A, B, C or D (UNGRADED follows from the filing only)")
    if not reason:
        errors.append("overall.reason: required: an overall judgement is written and audited")
    return {"grade": number, "reason": reason}


def parse_appeal_items(system: IndicatorSystem, items, errors: list) -> list[dict]:
    if not items:
        errors.append("indicators: at least one contested indicator")
    parsed, seen = [], set()
    for i, item in enumerate(items or []):
        path = f"indicators[{i}]"
        leaf = _leaf_of(system, item, path, errors, seen)
        statement = (item.get("statement") or "").strip()
        if not statement:
            errors.append(f"{path}.statement: required")
        evidence = parse_evidence(item.get("evidence"), f"{path}.evidence", errors)
        if not evidence:
            errors.append(f"{path}.evidence: at least one document")
        if leaf is not None:
            parsed.append({"indicator_id": leaf.id, "statement": statement,
                           "evidence": evidence})
    return parsed


def parse_appeal_decisions(system: IndicatorSystem, contested: list[str], items,
                           errors: list) -> list[dict]:
    """Every contested indicator decided once, each with its reason; an accepted one with the
    value its leaf is scored with from now on."""
    decisions, seen = [], set()
    for i, item in enumerate(items or []):
        path = f"decisions[{i}]"
        leaf = _leaf_of(system, item, path, errors, seen)
        if leaf is not None and leaf.id not in contested:
            errors.append(f"{path}.indicator_id: {leaf.id} was not contested in this appeal")
            leaf = None
        reason = (item.get("reason") or "").strip()
        if not reason:
            errors.append(f"{path}.reason: required")
        accepted = bool(item.get("accepted"))
        if leaf is None:
            continue
        value = leaf_value(leaf, item, path, errors) if accepted else 0
        decisions.append({"indicator_id": leaf.id, "accepted": accepted, "value": value,
                          "reason": reason})
    missing = [c for c in contested if c not in seen]
    if missing:
        errors.append(f"decisions: every contested indicator is decided; missing "
                      f"{', '.join(missing)}")
    return decisions


# --- which institutions, which facts ----------------------------------------------------------
def year_bounds(year: int) -> tuple[str, str]:
    return f"{year:04d}-01-01", f"{year:04d}-12-31"


def in_population(filed_on: str | None, ended_on: str | None, year: int) -> bool:
    """Graded (or UNGRADED) in `year`: filed by its last day and not ended before its first."""
    first, last = year_bounds(year)
    return bool(filed_on) and filed_on <= last and not (ended_on and ended_on < first)


def ungraded_reason(filed_on: str, ended_on: str | None, end_kind: str | None,
                    year: int) -> str | None:
    """Why an institution is UNGRADED in `year`, or None. A grade needs the whole year filed
    (the project's reading: "filed less than a full grading year is UNGRADED, never D"): filed after 1
    January, or its filing expired within the year. A termination within the year is not a
    reason here: it is a direct-D offence (unless the filing was too new to be graded)."""
    first, last = year_bounds(year)
    if filed_on > first:
        return (f"filed on {filed_on}: less than the full grading year {year} "
                f"(a grade needs the filing from {first})")
    if ended_on and ended_on <= last and end_kind == "EXPIRED":
        return f"filing expired on {ended_on}: less than the full grading year {year}"
    return None


def facts_in_year(facts: list[dict], year: int) -> list[dict]:
    """The facts dated within the year that still stand (not reversed)."""
    first, last = year_bounds(year)
    return [f for f in facts or () if first <= (f.get("on") or "") <= last
            and not f.get("reversed")]


def fact_occurrences(facts: list[dict]) -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for fact in facts:
        by_kind.setdefault(fact["kind"], []).append(fact)
    return by_kind


def _matches(trigger: dict, fact: dict) -> bool:
    if fact.get("kind") != trigger.get("fact"):
        return False
    prefix = (trigger.get("basis_prefix") or "").replace(" ", "")
    # A decision may cite several articles ("001 ch.6 art.3(5); 001 ch.6 art.4(5)"): any one.
    citations = [c.replace(" ", "") for c in (fact.get("basis") or "").split(";")]
    if prefix and not any(c.startswith(prefix) for c in citations):
        return False
    reason = trigger.get("invalidation_reason")
    return not reason or fact.get("reason") == reason


def offences_found(system: IndicatorSystem, facts: list[dict],
                   findings: list[dict]) -> list[dict]:
    """The version's direct-D offences the year's facts or the reviewers' findings show:
    [{offence_id, title, legal_basis, event_ids, decision_refs, finding?}] in the version's
    order."""
    found = []
    found_by_reviewer = {f["offence_id"]: f for f in findings or ()}
    for offence in system.offences:
        matched = [f for f in facts if any(_matches(t, f) for t in offence.triggers)]
        finding = found_by_reviewer.get(offence.id)
        if matched or finding:
            found.append({k: v for k, v in {
                "offence_id": offence.id, "title": offence.title,
                "legal_basis": offence.legal_basis,
                "event_ids": [f["event_id"] for f in matched if f.get("event_id")],
                "decision_refs": sorted({f["decision_ref"] for f in matched
                                         if f.get("decision_ref")}),
                "finding": (finding or {}).get("reason", "")}.items() if v != ""})
    return found


# --- states ---------------------------------------------------------------------------------------
SYSTEM_DRAFT, SYSTEM_PUBLISHED = "SYSTEM_STATE_DRAFT", "SYSTEM_STATE_PUBLISHED"
YEAR_OPEN, YEAR_PUBLISHED = "YEAR_STATE_OPEN", "YEAR_STATE_PUBLISHED"
ASSESSMENT_DRAFT = "ASSESSMENT_STATE_DRAFT"
ASSESSMENT_SUBMITTED = "ASSESSMENT_STATE_SUBMITTED"
ASSESSMENT_REVIEWED = "ASSESSMENT_STATE_REVIEWED"
APPEAL_FILED, APPEAL_DECIDED = "APPEAL_STATE_FILED", "APPEAL_STATE_DECIDED"
REPAIR_APPLIED, REPAIR_APPROVED, REPAIR_REFUSED = (
    "REPAIR_STATE_APPLIED", "REPAIR_STATE_APPROVED", "REPAIR_STATE_REFUSED")
__all__ += ["SYSTEM_DRAFT", "SYSTEM_PUBLISHED", "YEAR_OPEN", "YEAR_PUBLISHED",
            "ASSESSMENT_DRAFT", "ASSESSMENT_SUBMITTED", "ASSESSMENT_REVIEWED", "APPEAL_FILED",
            "APPEAL_DECIDED", "REPAIR_APPLIED", "REPAIR_APPROVED", "REPAIR_REFUSED"]
