"""Decisions on an application or a filed institution, as pure functions: what changes, the
reason in words with its citation, and what the event says. Handlers apply the result to the
documents and record the events; nothing here reads a database or a clock.

Sources: seed 001 ch.2 art.5-9, ch.6 art.3-6.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.vocabulary import parse_date
from services.common.workdays import WorkdayCalendar
from services.filing.domain.intake import (
    ACCEPTED,
    ACCEPTED_BY_DEEMED,
    ACCEPTED_BY_REGULATOR,
    ACTIVE,
    RECEIVED,
    SUPPLEMENT_DAYS,
    SUSPENDED,
    check_acceptance,
    check_supplement_request,
    merge_materials,
    overdue,
    reasons_list,
    require_state,
    supplement_complete,
    supplement_due,
    validity_end,
)
from services.filing.domain.lifecycle import (
    CHANGE_FILING_DAYS,
    NEW,
    PROPOSAL_APPROVED,
    PROPOSAL_DISMISSED,
    PROPOSAL_OPEN,
    PROPOSAL_SCOPE_REMOVAL,
    PROPOSAL_TERMINATION,
    RENEWAL,
    SCOPE_CHANGE,
    TERMINATED,
    ActivityFinding,
    change_due,
    days_late,
    institution_proposal,
    rank_key,
    renewal_apply_by,
    renewal_notice_due,
    renewed_valid_until,
    scope_proposals,
)
from services.filing.domain.quotas import occupation_area, seat_needs

__all__ = [
    "ACCEPT", "NOT_ACCEPT", "Acceptance", "acceptance_decision", "deemed_acceptance",
    "check_supplement_open", "supplement_notice", "apply_supplement", "withdrawal_reason",
    "status_entry", "filed_fields", "Renewal", "renewal", "expiry", "renewal_notice",
    "scope_transition", "scope_without", "open_proposal", "decide_proposal",
    "close_proposals_on_termination", "sole_providers", "activity_findings", "new_proposal",
    "new_needs", "filed_per_need", "allocated_needs", "Contender", "competition",
    "quota_standing",
    "pending_clock", "change_overdue", "issued_activity",
]

ACCEPT = "ACCEPTANCE_DECISION_ACCEPT"
NOT_ACCEPT = "ACCEPTANCE_DECISION_NOT_ACCEPT"


# --- acceptance (art.5) -----------------------------------------------------------------
@dataclass(frozen=True)
class Acceptance:
    accepted: bool
    accepted_on: date | None = None
    accepted_by: str = ""
    reasons: tuple[str, ...] = ()

    @property
    def deemed(self) -> bool:
        return self.accepted_by == ACCEPTED_BY_DEEMED


def deemed_acceptance(acceptance_due_iso: str) -> Acceptance:
    """No answer within the 5 working days is acceptance (视为受理), dated the window's last day
    (the reading stated at ACCEPTED_BY_DEEMED in intake.py)."""
    return Acceptance(True, date.fromisoformat(acceptance_due_iso), ACCEPTED_BY_DEEMED)


def acceptance_decision(decision: str, state: str, acceptance_due_iso: str | None,
                        missing_now: list[str], reasons, today: date) -> Acceptance:
    """The regulator's answer within the acceptance window: accept or decline with reasons.
    Once the window has passed the application is already accepted by law: an ACCEPT then
    records the deemed acceptance, a decline is refused."""
    if decision == ACCEPT:
        if state == RECEIVED and overdue(acceptance_due_iso, today):
            return deemed_acceptance(acceptance_due_iso)
        check_acceptance(state, missing_now)
        return Acceptance(True, today, ACCEPTED_BY_REGULATOR)
    if decision == NOT_ACCEPT:
        errors: list[str] = []
        cleaned = reasons_list(reasons, errors)
        if errors:
            raise InvalidArgument(errors)
        require_state(state, {RECEIVED}, "decline")
        if overdue(acceptance_due_iso, today):
            raise FailedPrecondition(f"the acceptance window ended on {acceptance_due_iso}: "
                                     "the application is deemed accepted")
        return Acceptance(False, reasons=tuple(cleaned))
    raise InvalidArgument(f"decision: must be {ACCEPT} or {NOT_ACCEPT}")


# --- supplements (art.5) ----------------------------------------------------------------
def check_supplement_open(supplement_due_iso: str | None, today: date) -> None:
    """After the 30 days the application is deemed withdrawn (the sweep records it): a
    supplement that comes later is refused, even before the sweep ran."""
    if overdue(supplement_due_iso, today):
        raise FailedPrecondition(f"the supplement was due by {supplement_due_iso}: "
                                 "the application is deemed withdrawn")


def supplement_notice(requested: list[str], other_items: list[str], state: str,
                      notices_so_far: int, missing_now: list[str], today: date,
                      acceptance_due_iso: str | None) -> dict:
    """The one notice listing every missing item, with the day the supplement is due."""
    check_supplement_request(state, notices_so_far, missing_now, requested, other_items, today,
                             acceptance_due_iso)
    return {"missing_materials": requested, "other_items": other_items,
            "requested_on": today.isoformat(), "due_on": supplement_due(today).date.isoformat()}


def apply_supplement(notice: dict, materials: list[dict], supplied: list[dict],
                     answered: list[str], today: date) -> tuple[list[dict], dict, bool]:
    """(materials, notice, complete): supplied materials replace those of their kind; the day
    the supplement is complete counts as the new day of receipt (art.5)."""
    materials = merge_materials(materials, supplied)
    notice = dict(notice)
    notice["answered_items"] = sorted(set(notice.get("answered_items", [])) | set(answered))
    complete = supplement_complete(notice, materials, notice["answered_items"])
    if complete:
        notice["completed_on"] = today.isoformat()
    return materials, notice, complete


def withdrawal_reason(supplement_due_iso: str) -> str:
    return (f"no complete supplement by {supplement_due_iso} "
            f"({SUPPLEMENT_DAYS} days after the notice): deemed withdrawn")


# --- filing, status and renewal (art.7, art.9; ch.6 art.3-4) ----------------------------
def status_entry(status: str, reason: str, ref: str, changed_at: datetime, actor: str,
                 effective_on: date) -> dict:
    """One line of an institution's status history (the right to evaluate on a date reads it)."""
    return {"status": status, "reason": reason, "decision_ref": ref,
            "changed_at": changed_at.isoformat(), "actor": actor,
            "effective_on": effective_on.isoformat()}


def filed_fields(details: dict, scope: list[dict], filing_code: str, filed_on: date,
                 application_id: str) -> dict:
    """An institution as filed on `filed_on` (new, or filed again after termination or expiry:
    its filing code stays its own), valid for 3 years, its scope in force from that day."""
    day = filed_on.isoformat()
    return dict(
        name=details["name"], legal_representative=details.get("legal_representative"),
        address=details.get("address"), district_code=details.get("district_code"),
        contact_phone=details.get("contact_phone"), filing_code=filing_code, scope=list(scope),
        status=ACTIVE, filed_on=day, valid_until=validity_end(filed_on).isoformat(),
        application_id=application_id, status_reason="filed", status_decision_ref=application_id,
        scope_history=[{"effective_on": day, "scope": list(scope)}],
        scope_since={s["occupation_code"]: day for s in scope},
        renewal_notice_for=None, activity_checked_on=None, suspensions=[],
        lapse_raised_for=None)


@dataclass(frozen=True)
class Renewal:
    valid_until: date
    status: str
    reason: str


def renewal(status: str, valid_until: date) -> Renewal:
    """A filed renewal: 3 more years from the day after the current validity (art.9). A
    termination meanwhile ends it; a suspension stays until the regulator reinstates (ch.6
    art.3), and a filing that expired while its timely renewal was evaluated is active again."""
    if status == TERMINATED:
        raise FailedPrecondition("cannot renew: the filing was terminated meanwhile")
    new_end = renewed_valid_until(valid_until)
    return Renewal(new_end, SUSPENDED if status == SUSPENDED else ACTIVE,
                   f"renewed until {new_end.isoformat()}")


def expiry(valid_until_iso: str) -> tuple[str, date]:
    """(reason, effective day) of an expiry: the day after the last day of validity (art.9)."""
    return (f"validity ended on {valid_until_iso}",
            date.fromisoformat(valid_until_iso) + timedelta(days=1))


def renewal_notice(valid_until_iso: str, notice_for: str | None, today: date) -> dict | None:
    """RenewalDue's payload, once per validity period, from RENEWAL_NOTICE_DAYS before expiry."""
    valid_until = date.fromisoformat(valid_until_iso)
    if notice_for == valid_until_iso or not renewal_notice_due(valid_until, today):
        return None
    return {"valid_until": valid_until_iso,
            "apply_by": renewal_apply_by(valid_until).isoformat()}


# --- the scope in force (ch.2 art.8, ch.6 art.6) -----------------------------------------
def scope_transition(current_scope: list[dict], scope_since: dict | None,
                     scope_history: list[dict] | None, filed_on: str, new_scope: list[dict],
                     effective_on: date, decision_ref: str | None = None) -> dict:
    """The fields of a scope change from `effective_on`: the scope, since when each occupation
    is in it (the 12-month rules count from there), and the history the right to evaluate on
    a past date reads. A second change on the same day replaces the first."""
    day = effective_on.isoformat()
    since = dict(scope_since or {})
    for item in new_scope:
        since.setdefault(item["occupation_code"], day)
    kept = {s["occupation_code"] for s in new_scope}
    history = list(scope_history or [])
    if not history:  # slice-era document: its current scope was in force since filing
        history.append({"effective_on": filed_on, "scope": list(current_scope)})
    history = [h for h in history if h["effective_on"] != day]
    entry = {"effective_on": day, "scope": list(new_scope)}
    if decision_ref:
        entry["decision_ref"] = decision_ref  # a retried decision finds its change applied
    history.append(entry)
    return {"scope": list(new_scope), "scope_history": history,
            "scope_since": {c: d for c, d in since.items() if c in kept}}


def scope_without(scope: list[dict], occupation_code: str) -> list[dict]:
    """The scope with one occupation removed (ch.6 art.6). The last one is never removed: an
    institution left with nothing to evaluate is terminated instead (ch.6 art.4)."""
    kept = [s for s in scope if s["occupation_code"] != occupation_code]
    if not kept:
        raise FailedPrecondition(f"{occupation_code} is the last occupation in scope: "
                                 "terminate the filing instead")
    return kept


# --- proposals from certificate activity (ch.6 art.4 (七), art.6) -------------------------
def open_proposal(proposals: list[dict], proposal_id: str, institution_id: str) -> dict:
    for proposal in proposals:
        if proposal.get("proposal_id") == proposal_id:
            if proposal.get("state") != PROPOSAL_OPEN:
                raise FailedPrecondition(f"proposal {proposal_id} was already decided")
            return proposal
    raise NotFound(f"proposal {proposal_id} not found for {institution_id}")


def _decided(proposal: dict, state: str, today: date, reason: str, ref: str) -> dict:
    return {**proposal, "state": state, "decided_on": today.isoformat(),
            "decision_reason": reason, "decision_ref": ref}


def decide_proposal(proposals: list[dict], proposal_id: str, state: str, today: date,
                    reason: str, ref: str) -> list[dict]:
    """The proposals with one of them approved or dismissed."""
    return [_decided(p, state, today, reason, ref) if p.get("proposal_id") == proposal_id
            else dict(p) for p in proposals]


def close_proposals_on_termination(proposals: list[dict], today: date, ref: str) -> list[dict]:
    """A terminated filing leaves nothing open: a termination proposal is fulfilled by it
    (approved), a scope removal has nothing left to remove (dismissed)."""
    return [_decided(p, PROPOSAL_APPROVED if p["kind"] == PROPOSAL_TERMINATION
                     else PROPOSAL_DISMISSED, today, "filing terminated", ref)
            if p.get("state") == PROPOSAL_OPEN else dict(p) for p in proposals]


def sole_providers(scopes: Iterable[list[dict]]) -> set[str]:
    """Occupations that exactly one filed (active or suspended) institution evaluates: never
    proposed for removal, "unless the organisation is the only one" (ch.6 art.6)."""
    providers = Counter(item["occupation_code"] for scope in scopes for item in scope)
    return {code for code, n in providers.items() if n == 1}


def activity_findings(scope: list[dict], scope_since: dict | None, filed_on: str,
                      activity: dict, sole: set, proposals: list[dict],
                      today: date) -> list[ActivityFinding]:
    """What to propose for one institution today: occupations idle or under 300 (not the sole
    provider's), then the institution as a whole when idle or under 500."""
    since = {s["occupation_code"]: (scope_since or {}).get(s["occupation_code"], filed_on)
             for s in scope}
    findings = scope_proposals(scope, since, activity, sole, proposals, today)
    whole = institution_proposal(date.fromisoformat(filed_on), activity, proposals, today)
    return findings + ([whole] if whole else [])


def new_proposal(finding: ActivityFinding, proposal_id: str, institution_id: str,
                 today: date) -> tuple[dict, str, dict]:
    """(the open proposal, its event type, the event's payload). Nothing is removed or
    terminated until the regulator decides."""
    termination = not finding.occupation_code
    record = {"proposal_id": proposal_id,
              "kind": PROPOSAL_TERMINATION if termination else PROPOSAL_SCOPE_REMOVAL,
              "occupation_code": finding.occupation_code, "grounds": list(finding.grounds),
              "proposed_on": today.isoformat(), "state": PROPOSAL_OPEN,
              "count_12_months": finding.count_12_months,
              "last_evaluation_on": finding.last_evaluation_on}
    payload = {"institution_id": institution_id, "proposal_id": proposal_id,
               "grounds": list(finding.grounds)}
    if termination:
        return record, "TerminationProposed", payload
    return record, "ScopeRemovalProposed", {**payload, "occupation_code": finding.occupation_code}


def issued_activity(counts: Iterable[tuple[str, int]],
                    assessment_date: str) -> tuple[dict[str, dict], int]:
    """Certificates issued per occupation and day, from one CertificatesIssued event; the
    thresholds count per occupation, whatever the level (ch.6 art.4 (七), art.6). An entry
    without an occupation or a positive count, or every entry of an event without a valid
    assessment date, is skipped rather than guessed: (per occupation, entries skipped)."""
    day = parse_date(assessment_date, "assessment_date", [])
    per_occupation: dict[str, dict] = {}
    skipped = 0
    for code, count in counts:
        code = code.strip() if isinstance(code, str) else ""
        if day is None or not code or not isinstance(count, int) or isinstance(count, bool) \
                or count <= 0:
            skipped += 1
            continue
        slot = per_occupation.setdefault(code, {"days": {}, "last": ""})
        slot["days"][day.isoformat()] = slot["days"].get(day.isoformat(), 0) + count
        slot["last"] = max(slot["last"], day.isoformat())
    return per_occupation, skipped


# --- selection and quotas (ch.6 art.5) ----------------------------------------------------
def new_needs(kind: str | None, applied_scope: list[dict], filed_scope: list[dict],
              district_code: str, areas: dict) -> list[tuple[str, str]]:
    """(area, occupation) of each seat an application adds, which the quotas count: every one
    of a new application, those a scope change adds (a new occupation, or one that now serves
    another area), none of a renewal."""
    kind = kind or NEW
    if kind == RENEWAL:
        return []
    wanted = seat_needs(applied_scope, district_code, areas)
    if kind == SCOPE_CHANGE:
        before = set(seat_needs(filed_scope, district_code, areas))
        return [need for need in wanted if need not in before]
    return wanted


def filed_per_need(others: Iterable[tuple[str, str, list[dict]]],
                   needs: Iterable[tuple[str, str]], areas: dict,
                   applicant: str | None) -> dict[tuple[str, str], int]:
    """Institutions on the register (active or suspended) evaluating each (area, occupation),
    the applicant not counted. `others`: (institution id, district code, scope)."""
    counts = dict.fromkeys(needs, 0)
    for institution_id, district_code, scope in others:
        if institution_id == applicant:
            continue
        for item in scope:
            key = (occupation_area(item, district_code, areas), item["occupation_code"])
            if key in counts:
                counts[key] += 1
    return counts


def allocated_needs(scope: list[dict], needs: Iterable[tuple[str, str]], district_code: str,
                    areas: dict) -> list[tuple[str, str]]:
    """Of `needs`, those the scope serves by city-wide allocation."""
    served = {(occupation_area(i, district_code, areas), i["occupation_code"]) for i in scope
              if i.get("serves_district_code")}
    return [need for need in needs if need in served]


@dataclass(frozen=True)
class Contender:
    """An accepted application as the selection sees it."""

    application_id: str
    seats: tuple[tuple[str, str], ...]  # (area, occupation) of each seat it applies for
    allocated: frozenset                 # of those, the ones it would serve from elsewhere
    person_times: dict                   # occupation -> person-times evaluated in 3 years
    history_since: str
    received_on: str


def competition(contenders: Iterable[Contender], urgent: frozenset) -> dict[tuple, list[str]]:
    """Per (occupation, quota area): the applications competing for its seats, best first
    ("择优遴选", urgently needed occupations first, the area's own before allocations; the
    order is rank_key's)."""
    seats: dict[tuple, list] = {}
    for c in contenders:
        for area, code in c.seats:
            key = rank_key(code in urgent, c.person_times.get(code, 0), c.history_since,
                           c.received_on, c.application_id, (area, code) in c.allocated)
            seats.setdefault((code, area), []).append((key, c.application_id))
    return {seat: [application_id for _, application_id in sorted(entries)]
            for seat, entries in seats.items()}


def quota_standing(application_id: str, needs: list[tuple[str, str]], allocated: Iterable,
                   limit_of, filed: dict, ranking: dict, urgent: frozenset) -> list[dict]:
    """For each seat applied for: the limit, how many evaluate it there, and where this
    application stands among those competing for it."""
    allocated = set(allocated)
    standing = []
    for area, code in needs:
        ranked = ranking.get((code, area), [])
        standing.append({"occupation_code": code, "area": area, "limit": limit_of(area),
                         "filed": filed.get((area, code), 0),
                         "rank": ranked.index(application_id) + 1 if application_id in ranked
                         else 0, "competitors": len(ranked), "urgently_needed": code in urgent,
                         "allocated": (area, code) in allocated})
    return standing


def pending_clock(state: str, acceptance_due: str | None, acceptance_provisional: bool,
                  decision_due: str | None, decision_provisional: bool, today: date,
                  calendar: WorkdayCalendar) -> dict:
    """Which deadline an open application waits on (acceptance, art.5; decision, art.6) and
    by how many working days it is missed."""
    decision_stage = state == ACCEPTED
    due = decision_due if decision_stage else acceptance_due
    provisional = decision_provisional if decision_stage else acceptance_provisional
    late = overdue(due, today)
    return {"stage": "PENDING_STAGE_DECISION" if decision_stage else "PENDING_STAGE_ACCEPTANCE",
            "due": {"date": due, "provisional": bool(provisional)}, "overdue": late,
            "working_days_overdue": calendar.working_days_between(
                date.fromisoformat(due), today) if late else 0}


# --- changes (ch.2 art.8) ---------------------------------------------------------------
def change_overdue(institution_id: str, changed_fields: list[str], changed_on: date,
                   filed_on: date, request_id: str) -> tuple[dict, dict] | None:
    """A details change filed after its 30 days: the violation recorded on the institution
    (ch.6 art.3 (八)) and the ChangeOverdue payload; None when on time."""
    late = days_late(changed_on, filed_on)
    if not late:
        return None
    due = change_due(changed_on)
    violation = {
        "kind": "CHANGE_OVERDUE", "recorded_on": filed_on.isoformat(), "ref": request_id,
        "description": (f"change of {', '.join(changed_fields)} on {changed_on} filed on "
                        f"{filed_on}, {late} days after the {CHANGE_FILING_DAYS} days ending "
                        f"{due} (seed 001 ch.2 art.8; ch.6 art.3 (八))")}
    payload = {"institution_id": institution_id, "changed_on": changed_on.isoformat(),
               "due_on": due.isoformat(), "filed_on": filed_on.isoformat(), "days_late": late}
    return violation, payload
