"""The report's configuration.

REPORTING_SCHEDULES: per-year schedules as JSON (inline, starting with "{", or a file path):
  {"2026": {"start": "2026-07-01", "final_due": "2026-11-30", "interval_days": 14,
            "due_working_days": 2}}
Any key left out takes its default (domain/schedule.py); a year not listed takes them all.
REPORTING_ACTION_YEARS: the years the action runs, e.g. "2026,2027", whose periods the sweep
watches for overdue editions (the gauge and EditionOverdue). Unset: the years listed in
REPORTING_SCHEDULES, or, with none, the current year (so the action year's periods are
watched, and no year without an action raises alerts).
The working-day calendar is services/common/workdays.py's (VOCREG_CALENDAR_OVERRIDES).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

from services.common.config import setting
from services.common.workdays import WorkdayCalendar, load_calendar
from services.reporting.domain.schedule import YearSchedule

ENV = "REPORTING_SCHEDULES"
YEARS_ENV = "REPORTING_ACTION_YEARS"


@dataclass(frozen=True)
class ReportingSettings:
    schedules: dict[int, YearSchedule] = field(default_factory=dict)
    calendar: WorkdayCalendar = field(default_factory=WorkdayCalendar)
    years: tuple[int, ...] = ()

    def action_years(self, today: date) -> list[int]:
        """The years whose periods are watched as of `today` (none in the future)."""
        years = self.years or tuple(self.schedules) or (today.year,)
        return sorted(y for y in set(years) if y <= today.year)

    def schedule(self, year: int) -> YearSchedule:
        return self.schedules.get(year) or YearSchedule.default(year)


def parse_schedules(data: dict) -> dict[int, YearSchedule]:
    if not isinstance(data, dict):
        raise ValueError("must be an object of years")
    found = {}
    for year_text, values in data.items():
        year = int(year_text)
        default = YearSchedule.default(year)
        if not isinstance(values, dict):
            raise ValueError(f"{year}: must be an object")
        unknown = set(values) - {"start", "final_due", "interval_days", "due_working_days"}
        if unknown:
            raise ValueError(f"{year}: unknown keys {sorted(unknown)}")
        schedule = YearSchedule(
            year,
            date.fromisoformat(values["start"]) if "start" in values else default.start,
            date.fromisoformat(values["final_due"]) if "final_due" in values
            else default.final_due,
            int(values.get("interval_days", default.interval_days)),
            int(values.get("due_working_days", default.due_working_days)))
        problems = schedule.problems()
        if problems:
            raise ValueError(f"{year}: {'; '.join(problems)}")
        found[year] = schedule
    return found


def load_settings(config: dict) -> ReportingSettings:
    value = (setting(config, ENV) or "").strip()
    schedules = {}
    if value:
        try:
            if value.startswith("{"):
                data = json.loads(value)
            else:
                with open(value, encoding="utf-8") as fh:
                    data = json.load(fh)
            schedules = parse_schedules(data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise SystemExit(f"configuration error: {ENV}: {exc}") from None
    years_text = (setting(config, YEARS_ENV) or "").strip()
    try:
        years = tuple(int(y) for y in years_text.replace(" ", "").split(",") if y)
    except ValueError:
        raise SystemExit(f"configuration error: {YEARS_ENV}={years_text!r}: years, e.g. "
                         "2026,2027") from None
    if any(not 2000 <= y <= 2100 for y in years):
        raise SystemExit(f"configuration error: {YEARS_ENV}: years 2000-2100")
    return ReportingSettings(schedules, load_calendar(), years)
