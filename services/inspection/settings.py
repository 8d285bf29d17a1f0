"""Inspection's configuration: the due-process periods, the monitoring thresholds and the
complaint allowance, with the working-day calendar. Read once when the worker starts, so a
bad value stops it there rather than at the first call."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.common.config import setting_int
from services.common.workdays import WorkdayCalendar, load_calendar
from services.inspection.domain import rules


@dataclass(frozen=True)
class InspectionSettings:
    calendar: WorkdayCalendar = field(default_factory=WorkdayCalendar)
    # Working days to state one's case after the notice (ch.6 art.7-8).
    statement_days: int = rules.DEFAULT_STATEMENT_DAYS
    # Working days after the written decision to ask for review.
    review_days: int = rules.DEFAULT_REVIEW_DAYS
    # Working days to rectify after a warning when the decision names no date.
    rectification_days: int = rules.DEFAULT_RECTIFICATION_DAYS
    burst_min: int = rules.DEFAULT_BURST_MIN
    burst_factor: int = rules.DEFAULT_BURST_FACTOR
    complaints_per_hour: int = rules.DEFAULT_COMPLAINTS_PER_HOUR
    anonymous_complaints_per_hour: int = rules.DEFAULT_ANONYMOUS_COMPLAINTS_PER_HOUR


def load_settings(config: dict) -> InspectionSettings:
    return InspectionSettings(
        calendar=load_calendar(),
        statement_days=setting_int(config, "INSPECTION_STATEMENT_DAYS",
                                   rules.DEFAULT_STATEMENT_DAYS, minimum=1),
        review_days=setting_int(config, "INSPECTION_REVIEW_DAYS", rules.DEFAULT_REVIEW_DAYS,
                                minimum=1),
        rectification_days=setting_int(config, "INSPECTION_RECTIFICATION_DAYS",
                                       rules.DEFAULT_RECTIFICATION_DAYS, minimum=1),
        burst_min=setting_int(config, "INSPECTION_BURST_MIN", rules.DEFAULT_BURST_MIN,
                              minimum=1),
        burst_factor=setting_int(config, "INSPECTION_BURST_FACTOR", rules.DEFAULT_BURST_FACTOR,
                                 minimum=1),
        complaints_per_hour=setting_int(config, "INSPECTION_COMPLAINTS_PER_HOUR",
                                        rules.DEFAULT_COMPLAINTS_PER_HOUR, minimum=1),
        anonymous_complaints_per_hour=setting_int(
            config, "INSPECTION_ANONYMOUS_COMPLAINTS_PER_HOUR",
            rules.DEFAULT_ANONYMOUS_COMPLAINTS_PER_HOUR, minimum=1))
