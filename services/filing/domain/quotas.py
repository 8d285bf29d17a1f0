"""Quotas as the register fills them (ch.6 art.5; ch.2 art.8): seats, excesses, city-wide
allocation, as pure functions.

Reading of "at most 3 per occupation in the city districts, 2 per county": each quota area
(the city districts together; each county or county-level city) has `limit` seats per
occupation, numbered 1..limit. An institution on the register (active or suspended) holds one
seat per occupation of its scope, in the area that occupation counts in: its own, or the one
it serves by city-wide allocation (全市调配). The seat is a token "<area>|<occupation>|<n>"
kept in the institution's own document under a unique index (services/filing/models.py).
Two changes racing for the last seat write the same token: the database accepts one write
and refuses the other, which then finds every seat held. No transaction over two documents
is needed, and an area never has more seat holders than its limit.

An application that would need a seat none is free for is refused (quota_blockers). A change
that brings a filed institution into an area whose seats are held (an address change, a
termination undone, a renewal after expiry, a lowered quota) is not refused: the institution
is there. It is recorded as an excess, a violation the regulator decides on: keep with a
reason, or reduce the scope by the occupation. So every institution evaluating an occupation
in an area is either a seat holder or has a recorded excess.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.filing.domain.lifecycle import quota_area

__all__ = [
    "EXCESS_AWAITING", "EXCESS_KEPT", "EXCESS_REDUCED", "EXCESS_ENDED", "STANDING_EXCESS",
    "QUOTA_KEEP", "QUOTA_REDUCE", "QUOTA_VIOLATION", "occupation_area", "area_words",
    "seat_needs", "seat_token", "seat_of", "seat_candidates", "SeatPlan", "plan_seats",
    "check_allocation", "allocation_blockers", "standing_excess", "ExcessChange",
    "settle_excess", "excess_violation", "decide_excess", "parse_excess_decision",
    "ExcessDecision", "seats_settled",
]

EXCESS_AWAITING = "QUOTA_EXCESS_STATE_AWAITING_DECISION"
EXCESS_KEPT = "QUOTA_EXCESS_STATE_KEPT"
EXCESS_REDUCED = "QUOTA_EXCESS_STATE_SCOPE_REDUCED"
EXCESS_ENDED = "QUOTA_EXCESS_STATE_ENDED"
# An excess that stands: the institution evaluates the occupation there beyond the quota.
STANDING_EXCESS = (EXCESS_AWAITING, EXCESS_KEPT)
QUOTA_KEEP = "QUOTA_EXCESS_OUTCOME_KEEP"
QUOTA_REDUCE = "QUOTA_EXCESS_OUTCOME_REDUCE_SCOPE"
QUOTA_VIOLATION = "QUOTA_EXCEEDED"


def occupation_area(item: dict, district_code: str, areas: dict) -> str:
    """The quota area one occupation of a scope counts in: the area it serves by city-wide
    allocation, else the institution's own."""
    return quota_area(item.get("serves_district_code") or district_code, areas)


def area_words(area: str) -> str:
    return "the city districts" if area == "district" else f"county {area.split(':', 1)[1]}"


def seat_needs(scope: Iterable[dict], district_code: str, areas: dict) -> list[tuple[str, str]]:
    """(area, occupation) of each seat the scope needs, sorted."""
    return sorted({(occupation_area(item, district_code, areas), item["occupation_code"])
                   for item in scope})


def seat_token(area: str, occupation_code: str, n: int) -> str:
    return f"{area}|{occupation_code}|{n}"


def seat_of(token: str) -> tuple[str, str, int]:
    area, code, n = token.rsplit("|", 2)
    return area, code, int(n)


def seat_candidates(needs: Iterable[tuple[str, str]], limit_of: Callable[[str], int]) -> list[str]:
    """Every seat token the needs could take (to ask who holds them)."""
    return [seat_token(area, code, n) for area, code in needs for n in range(1, limit_of(area) + 1)]


@dataclass(frozen=True)
class SeatPlan:
    seats: list[str]                 # the tokens the institution holds after the change
    lacking: list[tuple[str, str]]   # (area, occupation) where every seat is held by others


def plan_seats(needs: Iterable[tuple[str, str]], held: Iterable[str], taken: Iterable[str],
               limit_of: Callable[[str], int]) -> SeatPlan:
    """The seats an institution holds for `needs`: those it holds already (within the limit),
    else the lowest number nobody else holds. `taken`: the tokens other institutions hold."""
    mine = {}
    for token in held or ():
        area, code, n = seat_of(token)
        mine.setdefault((area, code), []).append(n)
    busy: dict[tuple[str, str], set[int]] = {}
    for token in taken:
        area, code, n = seat_of(token)
        busy.setdefault((area, code), set()).add(n)
    seats, lacking = [], []
    for area, code in needs:
        limit = limit_of(area)
        own = [n for n in mine.get((area, code), []) if n <= limit]
        if own:
            seats.append(seat_token(area, code, min(own)))
            continue
        free = next((n for n in range(1, limit + 1) if n not in busy.get((area, code), set())),
                    None)
        if free is None:
            lacking.append((area, code))
        else:
            seats.append(seat_token(area, code, free))
    return SeatPlan(sorted(seats), sorted(lacking))


# --- city-wide allocation (全市调配, ch.6 art.5) --------------------------------------------
def check_allocation(scope: list[dict], district_code: str, areas: dict, errors: list,
                     path: str = "scope") -> None:
    """An occupation may serve another quota area than the institution's own; never its own."""
    for i, item in enumerate(scope):
        serves = item.get("serves_district_code") or ""
        if not serves:
            continue
        where = f"{path}[{i}].serves_district_code"
        if serves not in areas:
            errors.append(f"{where}: {serves} is not a district or county of this city")
        elif district_code in areas and quota_area(serves, areas) == quota_area(district_code,
                                                                                 areas):
            errors.append(f"{where}: {serves} is in the institution's own quota area; "
                          "leave it empty")


def allocation_blockers(allocated: Iterable[tuple[str, str]], filed: dict) -> list[str]:
    """City-wide allocation fills an area that has no institution for the occupation: once
    one evaluates it there, another allocation is refused. `filed[(area, code)]`: the
    institutions evaluating it there, the applicant not counted."""
    blockers = []
    for area, code in allocated:
        count = filed.get((area, code), 0)
        if count:
            blockers.append(f"allocation: occupation {code} already has {count} institutions in "
                            f"{area_words(area)}; city-wide allocation (全市调配) serves an area "
                            "with none (ch.6 art.5)")
    return blockers


# --- excesses ----------------------------------------------------------------------------
def standing_excess(excess: Iterable[dict]) -> dict[tuple[str, str], dict]:
    return {(e["area"], e["occupation_code"]): e for e in excess or ()
            if e.get("state") in STANDING_EXCESS}


@dataclass(frozen=True)
class ExcessChange:
    excess: list[dict]                 # the institution's excess records after the change
    recorded: list[dict]               # new ones (each a QuotaExceeded)
    ended: list[tuple[dict, str]]      # (record, reason) of those that ended


def settle_excess(excess: list[dict], needs: Iterable[tuple[str, str]],
                  lacking: Iterable[tuple[str, str]], counts: dict, limit_of, cause: str,
                  ref: str, today: date, new_id: Callable[[], str],
                  gone_reason: str = "") -> ExcessChange:
    """The excess records after a change of seats. Each (area, occupation) the institution
    lacks a seat for has a standing record (a new one awaits a decision); a standing record
    whose seat is now held, or whose occupation is no longer evaluated there, ends.
    `counts[(area, code)]`: institutions evaluating it there, this one included."""
    needs, lacking = set(needs), set(lacking)
    standing = standing_excess(excess)
    day = today.isoformat()
    records = [dict(e) for e in excess or ()]
    ended = []
    for record in records:
        key = (record["area"], record["occupation_code"])
        if record.get("state") not in STANDING_EXCESS or key in lacking:
            continue
        reason = gone_reason or ("a seat became free" if key in needs
                                 else f"no longer evaluated in {area_words(key[0])}")
        record.update(state=EXCESS_ENDED, ended_on=day, end_reason=reason)
        ended.append((record, reason))
    recorded = []
    for area, code in sorted(lacking - set(standing)):
        record = {"excess_id": new_id(), "occupation_code": code, "area": area,
                  "limit": limit_of(area), "count": counts.get((area, code), 0),
                  "cause": cause, "recorded_on": day, "ref": ref, "state": EXCESS_AWAITING}
        records.append(record)
        recorded.append(record)
    return ExcessChange(records, recorded, ended)


def seats_settled(seats: list[str], needs: Iterable[tuple[str, str]], excess: list[dict],
                  limit_of) -> bool:
    """Nothing to do: a seat within the limit for each need, no other seat, and a standing
    excess exactly where a seat is lacking."""
    held = {}
    for token in seats or ():
        area, code, n = seat_of(token)
        held[(area, code)] = n
    needs = set(needs)
    if set(held) - needs or any(n > limit_of(area) for (area, _), n in held.items()):
        return False
    return set(standing_excess(excess)) == needs - set(held)


def excess_violation(record: dict) -> dict:
    """The violation an excess is recorded as (with the change that caused it)."""
    return {"kind": QUOTA_VIOLATION, "recorded_on": record["recorded_on"],
            "ref": record["excess_id"],
            "description": (f"occupation {record['occupation_code']} in "
                            f"{area_words(record['area'])}: {record['count']} institutions for "
                            f"at most {record['limit']} after {record['cause']} (seed 001 ch.2 "
                            "art.8: a change is examined under the same conditions; ch.6 "
                            "art.5); awaiting the regulator's decision")}


@dataclass(frozen=True)
class ExcessDecision:
    institution_id: str
    excess_id: str
    keep: bool
    reason: str
    decision_ref: str


def parse_excess_decision(request: dict, decision_text) -> ExcessDecision:
    errors: list[str] = []
    values = {}
    for key in ("institution_id", "excess_id"):
        value = request.get(key)
        values[key] = value.strip() if isinstance(value, str) else ""
        if not values[key]:
            errors.append(f"{key}: required")
    outcome = request.get("outcome") or "QUOTA_EXCESS_OUTCOME_UNSPECIFIED"
    if outcome not in (QUOTA_KEEP, QUOTA_REDUCE):
        errors.append(f"outcome: must be {QUOTA_KEEP} or {QUOTA_REDUCE}")
    reason, ref = decision_text(request, errors)
    if errors:
        raise InvalidArgument(errors)
    return ExcessDecision(values["institution_id"], values["excess_id"], outcome == QUOTA_KEEP,
                          reason, ref)


def decide_excess(excess: list[dict], decision: ExcessDecision, today: date) -> tuple[list[dict],
                                                                                      dict]:
    """(the records with this one decided, the decided record). Only an excess awaiting a
    decision is decided; one already decided or ended is refused."""
    records = [dict(e) for e in excess or ()]
    record = next((e for e in records if e.get("excess_id") == decision.excess_id), None)
    if record is None:
        raise NotFound(f"quota excess {decision.excess_id} not found for "
                       f"{decision.institution_id}")
    if record.get("state") != EXCESS_AWAITING:
        state = record.get("state", "").replace("QUOTA_EXCESS_STATE_", "").lower()
        raise FailedPrecondition(f"quota excess {decision.excess_id} is {state.replace('_', ' ')}:"
                                 " only one awaiting a decision is decided")
    record.update(state=EXCESS_KEPT if decision.keep else EXCESS_REDUCED,
                  decided_on=today.isoformat(), decision_reason=decision.reason,
                  decision_ref=decision.decision_ref)
    return records, record
