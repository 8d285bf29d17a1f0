"""Grading's configuration, read once when the worker starts (a bad value stops it there)."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import setting_int
from services.common.workdays import WorkdayCalendar, load_calendar
from services.grading import domain


@dataclass(frozen=True)
class GradingSettings:
    calendar: WorkdayCalendar = field(default_factory=WorkdayCalendar)
    # How long a black-list entry is published from its decision (3-36 months).
    black_list_months: int = domain.BLACK_DEFAULT_MONTHS
    # Institutions scored per chunk before the worker gives its other calls their turn.
    scoring_chunk: int = 1000


def load_settings(config: dict) -> GradingSettings:
    months = setting_int(config, "GRADING_BLACK_LIST_MONTHS", domain.BLACK_DEFAULT_MONTHS,
                         minimum=domain.BLACK_MIN_MONTHS)
    if months > domain.BLACK_MAX_MONTHS:
        raise SystemExit(f"configuration error: GRADING_BLACK_LIST_MONTHS must be at most "
                         f"{domain.BLACK_MAX_MONTHS}")
    domain.default_system()  # the built-in catalogue is checked at start, not at a first call
    return GradingSettings(calendar=load_calendar(), black_list_months=months)
