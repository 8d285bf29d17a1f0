"""When editions are due (seed 002 §三(二): "自7月起，每两周…报送专项行动进展情况表，11月底前
报送专项行动工作总结").

Read as: the action year's periods run every `interval_days` (14) from `start` (1 July); a
progress edition's cut-off is its period's last day and it is due `due_working_days` (2)
working days after (the seed names no day: two working days to compile and sign it off);
the final summary is due on the last working day on or before `final_due` (30 November),
its cut-off `due_working_days` working days before that, and the progress periods stop
before it. Every date is on the working-day calendar (services/common/workdays.py): a due
date counted over a year whose holidays are not published is provisional. Each value is
configurable per year (settings.py, REPORTING_SCHEDULES).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from services.common.workdays import Deadline, WorkdayCalendar

PROGRESS, FINAL = "EDITION_KIND_PROGRESS", "EDITION_KIND_FINAL_SUMMARY"

DEFAULT_START = (7, 1)          # 自7月起
DEFAULT_FINAL_DUE = (11, 30)    # 11月底前
DEFAULT_INTERVAL_DAYS = 14      # 每两周
DEFAULT_DUE_WORKING_DAYS = 2    # the seed is silent: two working days after the cut-off


@dataclass(frozen=True)
class YearSchedule:
    year: int
    start: date
    final_due: date
    interval_days: int = DEFAULT_INTERVAL_DAYS
    due_working_days: int = DEFAULT_DUE_WORKING_DAYS

    @classmethod
    def default(cls, year: int) -> YearSchedule:
        return cls(year, date(year, *DEFAULT_START), date(year, *DEFAULT_FINAL_DUE))

    def problems(self) -> list[str]:
        found = []
        if not 1 <= self.interval_days <= 62:
            found.append("interval_days must be 1-62")
        if not 0 <= self.due_working_days <= 20:
            found.append("due_working_days must be 0-20")
        if self.start.year != self.year or self.final_due.year != self.year:
            found.append("start and final_due must be in the year")
        if self.final_due <= self.start + timedelta(days=self.interval_days):
            found.append("final_due must be more than one interval after start")
        return found


@dataclass(frozen=True)
class Period:
    year: int
    number: int
    kind: str
    period_start: date
    cut_off: date
    due: Deadline
    action_start: date = field(compare=False)

    @property
    def period_id(self) -> str:
        return f"{self.year}-p{self.number:02d}"


def working_day_on_or_before(calendar: WorkdayCalendar, day: date) -> tuple[date, bool]:
    provisional = False
    while True:
        working, guessed = calendar.day(day)
        provisional = provisional or guessed
        if working:
            return day, provisional
        day -= timedelta(days=1)


def working_days_before(calendar: WorkdayCalendar, day: date, n: int) -> date:
    counted = 0
    while counted < n:
        day -= timedelta(days=1)
        counted += calendar.day(day)[0]
    return day


def periods(schedule: YearSchedule, calendar: WorkdayCalendar) -> list[Period]:
    final_due, provisional = working_day_on_or_before(calendar, schedule.final_due)
    final_cut_off = working_days_before(calendar, final_due, schedule.due_working_days)
    found: list[Period] = []
    start = schedule.start
    while True:
        cut_off = start + timedelta(days=schedule.interval_days - 1)
        if cut_off >= final_cut_off:
            break
        found.append(Period(schedule.year, len(found) + 1, PROGRESS, start, cut_off,
                            calendar.add_working_days(cut_off, schedule.due_working_days),
                            schedule.start))
        start = cut_off + timedelta(days=1)
    found.append(Period(schedule.year, len(found) + 1, FINAL, start, final_cut_off,
                        Deadline(final_due, provisional), schedule.start))
    return found


def period_for_cut_off(schedule: YearSchedule, calendar: WorkdayCalendar,
                       cut_off: date) -> Period | None:
    return next((p for p in periods(schedule, calendar) if p.cut_off == cut_off), None)


def status(period: Period, today: date, submitted_late: bool | None) -> tuple[str, int]:
    """(PeriodStatus name, days overdue). submitted_late: None while nothing was submitted."""
    if submitted_late is not None:
        return ("PERIOD_STATUS_SUBMITTED_LATE" if submitted_late
                else "PERIOD_STATUS_SUBMITTED"), 0
    if today <= period.cut_off:
        return "PERIOD_STATUS_OPEN", 0
    if today <= period.due.date:
        return "PERIOD_STATUS_DUE", 0
    return "PERIOD_STATUS_OVERDUE", (today - period.due.date).days


def overdue(period: Period, today: date, submitted: bool) -> bool:
    return not submitted and today > period.due.date
