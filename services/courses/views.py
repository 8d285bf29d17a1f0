"""Documents as the proto messages' dicts (proto field names), fields at their default left
out as proto3 would."""
from __future__ import annotations

from services.courses.domain import checks, learning


def prune(value):
    """drop_empty, all the way down."""
    if isinstance(value, dict):
        cleaned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items()
                if v is not None and not (v in ("", [], {}) or v is False or (
                    isinstance(v, int | float) and not isinstance(v, bool) and v == 0))}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def course_view(course) -> dict:
    return prune({
        "course_id": course.course_id, "provider_id": course.provider_id,
        "state": course.state, "content": dict(course.content or {}),
        "content_hash": course.content_hash, "findings": list(course.findings or []),
        "reviews": list(course.reviews or []), "conflicts": list(course.conflicts or []),
        "submitted_on": course.submitted_on, "delisted_by": course.delisted_by,
    })


def summary_view(course) -> dict:
    return prune({
        "course_id": course.course_id, "provider_id": course.provider_id,
        "title": course.title, "state": course.state, "class_hours": course.class_hours,
        "question_count": course.question_count,
        "findings_count": len(course.findings or []), "submitted_on": course.submitted_on,
    })


def check_view(findings: list[dict], content_hash: str, resolved=frozenset()) -> dict:
    return prune({"findings": findings, "content_hash": content_hash,
                  "error_count": checks.error_count(findings, resolved)})


def provider_view(provider_id: str, provider, courses) -> dict:
    from services.courses.domain import lifecycle

    sanctions = list(provider.sanctions or []) if provider else []
    return prune({"provider_id": provider_id,
                  "standing": lifecycle.provider_standing(sanctions),
                  "issues": list(provider.issues or []) if provider else [],
                  "sanctions": sanctions,
                  "courses": [summary_view(c) for c in courses]})


def learning_view(record) -> dict:
    first = record.first_attempt or {}
    return prune({
        "trainee_ref": record.trainee_ref, "course_id": record.course_id,
        "employer_id": record.employer_id, "credited_minutes": record.credited_minutes,
        "zeroed_minutes": record.zeroed_minutes, "attempts": record.attempts,
        "first_attempt_recorded": bool(first), "first_attempt_passed": first.get("passed"),
        "case_ids": list(record.case_ids or []),
    })


def case_view(case) -> dict:
    return prune({
        "case_id": case.case_id, "state": case.state, "course_id": case.course_id,
        "provider_id": case.provider_id, "employer_id": case.employer_id,
        "trainee_ref": case.trainee_ref, "flags": list(case.flags or []),
        "opened_on": case.opened_on, "decided_on": case.decided_on,
        "minutes_zeroed": case.minutes_zeroed,
        "repeat_after_rectification": case.repeat_after_rectification, "note": case.note,
    })


def employer_view(employer_id: str, employer, cases) -> dict:
    standing = employer.standing if employer else learning.GOOD
    due = bool(employer) and learning.rectification_due(standing,
                                                        employer.rectified_since_last_case)
    return prune({
        "employer_id": employer_id, "standing": standing,
        "subsidy_eligible": standing != learning.SUBSIDY_REVOKED,
        "interview_required": due, "rectification_required": due, "pledge_required": due,
        "cases": [case_view(c) for c in cases],
        "rectifications": list(employer.rectifications or []) if employer else [],
        "revoked_by_case_id": employer.revoked_by_case_id if employer else None,
    })


def score_view(row: dict, prior_mean: float, prior_weight: int, rank: int = 0) -> dict:
    low, high = learning.mean_interval(row["total"], row["squares"], row["count"])
    return prune({
        "course_id": row["course_id"], "title": row.get("title"),
        "provider_id": row.get("provider_id"),
        "score": round(learning.shrunk(prior_mean, prior_weight, row["total"], row["count"]), 4),
        "mean": round(row["total"] / row["count"], 4) if row["count"] else None,
        "ratings": row["count"], "interval_low": round(low, 4), "interval_high": round(high, 4),
        "rank": rank,
    })
