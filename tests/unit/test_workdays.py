"""The working-day calendar: official holidays, make-up days, unknown years never crash."""
import json
from datetime import date, datetime, timezone

import pytest

from services.common.workdays import (
    Deadline,
    WorkdayCalendar,
    YearOverride,
    add_days,
    load_calendar,
    parse_overrides,
    today_in_shanghai,
)

cal = WorkdayCalendar()


def test_national_day_2025_is_off_and_its_make_up_days_are_on():
    assert not cal.is_working_day(date(2025, 10, 1))
    assert not cal.is_working_day(date(2025, 10, 8))
    assert cal.is_working_day(date(2025, 9, 28))   # Sunday, make-up working day
    assert cal.is_working_day(date(2025, 10, 11))  # Saturday, make-up working day
    assert not cal.is_working_day(date(2025, 10, 12))  # an ordinary Sunday


def test_five_working_days_across_national_day():
    # Received Friday 26 Sep 2025: Sun 28 (make-up), Mon 29, Tue 30, then 1-8 Oct off,
    # Thu 9 and Fri 10 Oct.
    assert cal.add_working_days(date(2025, 9, 26), 5) == Deadline(date(2025, 10, 10), False)


def test_a_make_up_saturday_counts():
    # From 9 Oct 2025: Fri 10, Sat 11 (make-up) -> the 2nd working day is Saturday.
    assert cal.add_working_days(date(2025, 10, 9), 2).date == date(2025, 10, 11)


def test_receipt_day_is_not_counted_and_a_weekend_receipt_starts_monday():
    assert cal.add_working_days(date(2025, 11, 15), 1).date == date(2025, 11, 17)  # Sat -> Mon


def test_deadline_into_an_unknown_year_is_provisional_and_does_not_crash():
    deadline = cal.add_working_days(date(2026, 12, 28), 5)
    # 29, 30, 31 Dec 2026 are known; 2027 falls back to Mon-Fri: Fri 1 Jan, Mon 4 Jan.
    assert deadline == Deadline(date(2027, 1, 4), True)


def test_whole_unknown_year_falls_back_to_monday_to_friday():
    assert cal.is_working_day(date(2031, 5, 1))  # a Thursday; no data for 2031
    assert not cal.is_working_day(date(2031, 5, 3))


def test_a_deadline_inside_a_known_year_is_not_provisional():
    assert not cal.add_working_days(date(2026, 3, 2), 15).provisional


def test_override_table_decides_for_a_published_year():
    override = parse_overrides({"2027": {"holidays": ["2027-01-01", "2027-01-04"],
                                         "workdays": ["2027-01-09"]}})
    custom = WorkdayCalendar(override)
    assert not custom.is_working_day(date(2027, 1, 4))
    assert custom.is_working_day(date(2027, 1, 9))  # a Saturday made a working day
    deadline = custom.add_working_days(date(2026, 12, 31), 3)
    # 1 Jan and 4 Jan off, 2-3 Jan a weekend: 5, 6, 7 Jan.
    assert deadline == Deadline(date(2027, 1, 7), False)


def test_override_rejects_days_of_another_year_and_contradictions():
    with pytest.raises(ValueError, match="another year"):
        parse_overrides({"2027": {"holidays": ["2028-01-01"]}})
    with pytest.raises(ValueError, match="both"):
        parse_overrides({"2027": {"holidays": ["2027-01-01"], "workdays": ["2027-01-01"]}})


def test_override_file_is_loaded_from_the_environment(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"2027": {"holidays": ["2027-02-10"]}}))
    loaded = load_calendar({"VOCREG_CALENDAR_OVERRIDES": str(path)})
    assert loaded.overrides[2027] == YearOverride(frozenset({date(2027, 2, 10)}), frozenset())


def test_calendar_days_and_working_days_between():
    assert add_days(date(2025, 9, 30), 30).date == date(2025, 10, 30)
    assert cal.working_days_between(date(2025, 9, 26), date(2025, 10, 10)) == 5


def test_negative_count_is_refused():
    with pytest.raises(ValueError):
        cal.add_working_days(date(2025, 1, 1), -1)


def test_today_is_the_shanghai_date():
    late_utc = datetime(2025, 9, 30, 17, 0, tzinfo=timezone.utc)  # 01:00 on 1 Oct in Shanghai
    assert today_in_shanghai(late_utc) == date(2025, 10, 1)
    with pytest.raises(ValueError):
        today_in_shanghai(datetime(2025, 1, 1))


def test_overrides_inline_json_or_a_file(tmp_path):
    from services.common.workdays import OVERRIDES_ENV, load_calendar

    table = '{"2027": {"holidays": ["2027-01-01"], "workdays": ["2027-02-06"]}}'
    path = tmp_path / "calendar.json"
    path.write_text(table, encoding="utf-8")
    for value in (table, f"  {table}\n", str(path)):
        calendar = load_calendar({OVERRIDES_ENV: value})
        assert calendar.day(date(2027, 1, 1)) == (False, False)   # a Friday, a holiday
        assert calendar.day(date(2027, 2, 6)) == (True, False)    # a Saturday, a make-up day
    assert load_calendar({OVERRIDES_ENV: ""}).overrides == {}


@pytest.mark.parametrize("value, says", [
    ('{"2027": {"holidays": ["2027-13-01"]}}', "inline JSON"),
    ("{not json", "inline JSON"),
    ("/nonexistent/calendar.json", "file /nonexistent/calendar.json"),
    ('{"2027": {"holidays": ["2028-01-01"]}}', "days of another year"),
])
def test_an_unreadable_override_table_stops_the_worker_in_one_line(value, says):
    from services.common.workdays import OVERRIDES_ENV, load_calendar

    with pytest.raises(SystemExit) as info:
        load_calendar({OVERRIDES_ENV: value})
    message = str(info.value)
    assert message.startswith("configuration error: VOCREG_CALENDAR_OVERRIDES") and says in message
    assert "\n" not in message
