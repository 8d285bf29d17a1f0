"""The filing lifecycle after the acceptance clock, as pure functions (no I/O, no clock).

Sources: seed 001 ch.2 art.2 (conditions), art.8 (changes),
art.9 (validity, renewal), ch.6 art.3-6 (suspension, termination, quotas, dynamic scope);
seed 002 §5 (names). Every number a regulator checks is a named constant; every reading of
an ambiguous rule is stated next to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from services.common.errors import FailedPrecondition
from services.common.vocabulary import parse_date
from services.filing.domain.intake import ACTIVE as _ACTIVE
from services.filing.domain.intake import SUSPENDED as _SUSPENDED
from services.filing.domain.intake import check_phone

__all__ = [
    "MIN_HISTORY_YEARS", "MIN_PERSON_TIMES_3Y", "URGENT_MIN_HISTORY_YEARS",
    "URGENT_MIN_PERSON_TIMES_3Y", "CITY_QUOTA_DEFAULT", "DISTRICT_QUOTA", "COUNTY_QUOTA",
    "CHANGE_FILING_DAYS", "RENEWAL_LEAD_DAYS", "RENEWAL_NOTICE_DAYS", "IDLE_MONTHS",
    "MIN_OCCUPATION_12M", "MIN_INSTITUTION_12M", "DISMISSAL_QUIET_MONTHS",
    "TERMINATED", "EXPIRED", "NEW", "SCOPE_CHANGE", "RENEWAL",
    "PROPOSAL_SCOPE_REMOVAL", "PROPOSAL_TERMINATION", "PROPOSAL_OPEN", "PROPOSAL_APPROVED",
    "PROPOSAL_DISMISSED", "DENIALS",
    "add_years", "months_before", "check_conditions", "unmet_conditions",
    "quota_area", "quota_limit", "quota_blockers", "rank_key", "check_name",
    "details_change", "change_due", "days_late", "renewal_apply_by", "check_renewal",
    "renewed_valid_until", "renewal_notice_due", "check_status_change",
    "decision_text", "EvaluationRight", "evaluation_right", "status_on", "scope_on",
    "count_in_window", "prune_activity", "activity_cutoff", "ActivityFinding",
    "LAPSE_MONTHS", "ACTIVITY_DAYS_MONTHS", "active_since", "whole_months", "evaluation_lapse", "scope_proposals",
    "institution_proposal", "scope_diff", "DETAIL_FIELDS",
]

# --- numbers of the rules -------------------------------------------------------------
MIN_HISTORY_YEARS = 3            # ch.2 art.2 (七): 3 consecutive years of training-evaluation
MIN_PERSON_TIMES_3Y = 2000       # ch.2 art.2 (七): per occupation, in the last 3 years
# "急需紧缺职业(工种)可适当放宽": the relaxed thresholds for the configured urgently needed
# occupations (defaults; FILING_URGENT_MIN_YEARS / FILING_URGENT_MIN_PERSON_TIMES override).
URGENT_MIN_HISTORY_YEARS = 1
URGENT_MIN_PERSON_TIMES_3Y = 500
CITY_QUOTA_DEFAULT = 40          # ch.6 art.5: "预设40家左右", adjusted yearly (config)
DISTRICT_QUOTA = 3               # ch.6 art.5: per occupation, the city districts together
COUNTY_QUOTA = 2                 # ch.6 art.5: per occupation, per county (county-level city too)
CHANGE_FILING_DAYS = 30          # ch.2 art.8: calendar days from the change
RENEWAL_LEAD_DAYS = 30           # ch.2 art.9: apply at least 30 days before expiry
# RenewalDue is raised this many days before expiry: 30 days ahead of the last day to apply.
RENEWAL_NOTICE_DAYS = 60
IDLE_MONTHS = 12                 # ch.6 art.4 (七) and art.6: 12 consecutive months
MIN_OCCUPATION_12M = 300         # ch.6 art.6: per occupation in 12 months
MIN_INSTITUTION_12M = 500        # ch.6 art.4 (七): per institution in 12 months
# Reading: a dismissed proposal (the regulator found a good reason) is not raised again for
# this many months, so the in-tray does not refill daily with the same question.
DISMISSAL_QUIET_MONTHS = 12
LAPSE_MONTHS = 6                 # ch.6 art.3 (三): 6 consecutive months without evaluation
# Per-day certificate counts are kept this long, then summed per month (prune_activity).
ACTIVITY_DAYS_MONTHS = IDLE_MONTHS + 1

TERMINATED = "INSTITUTION_STATUS_TERMINATED"
EXPIRED = "INSTITUTION_STATUS_EXPIRED"

NEW = "APPLICATION_KIND_NEW"
SCOPE_CHANGE = "APPLICATION_KIND_SCOPE_CHANGE"
RENEWAL = "APPLICATION_KIND_RENEWAL"

PROPOSAL_SCOPE_REMOVAL = "PROPOSAL_KIND_SCOPE_REMOVAL"
PROPOSAL_TERMINATION = "PROPOSAL_KIND_TERMINATION"
PROPOSAL_OPEN = "PROPOSAL_STATE_OPEN"
PROPOSAL_APPROVED = "PROPOSAL_STATE_APPROVED"
PROPOSAL_DISMISSED = "PROPOSAL_STATE_DISMISSED"

DENIALS = {
    "not_filed": "EVALUATION_DENIAL_NOT_FILED",
    "before_filing": "EVALUATION_DENIAL_BEFORE_FILING",
    "suspended": "EVALUATION_DENIAL_SUSPENDED",
    "terminated": "EVALUATION_DENIAL_TERMINATED",
    "expired": "EVALUATION_DENIAL_EXPIRED",
    "occupation": "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE",
    "level": "EVALUATION_DENIAL_LEVEL_OUT_OF_SCOPE",
}

# --- dates ----------------------------------------------------------------------------
def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return date(d.year + years, 2, 28)


def months_before(d: date, months: int) -> date:
    """The same day `months` earlier (the last day of a shorter month)."""
    y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
    m += 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(y, m, min(d.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


# --- the seven applicant conditions (ch.2 art.2) --------------------------------------
_GENERAL = (
    ("registered_legal_person", "(一) registered in the city as an independent legal person"),
    ("good_credit", "(一) good credit without a record of violations or dishonesty"),
    ("dedicated_unit", "(三) a dedicated unit for skill-level evaluation"),
    ("management_rules", "(五) management rules and measures, accepting supervision"),
    ("not_for_profit_pledge", "(六) not for profit, with stable funding"),
)
_PER_OCCUPATION = (
    ("premises_fit", "(二) premises, facilities and equipment fit for the occupation"),
    ("video_surveillance", "(二) video surveillance at the evaluation premises"),
    ("premises_in_registered_area", "(二) evaluation premises in the district of registration"),
    ("staff_examiners_supervisors_experts",
     "(三) full-time staff, examiners, quality supervisors and technical experts"),
    ("question_bank", "(四) a question bank or test resources"),
)


def check_conditions(conditions: dict | None, scope_codes: list[str], errors: list,
                     path: str = "conditions") -> dict | None:
    """The declaration, cleaned; None when the applicant declared nothing (then the
    technical evaluation alone attests them). Malformed parts are added to `errors`."""
    if not conditions:
        return None
    since = parse_date(conditions.get("evaluation_history_since"),
                       f"{path}.evaluation_history_since", errors)
    cleaned = {key: bool(conditions.get(key)) for key, _ in _GENERAL}
    cleaned["evaluation_history_since"] = since.isoformat() if since else ""
    occupations, seen = [], set()
    for i, item in enumerate(conditions.get("occupations") or []):
        where = f"{path}.occupations[{i}]"
        code = (item.get("occupation_code") or "").strip()
        if code not in scope_codes:
            errors.append(f"{where}.occupation_code: {code or '(empty)'} is not in the scope applied for")
        elif code in seen:
            errors.append(f"{where}.occupation_code: {code} listed twice")
        seen.add(code)
        count = item.get("person_times_last_3_years") or 0
        if not isinstance(count, int) or count < 0:
            errors.append(f"{where}.person_times_last_3_years: must be 0 or more")
            count = 0
        occupations.append({"occupation_code": code, "person_times_last_3_years": count,
                            **{key: bool(item.get(key)) for key, _ in _PER_OCCUPATION}})
    missing = [c for c in scope_codes if c and c not in seen]
    if missing:
        errors.append(f"{path}.occupations: no entry for {', '.join(missing)}")
    cleaned["occupations"] = occupations
    return cleaned


def unmet_conditions(conditions: dict | None, received_on: date, urgent: frozenset,
                     min_years: tuple[int, int] = (MIN_HISTORY_YEARS, URGENT_MIN_HISTORY_YEARS),
                     min_count: tuple[int, int] = (MIN_PERSON_TIMES_3Y, URGENT_MIN_PERSON_TIMES_3Y),
                     ) -> list[str]:
    """Each condition the declaration does not meet, in words. The history condition is per
    institution, but relaxed when every occupation applied for is urgently needed."""
    if not conditions:
        return []
    unmet = [f"condition {text} not met" for key, text in _GENERAL if not conditions.get(key)]
    codes = [o["occupation_code"] for o in conditions.get("occupations", [])]
    all_urgent = bool(codes) and all(c in urgent for c in codes)
    years = min_years[1] if all_urgent else min_years[0]
    since = conditions.get("evaluation_history_since")
    if since and add_years(date.fromisoformat(since), years) > received_on:
        unmet.append(f"condition (七) not met: training-evaluation history since {since} is "
                     f"under {years} years")
    for occ in conditions.get("occupations", []):
        code = occ["occupation_code"]
        for key, text in _PER_OCCUPATION:
            if not occ.get(key):
                unmet.append(f"{code}: condition {text} not met")
        need = min_count[1] if code in urgent else min_count[0]
        if occ["person_times_last_3_years"] < need:
            unmet.append(f"{code}: condition (七) not met: {occ['person_times_last_3_years']} "
                         f"person-times in 3 years, under {need}"
                         + (" (relaxed: urgently needed)" if code in urgent else ""))
    return unmet


# --- quotas (ch.6 art.5) --------------------------------------------------------------
def quota_area(district_code: str, areas: dict) -> str:
    """The city districts share one quota; each county (or county-level city) has its own."""
    kind = areas.get(district_code, ("", "district"))[1]
    return "district" if kind == "district" else f"county:{district_code}"


def quota_limit(area: str, district_quota: int = DISTRICT_QUOTA,
                county_quota: int = COUNTY_QUOTA) -> int:
    return district_quota if area == "district" else county_quota


def quota_blockers(needs: list[tuple[str, str]], filed: dict, limit_of,
                   city_filed: int | None, city_quota: int) -> list[str]:
    """Why filing would exceed a quota. `needs`: (area, occupation) of each seat the
    application adds; `filed[(area, code)]`: institutions on the register (active or
    suspended) evaluating it there, the applicant not counted. `city_filed` None: the
    application adds no institution (scope change, renewal)."""
    blockers = []
    if city_filed is not None and city_filed >= city_quota:
        blockers.append(f"quota: the city-wide quota of {city_quota} institutions is reached "
                        f"({city_filed} filed)")
    for area, code in needs:
        count, limit = filed.get((area, code), 0), limit_of(area)
        if count >= limit:
            where = "the city districts" if area == "district" else f"county {area.split(':', 1)[1]}"
            blockers.append(f"quota: occupation {code} already has {count} institutions in "
                            f"{where} (at most {limit})")
    return blockers


def rank_key(urgent: bool, person_times: int, history_since: str, received_on: str,
             application_id: str, allocated: bool = False) -> tuple:
    """Selection order when several compete for the same seats ("择优遴选"; ch.6 art.5:
    urgently needed occupations first): the area's own applicants before those allocated to
    it from elsewhere (allocation fills an area nobody of its own serves), then urgent, then
    more person-times evaluated, then the longer history, then the earlier receipt."""
    return (allocated, not urgent, -person_times, history_since or "9999-12-31", received_on,
            application_id)


# --- names (seed 002 §5) ---------------------------------------------------------------
def check_name(name: str, prohibited: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(prohibited words used, all problems)."""
    name = (name or "").strip()
    words = [w for w in prohibited if w in name]
    problems = []
    if not 2 <= len(name) <= 100:
        problems.append("name must be 2-100 characters")
    if words:
        problems.append(f"uses prohibited words {', '.join(words)} (seed 002 §5)")
    return words, problems


# --- changes (ch.2 art.8) -------------------------------------------------------------
DETAIL_FIELDS = ("name", "legal_representative", "address", "district_code", "contact_phone")


def details_change(request: dict, current: dict, areas: dict, prohibited: tuple[str, ...],
                   today: date, errors: list) -> tuple[dict, date | None]:
    """The fields that change (new values) and the date of the change."""
    changes = {}
    for key in DETAIL_FIELDS:
        value = (request.get(key) or "").strip()
        if value and value != (current.get(key) or ""):
            changes[key] = value
    if "name" in changes:
        words, problems = check_name(changes["name"], prohibited)
        errors.extend(f"name: {p}" for p in problems)
    if "legal_representative" in changes and len(changes["legal_representative"]) > 50:
        errors.append("legal_representative: must be 1-50 characters")
    if "address" in changes and not 5 <= len(changes["address"]) <= 200:
        errors.append("address: must be 5-200 characters")
    if "district_code" in changes and changes["district_code"] not in areas:
        errors.append(f"district_code: {changes['district_code']} is not a district or county "
                      "of this city")
    if "contact_phone" in changes:
        check_phone(changes["contact_phone"], "contact_phone", errors)
    if not changes:
        errors.append("name/legal_representative/address/district_code/contact_phone: "
                      "nothing differs from the filed details")
    changed_on = parse_date(request.get("changed_on"), "changed_on", errors)
    if changed_on and changed_on > today:
        errors.append(f"changed_on: {changed_on} is in the future; file a change once it happened")
    for key in ("scope", "materials"):
        if request.get(key):
            errors.append(f"{key}: only for CHANGE_KIND_SCOPE")
    return changes, changed_on


def change_due(changed_on: date) -> date:
    return changed_on + timedelta(days=CHANGE_FILING_DAYS)


def days_late(changed_on: date, filed_on: date) -> int:
    """Days after the last day to file (day 30 is on time, day 31 is one day late)."""
    return max(0, (filed_on - change_due(changed_on)).days)


def scope_diff(before: list[dict], after: list[dict]) -> tuple[list[str], list[str]]:
    """(occupations added or with added levels, occupations removed)."""
    old = {s["occupation_code"]: set(s.get("skill_levels", [])) for s in before}
    new = {s["occupation_code"]: set(s.get("skill_levels", [])) for s in after}
    added = [c for c in new if c not in old or not new[c] <= old[c]]
    removed = [c for c in old if c not in new]
    return added, removed


# --- validity and renewal (ch.2 art.9) ------------------------------------------------
def renewal_apply_by(valid_until: date) -> date:
    """The last day a renewal may be applied for: 30 days before the last day of validity."""
    return valid_until - timedelta(days=RENEWAL_LEAD_DAYS)


def check_renewal(status: str, valid_until: date, today: date) -> None:
    if status not in (_ACTIVE, _SUSPENDED):
        raise FailedPrecondition(f"cannot renew: the filing is {_short(status)}; apply anew")
    apply_by = renewal_apply_by(valid_until)
    if today > apply_by:
        left = (valid_until - today).days
        raise FailedPrecondition(
            f"cannot renew: a renewal must be applied for at least {RENEWAL_LEAD_DAYS} days "
            f"before expiry (by {apply_by}); the filing expires on {valid_until}, "
            f"{left} days from today")


def renewed_valid_until(valid_until: date) -> date:
    """A renewal runs another 3 years from the day after the current validity ends."""
    next_day = valid_until + timedelta(days=1)
    return add_years(next_day, 3) - timedelta(days=1)


def renewal_notice_due(valid_until: date, today: date) -> bool:
    return today >= valid_until - timedelta(days=RENEWAL_NOTICE_DAYS) and today <= valid_until


# --- status (ch.6 art.3-4) ------------------------------------------------------------
_TRANSITIONS = {
    "suspend": ({_ACTIVE}, _SUSPENDED),
    "reinstate": ({_SUSPENDED}, _ACTIVE),
    "terminate": ({_ACTIVE, _SUSPENDED}, TERMINATED),
}


def _short(status: str) -> str:
    return status.replace("INSTITUTION_STATUS_", "").lower()


def decision_text(request: dict, errors: list) -> tuple[str, str]:
    """Reason and decision reference: both required for any status decision."""
    reason = (request.get("reason") or "").strip()
    ref = (request.get("decision_ref") or "").strip()
    if not reason:
        errors.append("reason: required")
    elif len(reason) > 500:
        errors.append("reason: longer than 500 characters")
    if not ref:
        errors.append("decision_ref: required (the decision's document number)")
    elif len(ref) > 100:
        errors.append("decision_ref: longer than 100 characters")
    return reason, ref


def check_status_change(action: str, status: str) -> str:
    allowed, target = _TRANSITIONS[action]
    if status not in allowed:
        raise FailedPrecondition(f"cannot {action}: the institution is {_short(status)}")
    return target


# --- the right to evaluate ------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationRight:
    allowed: bool
    denial: str = ""
    reason: str = ""


def status_on(history: list[dict], on: date) -> dict | None:
    """The history entry in force on a date (entries carry `effective_on`, ISO)."""
    current = None
    for entry in sorted(history, key=lambda h: h.get("effective_on") or ""):
        if (entry.get("effective_on") or "") <= on.isoformat():
            current = entry
    return current


def scope_on(scope_history: list[dict], scope: list[dict], on: date) -> list[dict]:
    current = None
    for entry in sorted(scope_history or [], key=lambda h: h["effective_on"]):
        if entry["effective_on"] <= on.isoformat():
            current = entry["scope"]
    return scope if current is None else current


def evaluation_right(institution: dict | None, occupation_code: str, level: int,
                     on: date) -> EvaluationRight:
    """May this institution evaluate this occupation at this level on this date?

    `institution`: status, filed_on, valid_until, history (entries with status and
    effective_on), scope, scope_history. The status in force on the date decides, so a
    certificate dated before a suspension stays valid and one dated after does not."""
    if institution is None:
        return EvaluationRight(False, DENIALS["not_filed"], "the institution is not filed")
    filed_on = date.fromisoformat(institution["filed_on"])
    if on < filed_on:
        return EvaluationRight(False, DENIALS["before_filing"],
                               f"{on} is before the filing on {filed_on}")
    entry = status_on(institution.get("history") or [], on)
    status = entry["status"] if entry else institution["status"]
    if status == TERMINATED:
        return EvaluationRight(False, DENIALS["terminated"],
                               f"the filing was terminated on {entry['effective_on'] if entry else '?'}"
                               + (f": {entry.get('reason')}" if entry and entry.get("reason") else ""))
    valid_until = date.fromisoformat(institution["valid_until"])
    if status == EXPIRED or on > valid_until:
        return EvaluationRight(False, DENIALS["expired"], f"the filing expired after {valid_until}")
    if status == _SUSPENDED:
        return EvaluationRight(False, DENIALS["suspended"],
                               f"evaluation is suspended since {entry['effective_on'] if entry else '?'}"
                               + (f": {entry.get('reason')}" if entry and entry.get("reason") else ""))
    scope = scope_on(institution.get("scope_history") or [], institution.get("scope") or [], on)
    item = next((s for s in scope if s["occupation_code"] == occupation_code), None)
    if item is None:
        return EvaluationRight(False, DENIALS["occupation"],
                               f"occupation {occupation_code} is not in the filed scope on {on}")
    if level not in item.get("skill_levels", []):
        return EvaluationRight(False, DENIALS["level"],
                               f"level {level} of {occupation_code} is not in the filed scope "
                               f"(levels {', '.join(map(str, item.get('skill_levels', [])))})")
    return EvaluationRight(True)


# --- dynamic scope from certificate activity (ch.6 art.4 (七), art.6) ------------------
def prune_activity(days: dict, today: date) -> tuple[dict, dict]:
    """(the per-day counts past the window kept, summed per month YYYY-MM). Days are kept
    for ACTIVITY_DAYS_MONTHS: the 12-month rules and the 6-month lapse read no further, and
    the month beyond is a margin for a worker whose day starts a little later."""
    cutoff = months_before(today, ACTIVITY_DAYS_MONTHS).isoformat()
    stale = {d: n for d, n in days.items() if d <= cutoff}
    monthly: dict[str, int] = {}
    for day, n in stale.items():
        monthly[day[:7]] = monthly.get(day[:7], 0) + n
    return stale, monthly


def activity_cutoff(today: date) -> str:
    return months_before(today, ACTIVITY_DAYS_MONTHS).isoformat()


def count_in_window(days: dict, today: date) -> int:
    start = months_before(today, IDLE_MONTHS).isoformat()
    return sum(n for d, n in days.items() if start < d <= today.isoformat())


@dataclass(frozen=True)
class ActivityFinding:
    occupation_code: str  # "" for the institution as a whole
    grounds: tuple[str, ...]
    count_12_months: int
    last_evaluation_on: str


def _idle_and_low(days: dict, last: str, since: date, today: date, minimum: int,
                  what: str) -> tuple[list[str], int]:
    """Grounds, judged only once the thing has been filed for 12 months (a new occupation
    cannot have been idle for 12 consecutive months)."""
    window_start = months_before(today, IDLE_MONTHS)
    count = count_in_window(days, today)
    if since > window_start:
        return [], count
    grounds = []
    if not last or last <= window_start.isoformat():
        grounds.append(f"{what}: no evaluation for {IDLE_MONTHS} consecutive months"
                       + (f" (last on {last})" if last else ""))
    elif count < minimum:
        grounds.append(f"{what}: {count} evaluated in {IDLE_MONTHS} months, under {minimum}")
    return grounds, count


def _recently_decided(proposals: list[dict], kind: str, code: str, today: date) -> bool:
    quiet_since = months_before(today, DISMISSAL_QUIET_MONTHS).isoformat()
    for p in proposals:
        if p.get("kind") != kind or (p.get("occupation_code") or "") != code:
            continue
        if p.get("state") == PROPOSAL_OPEN:
            return True
        if p.get("state") == PROPOSAL_DISMISSED and (p.get("decided_on") or "") > quiet_since:
            return True
    return False


def scope_proposals(scope: list[dict], scope_since: dict, activity: dict, sole: set,
                    proposals: list[dict], today: date) -> list[ActivityFinding]:
    """Occupations to propose for removal (ch.6 art.6), unless the institution is the only
    one for the occupation. `activity[code]`: {"last": iso, "days": {iso: count}};
    `scope_since[code]`: ISO date the occupation entered the scope."""
    findings = []
    for item in scope:
        code = item["occupation_code"]
        if code in sole or _recently_decided(proposals, PROPOSAL_SCOPE_REMOVAL, code, today):
            continue
        act = activity.get(code) or {}
        grounds, count = _idle_and_low(act.get("days") or {}, act.get("last") or "",
                                       date.fromisoformat(scope_since[code]), today,
                                       MIN_OCCUPATION_12M, f"occupation {code}")
        if grounds:
            findings.append(ActivityFinding(code, tuple(grounds), count, act.get("last") or ""))
    return findings


def institution_proposal(filed_on: date, activity: dict, proposals: list[dict],
                         today: date) -> ActivityFinding | None:
    """The institution idle for 12 months or under 500 evaluated: propose termination."""
    if _recently_decided(proposals, PROPOSAL_TERMINATION, "", today):
        return None
    days: dict = {}
    last = ""
    for act in activity.values():
        for d, n in (act.get("days") or {}).items():
            days[d] = days.get(d, 0) + n
        last = max(last, act.get("last") or "")
    grounds, count = _idle_and_low(days, last, filed_on, today, MIN_INSTITUTION_12M,
                                   "institution")
    return ActivityFinding("", tuple(grounds), count, last) if grounds else None


# --- evaluation lapsed (ch.6 art.3 (三)) --------------------------------------------------
def active_since(history: list[dict], filed_on: str) -> str:
    """The day the institution's current run of activity began: filed, or active again after
    a suspension (a renewal of an active filing does not restart it). Time suspended is not
    idleness "without good reason"."""
    since, active = filed_on, False
    for entry in sorted(history or [], key=lambda h: h.get("effective_on") or ""):
        now_active = entry.get("status") == _ACTIVE
        if now_active and not active:
            since = max(since, entry.get("effective_on") or since)
        active = now_active
    return since


def whole_months(since: date, today: date) -> int:
    """Whole months from `since` to `today` (the same day a month later is one)."""
    months = 0
    while months_before(today, months + 1) >= since:
        months += 1
    return months


def evaluation_lapse(last_evaluation_on: str, filed_on: str, since_active: str,
                     raised_for: str | None, today: date) -> dict | None:
    """EvaluationLapsed's payload (and the day its lapse is counted from) when an active
    institution issued no certificate in any occupation for LAPSE_MONTHS consecutive months;
    None otherwise, or when this lapse was already raised. The months count from the last
    assessment date with certificates, the filing, or the end of a suspension, whichever is
    latest; a certificate after it starts a new count (and so a new lapse later)."""
    start = max(last_evaluation_on or "", filed_on, since_active or "")
    if start > months_before(today, LAPSE_MONTHS).isoformat() or raised_for == start:
        return None
    return {"last_evaluation_on": last_evaluation_on or filed_on,
            "months": whole_months(date.fromisoformat(start), today), "since": start}
