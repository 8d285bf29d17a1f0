"""The course review's configuration, read once when the worker starts (a bad value stops it
there). The defaults, and why: see the README's courses section."""
from __future__ import annotations

from dataclasses import dataclass

from services.common.config import setting, setting_int
from services.courses.domain import learning

# The share of a new course's text found in one stored course from which it is reported as
# reused (a quarter: more than quotations or boilerplate, less than a copied chapter).
DEFAULT_REUSE_THRESHOLD = 0.25
# A permanently rejected course counts as repackaged when at least this share of the new
# course's resources are its resources (by media or text hash), or its text holds at least
# this share of the new course.
DEFAULT_REPACKAGE_SHARE = 0.5


@dataclass(frozen=True)
class CoursesSettings:
    reuse_threshold: float = DEFAULT_REUSE_THRESHOLD
    repackage_share: float = DEFAULT_REPACKAGE_SHARE
    # The ranking's prior: as if every course had this many more ratings at the mean of all.
    prior_weight: int = learning.DEFAULT_PRIOR_WEIGHT
    # First attempts before a bank may be flagged too easy (the seed names no minimum).
    too_easy_min_attempts: int = 1


def _share(key: str, raw, default: float) -> float:
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SystemExit(f"configuration error: {key}={raw!r} is not a number") from None
    if not 0.05 <= value <= 1.0:
        raise SystemExit(f"configuration error: {key} must be 0.05-1")
    return value


def load_settings(config: dict) -> CoursesSettings:
    return CoursesSettings(
        reuse_threshold=_share("COURSES_REUSE_THRESHOLD",
                               setting(config, "COURSES_REUSE_THRESHOLD"),
                               DEFAULT_REUSE_THRESHOLD),
        repackage_share=_share("COURSES_REPACKAGE_SHARE",
                               setting(config, "COURSES_REPACKAGE_SHARE"),
                               DEFAULT_REPACKAGE_SHARE),
        prior_weight=setting_int(config, "COURSES_RATING_PRIOR_WEIGHT",
                                 learning.DEFAULT_PRIOR_WEIGHT, minimum=0),
        too_easy_min_attempts=setting_int(config, "COURSES_TOO_EASY_MIN_ATTEMPTS", 1, minimum=1))
