"""Scoring a year's institutions, vectorised: one row per institution, one column per leaf of
the version, integers throughout (centipoints), so 89.99 is 8999 and never 89.98999.

The rules (seed 000 "量化记分和综合评定"; the numbers are the version's data):
- a leaf scores by its rule: POINTS the points awarded (0..max); DEDUCTION the maximum less
  `per_occurrence` for each occurrence, never below the floor; RATE the rate (basis points,
  0..10000) times the maximum, rounded half up to a centipoint;
- a leaf nobody declared, reviewed or computed (source NONE) scores 0;
- the total is the sum; the band is A >= a, B >= b, C >= c, D below (Thresholds.band);
- the overall judgement (综合评定) replaces the band when the reviewer set one, with its
  written reason; a direct-D offence sets D over both; an institution filed less than the
  whole year is UNGRADED, over everything (never D).

Explanations, for every row at once: points lost per leaf; the top four reasons (leaves that
were actually scored and lost points, largest loss first, ties in the version's order); and
the smallest set of leaves whose full points would reach the next band (the largest losses
first: no smaller set can close the gap), only where the band decided the grade.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.grading.domain.indicators import MAX_OCCURRENCES, MAX_RATE_BP, IndicatorSystem

__all__ = [
    "GRADE_A", "GRADE_B", "GRADE_C", "GRADE_D", "UNGRADED", "GRADE_NAMES", "GRADE_BY_NAME",
    "SOURCE_NONE", "SOURCE_DECLARED", "SOURCE_REVIEWED", "SOURCE_PLATFORM", "SOURCE_APPEAL",
    "SOURCE_NAMES", "TOP_REASONS", "Scored", "score", "assemble", "apply_facts",
]

# The proto Grade numbers.
GRADE_A, GRADE_B, GRADE_C, GRADE_D, UNGRADED = 1, 2, 3, 4, 5
GRADE_NAMES = {GRADE_A: "GRADE_A", GRADE_B: "GRADE_B", GRADE_C: "GRADE_C", GRADE_D: "GRADE_D",
               UNGRADED: "GRADE_UNGRADED"}
GRADE_BY_NAME = {v: k for k, v in GRADE_NAMES.items()}
# The proto ValueSource numbers.
SOURCE_NONE, SOURCE_DECLARED, SOURCE_REVIEWED, SOURCE_PLATFORM, SOURCE_APPEAL = 1, 2, 3, 4, 5
SOURCE_NAMES = {SOURCE_NONE: "VALUE_SOURCE_NONE", SOURCE_DECLARED: "VALUE_SOURCE_DECLARED",
                SOURCE_REVIEWED: "VALUE_SOURCE_REVIEWED", SOURCE_PLATFORM: "VALUE_SOURCE_PLATFORM",
                SOURCE_APPEAL: "VALUE_SOURCE_APPEAL"}
TOP_REASONS = 4


@dataclass
class Scored:
    """The scoring of N institutions (rows) over L leaves (columns)."""

    scores: np.ndarray        # N x L, centipoints
    lost: np.ndarray          # N x L
    totals: np.ndarray        # N
    banded: np.ndarray        # N, the grade of the points alone
    grades: np.ndarray        # N, after override, direct D and UNGRADED
    top: np.ndarray           # N x 4, leaf columns, -1 where fewer reasons
    next_grade: np.ndarray    # N, the next band up (0: none applies)
    gap: np.ndarray           # N, centipoints to the next band (0: none applies)
    what_if_order: np.ndarray  # N x L, leaf columns by loss, largest first
    what_if_count: np.ndarray  # N, how many of that order reach the next band (0: none)

    def what_if(self, row: int) -> list[int]:
        return [int(c) for c in self.what_if_order[row, :self.what_if_count[row]]]

    def reasons(self, row: int) -> list[int]:
        return [int(c) for c in self.top[row] if c >= 0]


def score(system: IndicatorSystem, values: np.ndarray, sources: np.ndarray,
          override: np.ndarray | None = None, direct_d: np.ndarray | None = None,
          ungraded: np.ndarray | None = None) -> Scored:
    """Score N rows. values/sources: N x L integers (the value of each leaf by its rule, and
    where it came from); override: N grades (0 none); direct_d, ungraded: N booleans."""
    values = np.asarray(values, dtype=np.int64)
    sources = np.asarray(sources, dtype=np.int64)
    n = values.shape[0]
    mx, kinds, per, floor = system.max, system.kinds, system.per, system.floor

    points = np.clip(values, 0, mx)
    deducted = np.maximum(floor, mx - per * np.clip(values, 0, MAX_OCCURRENCES))
    rated = (mx * np.clip(values, 0, MAX_RATE_BP) + MAX_RATE_BP // 2) // MAX_RATE_BP
    scores = np.where(kinds == 1, points, np.where(kinds == 2, deducted, rated))
    scores = np.where(sources == SOURCE_NONE, 0, scores)
    totals = scores.sum(axis=1)
    lost = mx - scores

    t = system.thresholds
    banded = 1 + (totals < t.a) + (totals < t.b) + (totals < t.c)
    grades = banded.copy()
    decided_by_band = np.ones(n, dtype=bool)
    if override is not None:
        override = np.asarray(override, dtype=np.int64)
        chosen = override > 0
        grades = np.where(chosen, override, grades)
        decided_by_band &= ~chosen
    if direct_d is not None:
        direct_d = np.asarray(direct_d, dtype=bool)
        grades = np.where(direct_d, GRADE_D, grades)
        decided_by_band &= ~direct_d
    if ungraded is not None:
        ungraded = np.asarray(ungraded, dtype=bool)
        grades = np.where(ungraded, UNGRADED, grades)
        decided_by_band &= ~ungraded

    # The top reasons: scored leaves that lost points, largest loss first (stable: ties keep
    # the version's order).
    key = np.where((sources != SOURCE_NONE) & (lost > 0), lost, -1)
    order = np.argsort(-key, axis=1, kind="stable")[:, :TOP_REASONS]
    top = np.where(np.take_along_axis(key, order, axis=1) > 0, order, -1)

    # The next band up and the fewest leaves whose full points reach it.
    bars = np.array([0, 0, t.a, t.b, t.c], dtype=np.int64)  # by band: B needs a, C b, D c
    has_next = decided_by_band & (banded > GRADE_A)
    next_grade = np.where(has_next, banded - 1, 0)
    gap = np.where(has_next, bars[np.minimum(banded, 4)] - totals, 0)
    what_if_order = np.argsort(-lost, axis=1, kind="stable")
    reached = np.cumsum(np.take_along_axis(lost, what_if_order, axis=1), axis=1) >= gap[:, None]
    what_if_count = np.where(has_next, np.argmax(reached, axis=1) + 1, 0)
    return Scored(scores, lost, totals, banded, grades, top, next_grade, gap, what_if_order,
                  what_if_count)


# --- the inputs of a row ------------------------------------------------------------------------
def assemble(system: IndicatorSystem, declared, reviewed) -> tuple[np.ndarray, np.ndarray]:
    """N x L values and sources from the declared and reviewed values (-1: none): a reviewed
    value wins over a declared one; a leaf computed from platform data with neither is
    computed (0 occurrences until a fact says otherwise)."""
    declared = np.asarray(declared, dtype=np.int64)
    reviewed = np.asarray(reviewed, dtype=np.int64)
    sources = np.where(reviewed >= 0, SOURCE_REVIEWED,
                       np.where(declared >= 0, SOURCE_DECLARED, SOURCE_NONE))
    values = np.where(reviewed >= 0, reviewed, np.maximum(declared, 0))
    platform = np.array([bool(leaf.platform_source) for leaf in system.leaves])
    sources = np.where(platform & (sources == SOURCE_NONE), SOURCE_PLATFORM, sources)
    return values, sources


def apply_facts(system: IndicatorSystem, values, sources, facts: list[dict],
                fixed: dict | None = None) -> dict[str, list[str]]:
    """Platform facts override declared and reviewed values, in place on one row: a leaf
    computed from a fact kind counts the year's facts of that kind as its occurrences, with
    their event ids (returned by leaf id). `fixed`: leaf column -> value an appeal decided
    (it stands over the facts)."""
    refs: dict[str, list[str]] = {}
    by_kind: dict[str, list[dict]] = {}
    for fact in facts:
        by_kind.setdefault(fact.get("kind"), []).append(fact)
    for kind, columns in system.platform_columns().items():
        found = by_kind.get(kind) or []
        if not found:
            continue
        for column in columns:
            values[column] = len(found)
            sources[column] = SOURCE_PLATFORM
            refs[system.leaves[column].id] = [f.get("event_id") or "" for f in found]
    for column, value in (fixed or {}).items():
        values[column] = value
        sources[column] = SOURCE_APPEAL
        refs.pop(system.leaves[column].id, None)
    return refs
