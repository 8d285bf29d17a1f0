"""Inspection's decisions as they concern the filing (seed 001 ch.6 art.3-4, art.7-8), as
pure functions: what SanctionDecided, RectificationAccepted and DecisionReversed do to an
institution, exactly once per decision id, in whatever order the three arrive.

Each decision has one record on the institution (its id, what it asks, when each of its
events arrived, what filing did). An event only fills in its part of the record, so a
redelivery finds its part there and changes nothing, and a later event reads what the
earlier ones left:
- SanctionDecided with suspend_filing: a standing suspension keyed on the decision id; the
  institution is suspended (if it was active) until RectificationAccepted for that decision;
  if the rectification was accepted, or the decision reversed, before it arrived, the
  suspension is recorded as begun and ended (or not applied);
- terminate_filing: the filing is terminated (the suspension, if both are asked, is moot);
- RectificationAccepted: the decision's suspension ends; the institution is active again
  when no other suspension stands;
- DecisionReversed: what the decision did is undone (its suspension lifted, its termination
  undone by reinstating), with a history entry saying why; a reversal that arrives first
  keeps the decision from being applied when it comes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.common.vocabulary import parse_date
from services.filing.domain.intake import ACTIVE, REGISTER_STATUSES, SUSPENDED
from services.filing.domain.lifecycle import EXPIRED, TERMINATED

__all__ = [
    "EFFECT_NONE", "EFFECT_SUSPEND", "EFFECT_TERMINATE", "Sanction", "StatusStep", "Outcome",
    "find_decision", "sanction_decided", "rectification_accepted", "decision_reversed",
    "effective_day", "manual_hold", "lift_manual_holds", "inspection_holds",
]

EFFECT_NONE = "INSPECTION_EFFECT_NONE"
EFFECT_SUSPEND = "INSPECTION_EFFECT_SUSPEND"
EFFECT_TERMINATE = "INSPECTION_EFFECT_TERMINATE"


@dataclass(frozen=True)
class Sanction:
    """What filing reads of a SanctionDecided."""

    decision_id: str
    case_id: str
    basis: str
    summary: str
    decided_on: str
    suspend: bool
    terminate: bool

    @property
    def effect(self) -> str:
        if self.terminate:
            return EFFECT_TERMINATE
        return EFFECT_SUSPEND if self.suspend else EFFECT_NONE


@dataclass(frozen=True)
class StatusStep:
    """One status change to make: the status, why, the event that says it, from which day."""

    status: str
    reason: str
    event_type: str
    effective_on: str


@dataclass
class Outcome:
    """What one event does: the decision's record, the standing suspensions after it, the
    status changes in order (each one history entry and one event), and whether the
    institution re-enters the register (its quota seats are claimed again)."""

    record: dict
    holds: list[dict]
    steps: list[StatusStep] = field(default_factory=list)
    changed: bool = True
    rejoins_register: bool = False
    leaves_register: bool = False


def find_decision(records: list[dict], decision_id: str) -> dict | None:
    return next((r for r in records or () if r.get("decision_id") == decision_id), None)


def _record(records, decision_id: str) -> dict:
    found = find_decision(records, decision_id)
    return dict(found) if found else {"decision_id": decision_id, "effect": EFFECT_NONE,
                                      "notes": []}


def _note(record: dict, text: str) -> None:
    record["notes"] = [*record.get("notes", []), text]


def effective_day(requested: str, history: list[dict], today: date) -> str:
    """The day a decision's change takes effect in the history: the decision's own date when
    it parses, never after today, and never before the history's last entry (so the status in
    force on any date stays the one the history says, see lifecycle.status_on)."""
    day = parse_date(requested, "date", []) or today
    day = min(day, today).isoformat()
    last = max((h.get("effective_on") or "" for h in history or ()), default="")
    return max(day, last)


def inspection_holds(holds: list[dict]) -> list[dict]:
    return [h for h in holds or () if h.get("by_inspection")]


def _lift(holds: list[dict], decision_id: str) -> tuple[list[dict], bool]:
    kept = [h for h in holds if not (h.get("by_inspection")
                                     and h.get("decision_ref") == decision_id)]
    return kept, len(kept) != len(holds)


def _reinstate_step(status: str, holds: list[dict], reason: str, day: str) -> list[StatusStep]:
    if status == SUSPENDED and not holds:
        return [StatusStep(ACTIVE, reason, "InstitutionReinstated", day)]
    return []


def sanction_decided(records: list[dict], holds: list[dict], status: str, history: list[dict],
                     sanction: Sanction, today: date) -> Outcome:
    """SanctionDecided for this institution."""
    record = _record(records, sanction.decision_id)
    holds = list(holds or [])
    if record.get("decided_on"):
        return Outcome(record, holds, changed=False)  # this decision was already applied
    record.update(case_id=sanction.case_id, basis=sanction.basis, effect=sanction.effect,
                  decided_on=sanction.decided_on or today.isoformat())
    outcome = Outcome(record, holds)
    what = f"decision {sanction.decision_id}" + (f" ({sanction.basis})" if sanction.basis else "")
    if sanction.effect == EFFECT_NONE:
        _note(record, "nothing for the filing to apply")
        return outcome
    if record.get("reversed_on"):
        _note(record, f"not applied: reversed on {record['reversed_on']} before it arrived")
        return outcome
    if status not in REGISTER_STATUSES:
        _note(record, f"not applied: the filing is {status.replace('INSTITUTION_STATUS_', '').lower()}")
        return outcome
    day = effective_day(sanction.decided_on, history, today)
    if sanction.effect == EFFECT_TERMINATE:
        outcome.steps.append(StatusStep(TERMINATED, f"filing terminated by {what}",
                                        "FilingTerminated", day))
        outcome.leaves_register = True
        _note(record, "filing terminated")
        return outcome
    holds.append({"decision_ref": sanction.decision_id, "by_inspection": True, "since": day,
                  "reason": f"suspended by {what}"
                            + (f": {sanction.summary}" if sanction.summary else "")})
    if status == ACTIVE:
        outcome.steps.append(StatusStep(SUSPENDED, holds[-1]["reason"], "InstitutionSuspended",
                                        day))
    _note(record, "evaluation suspended until the rectification is accepted")
    accepted = record.get("rectification_accepted_on")
    if accepted:  # the rectification was accepted before the decision reached filing
        holds, _ = _lift(holds, sanction.decision_id)
        later = max(day, min(accepted, today.isoformat()))
        outcome.steps += _reinstate_step(SUSPENDED if outcome.steps else status, holds,
                                         f"rectification of {what} accepted on {accepted}", later)
        _note(record, f"suspension ended: rectification accepted on {accepted}")
    outcome.holds = holds
    return outcome


def rectification_accepted(records: list[dict], holds: list[dict], status: str,
                           history: list[dict], decision_id: str, accepted_on: str,
                           today: date) -> Outcome:
    """RectificationAccepted: the decision's suspension ends."""
    record = _record(records, decision_id)
    holds = list(holds or [])
    if record.get("rectification_accepted_on"):
        return Outcome(record, holds, changed=False)
    record["rectification_accepted_on"] = accepted_on or today.isoformat()
    outcome = Outcome(record, holds)
    if not record.get("decided_on"):
        _note(record, "rectification accepted before the decision arrived")
        return outcome
    holds, lifted = _lift(holds, decision_id)
    outcome.holds = holds
    if lifted:
        day = effective_day(accepted_on, history, today)
        outcome.steps += _reinstate_step(status, holds, f"rectification of decision "
                                         f"{decision_id} accepted on {record['rectification_accepted_on']}",
                                         day)
        _note(record, "suspension ended: rectification accepted"
              + ("" if outcome.steps or status != SUSPENDED else "; another suspension stands"))
    return outcome


def decision_reversed(records: list[dict], holds: list[dict], status: str,
                      status_decision_ref: str, history: list[dict], decision_id: str,
                      review_id: str, reason: str, reversed_on: str, today: date,
                      valid_until: str) -> Outcome:
    """DecisionReversed: undo what the decision did, where it still stands."""
    record = _record(records, decision_id)
    holds = list(holds or [])
    if record.get("reversed_on"):
        return Outcome(record, holds, changed=False)
    record.update(reversed_on=reversed_on or today.isoformat(), review_id=review_id)
    outcome = Outcome(record, holds)
    why = f"decision {decision_id} reversed" + (f" on review {review_id}" if review_id else "") \
        + (f": {reason}" if reason else "")
    if not record.get("decided_on"):
        _note(record, "reversed before the decision arrived: it will not be applied")
        return outcome
    day = effective_day(reversed_on, history, today)
    holds, lifted = _lift(holds, decision_id)
    outcome.holds = holds
    if lifted:
        outcome.steps += _reinstate_step(status, holds, why, day)
        _note(record, "suspension lifted" + ("" if outcome.steps or status != SUSPENDED
                                             else "; another suspension stands"))
        return outcome
    if record.get("effect") == EFFECT_TERMINATE and status == TERMINATED \
            and status_decision_ref == decision_id:
        if valid_until < today.isoformat():
            outcome.steps.append(StatusStep(EXPIRED, f"{why}; validity ended on {valid_until}",
                                            "FilingExpired", day))
            _note(record, "termination undone; the filing had expired meanwhile")
            return outcome
        standing = inspection_holds(holds) or holds
        if standing:
            outcome.steps.append(StatusStep(
                SUSPENDED, f"{why}; still suspended by {standing[0]['decision_ref']}",
                "InstitutionSuspended", day))
        else:
            outcome.steps.append(StatusStep(ACTIVE, why, "InstitutionReinstated", day))
        outcome.rejoins_register = True
        _note(record, "termination undone")
        return outcome
    _note(record, "nothing in force to undo")
    return outcome


def manual_hold(decision_ref: str, reason: str, since: str) -> dict:
    """The regulator's own suspension (SuspendInstitution)."""
    return {"decision_ref": decision_ref, "by_inspection": False, "since": since,
            "reason": reason}


def lift_manual_holds(holds: list[dict]) -> list[dict]:
    """ReinstateInstitution lifts the regulator's own suspensions; inspection's stand until
    their rectification is accepted or they are reversed."""
    return inspection_holds(holds)
