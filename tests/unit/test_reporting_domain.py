"""The report's pure rules: what each event counts and on which day, the schedule on the
working-day calendar, editions as functions of the events, their hashes and differences, and
exports that are the same bytes every time."""
from __future__ import annotations

import csv
import io
import random
from datetime import date, datetime, timezone

import pytest
from google.protobuf import json_format

from services.common.entrypoints import parse_event
from services.common.workdays import WorkdayCalendar, YearOverride
from services.reporting import exports
from services.reporting.domain import definition as d
from services.reporting.domain import figures
from services.reporting.domain import schedule as s
from services.reporting.settings import load_settings, parse_schedules
from tests import reporting_events as R

CAL = WorkdayCalendar()


def logged(events, start=1) -> list[figures.Logged]:
    """Events as the worker logs them: parsed with their producer's message first."""
    found = []
    for i, (producer, event_type, body) in enumerate(events, start=start):
        message = parse_event(producer, event_type, body)
        found.append(figures.Logged(i, message.meta.event_id, f"{producer}.{event_type}",
                                    json_format.MessageToDict(
                                        message, preserving_proto_field_name=True)))
    return found


def period(number: int, year: int = 2026) -> s.Period:
    return s.periods(s.YearSchedule.default(year), CAL)[number - 1]


# --- the definition -------------------------------------------------------------------------
def test_the_definition_is_pinned_by_its_hash():
    # Changing what a figure counts changes the hash: bump VERSION with it, and this line.
    assert d.VERSION == "2026.1"
    assert d.DEFINITION_HASH == d.sha256_hex(d.canonical_json(d.definition_document()))
    assert len({f.figure for f in d.FIGURES}) == len(d.FIGURES) == 25
    assert all(f.label and f.unit and f.sources for f in d.FIGURES)


def test_every_source_is_a_message_of_its_producers_events_proto():
    from services.common.entrypoints import events_module

    for producer, event_type in d.SOURCES:
        assert hasattr(events_module(producer), event_type), (producer, event_type)


@pytest.mark.parametrize("kind, body, day", [
    ("escrow.ComplaintResolved", {"resolved_on": "2026-07-06",
                                  "meta": {"occurred_at": "2026-07-20T01:00:00Z"}},
     date(2026, 7, 6)),
    # no date of its own: the recording day in Asia/Shanghai (17:00 UTC is the next day)
    ("inspection.FindingRecorded", {"meta": {"occurred_at": "2026-07-14T17:00:00Z"}},
     date(2026, 7, 15)),
    ("inspection.FindingRecorded", {"meta": {"occurred_at": "2026-07-14T15:59:59Z"}},
     date(2026, 7, 14)),
    # a malformed business date: the recording day
    ("courses.CourseDelisted", {"delisted_on": "soon",
                                "meta": {"occurred_at": "2026-07-14T01:00:00Z"}},
     date(2026, 7, 14)),
    ("courses.CourseDelisted", {"meta": {}}, None),
])
def test_the_day_an_event_counts_on(kind, body, day):
    assert d.event_day(kind, body) == day


def test_what_each_event_counts():
    counted = {e.event_id: [(c.figure, c.subject_id, c.amount)
                            for c in figures.contributions(e)]
               for e in logged(R.report_year())}
    assert counted["ins-done-1"] == [("checked_training", R.T1, 1),
                                     ("checked_training_daily", R.T1, 1)]
    assert counted["ins-done-3"] == [("checked_other", "U-1", 1)]  # no kind split for others
    assert counted["ins-dec-1"] == [("results_voided", "dec-1", 1)]
    assert counted["ins-dec-2"] == []  # a withdrawal of uploaded data is not a void result
    assert counted["ins-dec-3"] == [("results_voided", "dec-3", 1)]  # a voided exam session
    assert counted["crt-inv-1"] == [("certificates_invalidated", "op-1", 12)]
    assert counted["ins-outcome-4"] == [("subsidies_recovered", "case-1", 1234500)]
    assert counted["ins-outcome-5"] == [("catalogue_removed", R.T1, 1)]
    assert counted["esc-1"] == [("refund_complaints_resolved", "cmp-1", 1),
                                ("amount_refunded", "cmp-1", 350000)]
    assert counted["esc-2"] == [("refund_complaints_resolved", "cmp-2", 1)]  # rejected
    assert counted["crs-cheat-1"] == [("cheating_confirmed", "cheat-1", 1)]


# --- the schedule ---------------------------------------------------------------------------
def test_the_2026_schedule_every_two_weeks_from_1_july_and_the_final_summary():
    found = s.periods(s.YearSchedule.default(2026), CAL)
    assert len(found) == 11
    assert [(p.period_start.isoformat(), p.cut_off.isoformat()) for p in found[:3]] == [
        ("2026-07-01", "2026-07-14"), ("2026-07-15", "2026-07-28"), ("2026-07-29", "2026-08-11")]
    assert all(p.kind == s.PROGRESS for p in found[:-1])
    final = found[-1]
    assert final.kind == s.FINAL and final.due.date == date(2026, 11, 30)
    assert final.cut_off == date(2026, 11, 26) and final.period_start == date(2026, 11, 18)
    # Two working days after the cut-off: over the National Day holiday, 6 October -> 9th.
    assert found[6].cut_off == date(2026, 10, 6) and found[6].due.date == date(2026, 10, 9)
    assert all(CAL.is_working_day(p.due.date) and not p.due.provisional for p in found)
    # Consecutive, no gap, no overlap.
    assert all((b.period_start - a.cut_off).days == 1 for a, b in zip(found, found[1:], strict=False))


def test_make_up_working_days_and_a_final_due_on_a_weekend():
    found = s.periods(s.YearSchedule.default(2023), CAL)
    # Sunday 8 October 2023 was a make-up working day: due then.
    assert found[6].cut_off == date(2023, 10, 6) and found[6].due.date == date(2023, 10, 8)
    # 30 November 2025 is a Sunday: the final summary is due Friday 28th.
    assert s.periods(s.YearSchedule.default(2025), CAL)[-1].due.date == date(2025, 11, 28)


def test_a_year_without_a_published_calendar_is_provisional_until_overridden():
    assert all(p.due.provisional for p in s.periods(s.YearSchedule.default(2031), CAL))
    published = WorkdayCalendar({2031: YearOverride(frozenset({date(2031, 7, 16)}))})
    found = s.periods(s.YearSchedule.default(2031), published)
    assert not any(p.due.provisional for p in found)
    assert found[0].due.date == date(2031, 7, 17)  # the 16th declared a holiday


def test_the_schedule_is_configurable_per_year():
    schedules = parse_schedules({"2026": {"start": "2026-08-01", "interval_days": 7,
                                          "due_working_days": 0}})
    found = s.periods(schedules[2026], CAL)
    assert found[0].period_start == date(2026, 8, 1) and found[0].cut_off == date(2026, 8, 7)
    assert found[0].due.date == date(2026, 8, 7)  # due on the cut-off itself (a Friday)
    for bad in ({"2026": {"interval_days": 0}}, {"2026": {"start": "2025-07-01"}},
                {"2026": {"colour": "red"}}, {"2026": {"start": "July"}}):
        with pytest.raises((ValueError, KeyError)):
            parse_schedules(bad)
    with pytest.raises(SystemExit, match="REPORTING_SCHEDULES"):
        load_settings({"REPORTING_SCHEDULES": "{not json"})
    assert load_settings({}).schedule(2027) == s.YearSchedule.default(2027)


def test_the_action_years_watched_for_overdue_editions():
    today = date(2027, 1, 10)
    assert load_settings({}).action_years(today) == [2027]
    assert load_settings({"REPORTING_SCHEDULES": '{"2026": {}}'}).action_years(today) == [2026]
    assert load_settings({"REPORTING_ACTION_YEARS": "2026, 2027,2028"}).action_years(today) \
        == [2026, 2027]
    for bad in ("twenty", "1999"):
        with pytest.raises(SystemExit, match="REPORTING_ACTION_YEARS"):
            load_settings({"REPORTING_ACTION_YEARS": bad})


def test_period_status_from_open_to_overdue_and_submitted():
    p01 = period(1)  # cut-off 14 July, due 16 July
    assert s.status(p01, date(2026, 7, 14), None) == ("PERIOD_STATUS_OPEN", 0)
    assert s.status(p01, date(2026, 7, 16), None) == ("PERIOD_STATUS_DUE", 0)
    assert s.status(p01, date(2026, 7, 20), None) == ("PERIOD_STATUS_OVERDUE", 4)
    assert s.status(p01, date(2026, 7, 20), True) == ("PERIOD_STATUS_SUBMITTED_LATE", 0)
    assert not s.overdue(p01, date(2026, 7, 16), False) and s.overdue(p01, date(2026, 7, 17), False)


# --- editions -------------------------------------------------------------------------------
def test_editions_are_the_figures_of_their_cut_off():
    entries = logged(R.report_year())
    for number, expected in ((1, R.EXPECTED_P01), (3, R.EXPECTED_P03)):
        table = figures.table(entries, period(number), len(entries))
        assert R.values(table.rows) == R.expected_full(expected), number


def test_an_edition_is_a_function_of_its_events_not_of_their_order():
    entries = logged(R.report_year())
    shuffled = entries[:]
    random.Random(7).shuffle(shuffled)
    renumbered = [figures.Logged(i, e.event_id, e.kind, e.body)
                  for i, e in enumerate(shuffled, start=1)]
    a = figures.table(entries, period(3), len(entries))
    b = figures.table(renumbered, period(3), len(renumbered))
    assert a.rows == b.rows and a.input_hash == b.input_hash
    assert figures.output_hash(period(3), a.rows, d.DEFINITION_HASH) == \
        figures.output_hash(period(3), b.rows, d.DEFINITION_HASH)
    # Events logged after the edition's position are not in it.
    cut = figures.table(entries, period(3), 10)
    assert cut.input_hash != a.input_hash and len(cut.counted_events) < len(a.counted_events)
    # A changed body is another input.
    edited = [figures.Logged(e.position, e.event_id, e.kind,
                             {**e.body, "total": 13} if e.event_id == "crt-inv-1" else e.body)
              for e in entries]
    assert figures.table(edited, period(3), len(edited)).input_hash != a.input_hash


def test_the_difference_names_the_events_behind_each_changed_cell():
    entries = logged(R.report_year())
    before = figures.table(entries, period(1), len(entries))
    late = logged([R.LATE], start=len(entries) + 1)
    after = figures.table(entries + late, period(1), len(entries) + 1)
    changes = figures.diff(before, after)
    assert [(c.figure, c.column, c.before, c.after) for c in changes] == [
        ("subsidies_recovered", figures.PERIOD, 1234500, 1254500),
        ("subsidies_recovered", figures.CUMULATIVE, 1234500, 1254500)]
    assert [c.event_id for c in changes[0].added] == ["ins-outcome-10"] and not changes[0].removed
    assert figures.diff(before, before) == []
    # Reversed, the event is removed.
    assert [c.event_id for c in figures.diff(after, before)[0].removed] == ["ins-outcome-10"]


def test_the_read_model_rebuilt_is_the_one_kept_event_by_event():
    entries = logged(R.report_year())
    kept: dict[str, dict] = {}
    for entry in entries + entries[:4]:  # with redeliveries
        for c in figures.contributions(entry):
            key = figures.figure_day_id(c.figure, c.day)
            doc = kept.setdefault(key, {"figure": c.figure, "day": c.day.isoformat(),
                                        "contributions": [], "position": 0})
            if doc["position"] >= entry.position:
                continue  # the figure includes it already
            doc["contributions"].append(figures.stored_contribution(c))
            doc["position"] = entry.position
            doc["value"] = figures.day_value(c.figure, doc["contributions"])
    assert figures.rebuild(entries) == kept
    assert kept["checked_training|2026-07-03"]["value"] == 1


# --- exports ----------------------------------------------------------------------------------
def edition_source(rows) -> dict:
    return {"edition_id": "2026-p01-r1", "year": 2026, "number": 1, "kind": s.PROGRESS,
            "revision": 1, "action_start": "2026-07-01", "period_start": "2026-07-01",
            "cut_off": "2026-07-14", "due_on": "2026-07-16", "definition_version": d.VERSION,
            "definition_hash": d.DEFINITION_HASH, "input_hash": "a" * 64, "event_count": 12,
            "log_position": 24, "output_sha256": "b" * 64, "corrects_edition_id": "",
            "rows": rows, "generated_at": datetime(2026, 7, 15, 4, 0, 0, 123000, timezone.utc)}


@pytest.fixture(scope="module")
def source():
    entries = logged(R.report_year())
    return edition_source(figures.table(entries, period(1), len(entries)).rows)


@pytest.mark.parametrize("fmt", exports.FORMATS)
def test_an_export_is_the_same_bytes_every_time(source, fmt):
    first = exports.render(source, fmt)
    assert exports.render(dict(source), fmt) == first
    other = {**source, "rows": [{**r, "period_value": 7} for r in source["rows"]]}
    assert exports.render(other, fmt) != first


def test_the_xlsx_carries_the_edition_and_its_generation_time(source):
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(exports.xlsx(source)))
    assert book.properties.created == datetime(2026, 7, 15, 4, 0, 0)
    sheet = book.active
    assert sheet["A1"].value == exports.TITLE_PROGRESS
    money = {sheet.cell(5 + i, 7).value: sheet.cell(5 + i, 5).value
             for i in range(len(source["rows"]))}
    assert money["subsidies_recovered"] == 12345.0 and money["amount_refunded"] == 3500.0


def test_the_pdf_is_invariant_and_says_its_title(source):
    from pypdf import PdfReader

    pdf = exports.pdf(source)
    assert b"/CreationDate (D:20000101000000+00'00')" in pdf  # reportlab's invariant date
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert exports.TITLE_PROGRESS in text and "查实作弊案件" in text
    final = exports.pdf({**source, "kind": s.FINAL})
    assert exports.TITLE_FINAL in PdfReader(io.BytesIO(final)).pages[0].extract_text()


def test_the_csv_opens_in_excel_and_in_a_program(source):
    data = exports.csv_bytes(source)
    assert data.startswith("\ufeff".encode()) and b"\r\n" in data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    by = {r["figure"]: r for r in rows}
    assert by["subsidies_recovered"]["累计"] == "12345.00"
    assert by["certificates_invalidated"]["本期"] == "12" and by["results_voided"]["指标"] == \
        "取消评价结果"
