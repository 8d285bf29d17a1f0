"""Trainees' learning, cheating and employers' standing; the live item statistics of question
banks; course ratings and their ranking.

Sources: seed 004 二(二) (no proxy learning or exams, no evasion of face recognition or
interaction checks), 四(二) (confirmed cheating: the trainee's hours zeroed, the employer
interviewed, rectifying with a written report and signing the quality pledge; an employer
with cheating staff again after rectification gets no training subsidy), 二(一)2(5) (a
first-attempt pass rate of 80 % or more: too easy), 四(三) (learners rate courses; the best
are published).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT, parse_date

FLAGS = ("PROCTORING_FLAG_PROXY_LEARNING", "PROCTORING_FLAG_PROXY_EXAM",
         "PROCTORING_FLAG_FACE_RECOGNITION_EVADED", "PROCTORING_FLAG_INTERACTION_CHECK_EVADED")
MAX_SESSION_MINUTES = 1440
MAX_ATTEMPT_NUMBER = 100

CASE_OPEN, CASE_CONFIRMED, CASE_DISMISSED = ("CASE_STATE_OPEN", "CASE_STATE_CONFIRMED",
                                             "CASE_STATE_DISMISSED")

GOOD = "EMPLOYER_STANDING_GOOD"
RECTIFICATION_REQUIRED = "EMPLOYER_STANDING_RECTIFICATION_REQUIRED"
RECTIFIED = "EMPLOYER_STANDING_RECTIFIED"
SUBSIDY_REVOKED = "EMPLOYER_STANDING_SUBSIDY_REVOKED"

# 二(一)2(5): "首次考试通过率超过80%(含)": 80 % or more is too easy.
TOO_EASY_PASS_PERCENT = 80
# Ratings: 1-5 stars; the 90 % interval of a course's mean.
MIN_STARS, MAX_STARS = 1, 5
INTERVAL_LEVEL = 0.90
DEFAULT_PRIOR_WEIGHT = 5


def _ref(value, path: str, errors: list) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not CLIENT_ID.match(text):
        errors.append(f"{path}: required, {CLIENT_ID_HINT}")
    return text


@dataclass(frozen=True)
class Session:
    trainee_ref: str
    course_id: str
    employer_id: str
    minutes: int
    attempts: list[dict]
    flags: list[str]
    session_on: str


def parse_session(request: dict, today) -> Session:
    errors: list[str] = []
    trainee = _ref(request.get("trainee_ref"), "trainee_ref", errors)
    course_id = _ref(request.get("course_id"), "course_id", errors)
    employer = _ref(request.get("employer_id"), "employer_id", errors)
    minutes = request.get("minutes") or 0
    if not isinstance(minutes, int) or not 0 <= minutes <= MAX_SESSION_MINUTES:
        errors.append(f"minutes: 0-{MAX_SESSION_MINUTES}")
    on = parse_date(request.get("session_on"), "session_on", errors)
    if on is not None and on > today:
        errors.append(f"session_on: {on} is in the future")
    attempts, numbers = [], set()
    for i, a in enumerate(request.get("attempts") or []):
        number = a.get("attempt_number") or 0
        if not isinstance(number, int) or not 1 <= number <= MAX_ATTEMPT_NUMBER:
            errors.append(f"attempts[{i}].attempt_number: 1-{MAX_ATTEMPT_NUMBER}")
        elif number in numbers:
            errors.append(f"attempts[{i}].attempt_number: {number} is given twice")
        numbers.add(number)
        taken = parse_date(a.get("taken_on"), f"attempts[{i}].taken_on", errors)
        if taken is not None and taken > today:
            errors.append(f"attempts[{i}].taken_on: {taken} is in the future")
        responses, seen = [], set()
        for j, r in enumerate(a.get("responses") or []):
            qid = _ref(r.get("question_id"), f"attempts[{i}].responses[{j}].question_id", errors)
            if qid in seen:
                errors.append(f"attempts[{i}].responses[{j}].question_id: {qid} twice")
            seen.add(qid)
            responses.append({"question_id": qid, "correct": bool(r.get("correct"))})
        attempts.append({"attempt_number": number, "passed": bool(a.get("passed")),
                         "taken_on": taken.isoformat() if taken else "", "responses": responses})
    flags = list(request.get("flags") or [])
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            errors.append(f"flags[{i}]: one of {', '.join(FLAGS)}")
    if errors:
        raise InvalidArgument(errors)
    return Session(trainee, course_id, employer, minutes, sorted(
        attempts, key=lambda a: a["attempt_number"]), sorted(set(flags)), on.isoformat())


# --- employers' standing --------------------------------------------------------------------
@dataclass(frozen=True)
class Confirmation:
    standing: str
    repeat_after_rectification: bool
    subsidy_revoked: bool


def confirm(standing: str, rectified_before: bool) -> Confirmation:
    """The employer's standing after one more confirmed case. Cheating again after an
    accepted rectification costs the subsidy (四(二) "经整改后再次出现舞弊职工"); cheating
    again before the rectification was accepted is part of the same rectification."""
    if standing == SUBSIDY_REVOKED:
        return Confirmation(SUBSIDY_REVOKED, True, False)
    if rectified_before:
        return Confirmation(SUBSIDY_REVOKED, True, True)
    return Confirmation(RECTIFICATION_REQUIRED, False, False)


def rectification_due(standing: str, rectified_since_last_case: bool) -> bool:
    return standing == RECTIFICATION_REQUIRED or (
        standing == SUBSIDY_REVOKED and not rectified_since_last_case)


def standing_after_rectification(standing: str) -> str:
    return SUBSIDY_REVOKED if standing == SUBSIDY_REVOKED else RECTIFIED


# --- item statistics (kept as running sums, never recomputed from all attempts) ---------------
def first_attempt_increments(responses: list[dict]) -> dict[str, dict[str, int]]:
    """Per question, what one first attempt adds to its sums: n, x (correct), y (the rest
    of the attempt's correct answers), y², x·y. The discrimination index is the corrected
    item-total (point-biserial) correlation, computable from these sums alone."""
    total = sum(1 for r in responses if r["correct"])
    out = {}
    for r in responses:
        x = 1 if r["correct"] else 0
        y = total - x
        out[r["question_id"]] = {"n": 1, "x": x, "y": y, "yy": y * y, "xy": x * y}
    return out


def facility(sums: dict) -> float:
    n = sums.get("n", 0)
    return sums.get("x", 0) / n if n else 0.0


def discrimination(sums: dict) -> float:
    n, sx, sy = sums.get("n", 0), sums.get("x", 0), sums.get("y", 0)
    syy, sxy = sums.get("yy", 0), sums.get("xy", 0)
    var_x = n * sx - sx * sx          # x is 0/1, so Σx² = Σx
    var_y = n * syy - sy * sy
    if n < 2 or var_x <= 0 or var_y <= 0:
        return 0.0
    return (n * sxy - sx * sy) / math.sqrt(var_x * var_y)


def pass_rate(first_attempts: int, passed: int) -> float:
    return passed / first_attempts if first_attempts else 0.0


def too_easy(first_attempts: int, passed: int, minimum: int) -> bool:
    return first_attempts >= max(1, minimum) and passed * 100 >= TOO_EASY_PASS_PERCENT * first_attempts


# --- ratings ----------------------------------------------------------------------------------
def check_stars(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_STARS <= value <= MAX_STARS:
        raise InvalidArgument(f"stars: required, {MIN_STARS}-{MAX_STARS}")
    return value


def shrunk(prior_mean: float, prior_weight: int, total: float, count: int) -> float:
    """The Bayesian average: the course's ratings pulled towards the mean of all courses as if
    it had `prior_weight` more ratings at that mean. An unrated course has no score at all
    (it is not ranked), never zero."""
    return (prior_weight * prior_mean + total) / (prior_weight + count)


def mean_interval(total: float, squares: float, count: int) -> tuple[float, float]:
    """The 90 % interval of the mean (Student's t), kept within 1-5 stars; one rating (or none
    with variance) says only that the mean lies somewhere on the scale."""
    if count < 2:
        return float(MIN_STARS), float(MAX_STARS)
    from scipy.stats import t

    mean = total / count
    variance = max(0.0, (squares - count * mean * mean) / (count - 1))
    half = float(t.ppf(0.5 + INTERVAL_LEVEL / 2, count - 1)) * math.sqrt(variance / count)
    return max(float(MIN_STARS), mean - half), min(float(MAX_STARS), mean + half)
