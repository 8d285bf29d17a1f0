"""Working days (工作日) on the official PRC calendar, and deadlines counted on them.

Three sources, in order: the override table (years the State Council has published that the
installed `chinesecalendar` does not know yet, or corrections), then `chinesecalendar`
(2004-2026 in the pinned version), then Mon-Fri. A deadline that needed the Mon-Fri fallback
for any day it crossed is marked provisional, so nobody mistakes it for an official one.
Nothing here raises for an unknown year.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Env var holding the override table as inline JSON, or the path of a file holding it:
# {"2027": {"holidays": ["2027-01-01", ...], "workdays": [...]}}.
OVERRIDES_ENV = "VOCREG_CALENDAR_OVERRIDES"


def today_in_shanghai(now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError("naive datetime: times in vocreg are timezone-aware")
    return now.astimezone(SHANGHAI).date()


@dataclass(frozen=True)
class Deadline:
    date: date
    provisional: bool = False

    def to_dict(self) -> dict:
        return {"date": self.date.isoformat(), "provisional": self.provisional}


@dataclass(frozen=True)
class YearOverride:
    """A published year: its public holidays (off on weekdays) and make-up working days."""

    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)


class WorkdayCalendar:
    def __init__(self, overrides: Mapping[int, YearOverride] | None = None):
        self.overrides = dict(overrides or {})

    def day(self, d: date) -> tuple[bool, bool]:
        """(is a working day, the answer is provisional)."""
        published = self.overrides.get(d.year)
        if published is not None:
            if d in published.holidays:
                return False, False
            if d in published.workdays:
                return True, False
            return d.weekday() < 5, False
        try:
            return chinese_calendar.is_workday(d), False
        except NotImplementedError:
            return d.weekday() < 5, True

    def is_working_day(self, d: date) -> bool:
        return self.day(d)[0]

    def add_working_days(self, start: date, n: int) -> Deadline:
        """The n-th working day after `start` (the day of receipt is not counted)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        current, provisional, counted = start, False, 0
        while counted < n:
            current += timedelta(days=1)
            working, guessed = self.day(current)
            provisional = provisional or guessed
            counted += working
        return Deadline(current, provisional)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end`."""
        return sum(self.day(start + timedelta(days=i))[0] for i in range(1, (end - start).days + 1))


def add_days(start: date, n: int) -> Deadline:
    """Calendar days ("days" without "working" in the rules)."""
    return Deadline(start + timedelta(days=n), False)


def parse_overrides(data: Mapping[str, Mapping[str, Iterable[str]]]) -> dict[int, YearOverride]:
    table = {}
    for year_text, days in data.items():
        year = int(year_text)
        holidays = frozenset(date.fromisoformat(d) for d in days.get("holidays", ()))
        workdays = frozenset(date.fromisoformat(d) for d in days.get("workdays", ()))
        wrong = [d for d in holidays | workdays if d.year != year]
        if wrong:
            raise ValueError(f"calendar override {year} lists days of another year: {sorted(wrong)}")
        if holidays & workdays:
            raise ValueError(f"calendar override {year}: days both holiday and workday")
        table[year] = YearOverride(holidays, workdays)
    return table


def load_calendar(environ: Mapping[str, str] | None = None) -> WorkdayCalendar:
    """The calendar with the override table of VOCREG_CALENDAR_OVERRIDES: inline JSON (it
    starts with "{") or the path of a JSON file. A table that cannot be read stops the worker
    at start with one line saying why (SystemExit), not at the first deadline counted."""
    environ = os.environ if environ is None else environ
    value = (environ.get(OVERRIDES_ENV) or "").strip()
    if not value:
        return WorkdayCalendar()
    where = "inline JSON" if value.startswith("{") else f"file {value}"
    try:
        if value.startswith("{"):
            data = json.loads(value)
        else:
            with open(value, encoding="utf-8") as fh:
                data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("must be an object of years")
        return WorkdayCalendar(parse_overrides(data))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise SystemExit(f"configuration error: {OVERRIDES_ENV} ({where}): {exc}") from None
