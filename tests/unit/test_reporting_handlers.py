"""The report's handlers with an in-memory repository: events logged once and projected,
editions generated, submitted, corrected and refused, the overdue sweep, drill-down, and a
rebuild that repairs a damaged figure."""
from __future__ import annotations

import pytest

from services.common.entrypoints import events_module, parse_event
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.reporting import handlers
from services.reporting.domain import figures
from services.reporting.models import ReportEdition, ReportPeriod
from services.reporting.repository import ReportingRepository
from services.reporting.settings import ReportingSettings
from tests import reporting_events as R
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, run

REGULATOR = caller("regulator")


class FakeReportingRepository(FakeRepository, ReportingRepository):
    def __init__(self, alias="reporting"):
        super().__init__(alias)
        self.log: list[figures.Logged] = []
        self.figures: dict[str, dict] = {}
        self.projected = 0

    def log_position(self):
        return len(self.log)

    def logged_event(self, event_id):
        return next((e for e in self.log if e.event_id == event_id), None)

    def append_event(self, event_id, kind, body, now):
        earlier = self.logged_event(event_id)
        if earlier is not None:
            return earlier, False
        self.log.append(figures.Logged(len(self.log) + 1, event_id, kind, body))
        return self.log[-1], True

    def entries(self, after=0, up_to=None):
        return iter([e for e in self.log if e.position > after
                     and (up_to is None or e.position <= up_to)])

    def checkpoint(self):
        return self.projected

    def advance_checkpoint(self, position):
        self.projected = max(self.projected, position)

    def apply(self, key, figure, day, contribution, position, value_after):
        doc = self.figures.setdefault(key, {"figure": figure, "day": day, "value": 0,
                                            "position": 0, "contributions": []})
        if doc["position"] >= position:
            return False
        doc["contributions"].append(contribution)
        doc["position"] = position
        doc["value"] = value_after(doc["contributions"])
        return True

    def all_figures(self):
        return {k: dict(v, contributions=list(v["contributions"])) for k, v in
                self.figures.items()}

    def replace_figures(self, docs, remove, read):
        self.figures.update({k: dict(v) for k, v in docs.items()})
        for key in remove:
            self.figures.pop(key, None)
        return len(docs) + len(remove)

    def period(self, period_id):
        return self.load(ReportPeriod, period_id)

    def periods_of(self, year):
        return {p.period_id: p for p in self.all(ReportPeriod) if p.year == year}

    def edition(self, edition_id):
        return self.tracked(ReportEdition, edition_id) or self.get(ReportEdition, edition_id)

    def edition_for_change(self, edition_id):
        return self.load(ReportEdition, edition_id)

    def editions_of_period(self, period_id):
        return sorted((e for e in self.all(ReportEdition) if e.period_id == period_id),
                      key=lambda e: e.revision)

    def editions_of_year(self, year):
        return sorted((e for e in self.all(ReportEdition) if e.year == year),
                      key=lambda e: (e.period_id, e.revision))


@pytest.fixture
def clock():
    clock = FakeClock()
    clock.set(2026, 7, 15)
    return clock


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeReportingRepository(), events_module("reporting"), clock,
                          source="reporting")


@pytest.fixture
def settings():
    return ReportingSettings()


def deliver(uow, clock, settings, producer, event_type, body):
    """As Worker.handle_event does, without its handled-mark (so a redelivery reaches the
    handler, as one does after a crash before the mark)."""
    uow.begin()
    result = handlers.record_event(producer, event_type)(
        parse_event(producer, event_type, body), uow, clock, settings)
    uow.flush()
    uow.publish()
    return result


@pytest.fixture
def year(uow, clock, settings):
    for event in R.report_year():
        deliver(uow, clock, settings, *event)
    return uow


def generate(uow, clock, settings, cut_off="2026-07-14", **extra):
    return run(handlers.generate_edition, uow, clock, settings,
               {"cut_off": cut_off, **extra}, REGULATOR)


def submit(uow, clock, settings, edition_id, **extra):
    return run(handlers.submit_edition, uow, clock, settings,
               {"edition_id": edition_id, **extra}, REGULATOR)


def test_an_event_is_logged_once_and_counted_once(uow, clock, settings, year):
    repo = uow.repo
    n = len(R.report_year())
    assert repo.log_position() == repo.checkpoint() == n
    before = repo.all_figures()
    again = deliver(uow, clock, settings, *R.report_year()[1])
    assert again == {"position": 2, "new": False}
    repo.projected = 0  # the checkpoint lost: the whole log is followed again
    handlers.project(uow)
    assert repo.all_figures() == before
    assert repo.figures["amount_refunded|2026-07-06"]["value"] == 350000
    assert repo.figures["amount_refunded|2026-07-06"]["position"] == 7


def test_generate_is_a_function_of_the_events_and_answers_again_for_the_same(uow, clock,
                                                                             settings, year):
    first = generate(uow, clock, settings)
    edition = first["edition"]
    assert first["created"] and edition["edition_id"] == "2026-p01-r1"
    assert R.values(edition["rows"]) == R.expected_full(R.EXPECTED_P01)
    assert {x["format"] for x in edition["exports"]} == {
        "EXPORT_FORMAT_XLSX", "EXPORT_FORMAT_PDF", "EXPORT_FORMAT_CSV"}
    [generated] = uow.events("EditionGenerated")
    assert generated["edition_id"] == "2026-p01-r1"
    again = generate(uow, clock, settings)
    assert again == {"edition": edition, "created": False}
    assert len(uow.repo.all(ReportEdition)) == 1


def test_generating_needs_a_passed_cut_off_of_the_schedule(uow, clock, settings, year):
    with pytest.raises(FailedPrecondition, match="has not passed"):
        generate(uow, clock, settings, "2026-07-28")
    with pytest.raises(InvalidArgument, match="not a cut-off"):
        generate(uow, clock, settings, "2026-07-13")
    with pytest.raises(InvalidArgument, match="YYYY-MM-DD"):
        generate(uow, clock, settings, "14.07.2026")
    with pytest.raises(InvalidArgument, match="required"):
        generate(uow, clock, settings, "")
    assert uow.repo.all(ReportEdition) == [] and uow.repo.all(ReportPeriod) == []


def test_submit_freezes_and_a_correction_is_a_new_edition(uow, clock, settings, year):
    generate(uow, clock, settings)
    submitted = submit(uow, clock, settings, "2026-p01-r1")["edition"]
    assert submitted["state"] == "EDITION_STATE_SUBMITTED" and not submitted["submitted_late"]
    with pytest.raises(FailedPrecondition, match="submitted already"):
        submit(uow, clock, settings, "2026-p01-r1")
    # Nothing new: the same edition; a late decision: a correction.
    assert not generate(uow, clock, settings)["created"]
    clock.set(2026, 7, 20)
    deliver(uow, clock, settings, *R.LATE)
    correction = generate(uow, clock, settings)["edition"]
    assert correction["edition_id"] == "2026-p01-r2"
    assert correction["corrects_edition_id"] == "2026-p01-r1"
    frozen = uow.repo.get(ReportEdition, "2026-p01-r1")
    assert frozen.state == "EDITION_STATE_SUBMITTED" and frozen.revision == 1
    late = submit(uow, clock, settings, "2026-p01-r2")["edition"]
    assert late["submitted_late"]
    period = uow.repo.get(ReportPeriod, "2026-p01")
    assert period.submitted == ["2026-p01-r1", "2026-p01-r2"]
    assert [e["corrects_edition_id"] for e in uow.events("EditionSubmitted")] == \
        ["", "2026-p01-r1"]


def test_only_the_newest_draft_is_submitted_and_a_copy_corrects_nothing(uow, clock, settings,
                                                                        year):
    generate(uow, clock, settings)
    deliver(uow, clock, settings, *R.LATE)
    generate(uow, clock, settings)
    with pytest.raises(FailedPrecondition, match="superseded by 2026-p01-r2"):
        submit(uow, clock, settings, "2026-p01-r1")
    submit(uow, clock, settings, "2026-p01-r2")
    with pytest.raises(NotFound):
        submit(uow, clock, settings, "2026-p01-r3")
    with pytest.raises(InvalidArgument):
        submit(uow, clock, settings, "")


def test_the_sweep_raises_each_overdue_period_once_and_sets_the_gauge(uow, clock, settings,
                                                                     year):
    clock.set(2026, 8, 3)  # p01 due 16 July, p02 due 30 July: neither submitted
    uow.begin()
    assert handlers.sweep(uow, clock, settings) == {"overdue": 2}
    uow.flush()
    uow.publish()
    assert handlers.EDITIONS_OVERDUE._value.get() == 2
    assert [(e["number"], e["due_on"]) for e in uow.events("EditionOverdue")] == [
        (1, "2026-07-16"), (2, "2026-07-30")]
    uow.begin()
    handlers.sweep(uow, clock, settings)
    uow.flush()
    uow.publish()
    assert len(uow.events("EditionOverdue")) == 2  # raised once
    generate(uow, clock, settings)
    submit(uow, clock, settings, "2026-p01-r1")
    uow.begin()
    assert handlers.sweep(uow, clock, settings) == {"overdue": 1}
    listed = run(handlers.list_editions, uow, clock, settings, {"year": 2026}, REGULATOR)
    assert listed["overdue_count"] == 1 and not listed["page"]["next_page_token"]
    first = run(handlers.list_editions, uow, clock, settings,
                {"year": 2026, "page": {"page_size": 8}}, REGULATOR)
    rest = run(handlers.list_editions, uow, clock, settings,
               {"year": 2026, "page": {"page_size": 8,
                                       "page_token": first["page"]["next_page_token"]}},
               REGULATOR)
    assert [p["number"] for p in first["periods"] + rest["periods"]] == list(range(1, 12))
    assert rest["overdue_count"] == 1 and not rest["page"]["next_page_token"]
    assert [p["status"] for p in listed["periods"][:3]] == [
        "PERIOD_STATUS_SUBMITTED_LATE", "PERIOD_STATUS_OVERDUE", "PERIOD_STATUS_OPEN"]


def test_diff_and_explain_read_the_events_again(uow, clock, settings, year):
    generate(uow, clock, settings)
    deliver(uow, clock, settings, *R.LATE)
    generate(uow, clock, settings)
    diff = run(handlers.diff_editions, uow, clock, settings,
               {"from_edition_id": "2026-p01-r1", "to_edition_id": "2026-p01-r2"}, REGULATOR)
    assert [(c["figure"], c["delta"]) for c in diff["changes"]] == [
        ("subsidies_recovered", "20000"), ("subsidies_recovered", "20000")]
    explained = run(handlers.explain_figure, uow, clock, settings,
                    {"edition_id": "2026-p01-r1", "figure": "checked_training"}, REGULATOR)
    assert explained["value"] == "1" and explained["total"] == 1
    assert explained["contributions"][0]["event_id"] == "ins-done-1"
    period_column = run(handlers.explain_figure, uow, clock, settings,
                        {"edition_id": "2026-p01-r1", "figure": "checked_training",
                         "column": 1}, REGULATOR)
    assert period_column["column"] == "FIGURE_COLUMN_PERIOD"
    with pytest.raises(InvalidArgument, match="not a figure"):
        run(handlers.explain_figure, uow, clock, settings,
            {"edition_id": "2026-p01-r1", "figure": "nope"}, REGULATOR)
    # An event changed in the log after the fact: the edition says so instead of lying.
    uow.repo.log[3] = figures.Logged(4, "ins-done-2", uow.repo.log[3].kind,
                                     {**uow.repo.log[3].body, "subject_id": "other"})
    with pytest.raises(FailedPrecondition, match="no longer those"):
        run(handlers.explain_figure, uow, clock, settings,
            {"edition_id": "2026-p01-r1", "figure": "checked_training"}, REGULATOR)


def test_export_answers_the_bytes_fixed_at_generation(uow, clock, settings, year):
    import base64
    import hashlib

    edition = generate(uow, clock, settings)["edition"]
    for fixed in edition["exports"]:
        answer = run(handlers.export_edition, uow, clock, settings,
                     {"edition_id": "2026-p01-r1", "format": fixed["format"]}, REGULATOR)
        assert hashlib.sha256(base64.b64decode(answer["content"])).hexdigest() == \
            answer["sha256"] == fixed["sha256"]
        assert answer["filename"] == fixed["filename"]
    # A caller on the bus may name the format by its number.
    by_number = run(handlers.export_edition, uow, clock, settings,
                    {"edition_id": "2026-p01-r1", "format": 3}, REGULATOR)
    assert by_number["filename"].endswith(".csv")
    with pytest.raises(InvalidArgument, match="format"):
        run(handlers.export_edition, uow, clock, settings,
            {"edition_id": "2026-p01-r1", "format": 0}, REGULATOR)


def test_a_rebuild_repairs_what_differs_from_the_log(uow, clock, settings, year):
    rebuilt = run(handlers.rebuild_figures, uow, clock, settings, {"request_id": "r1"},
                  REGULATOR)
    assert rebuilt["figures_changed"] == 0
    good = uow.repo.all_figures()
    uow.repo.figures["problems_found|2026-07-03"]["value"] = 9
    uow.repo.figures["bogus|2026-07-03"] = {"figure": "bogus", "day": "2026-07-03",
                                            "value": 1, "position": 1, "contributions": []}
    rebuilt = run(handlers.rebuild_figures, uow, clock, settings, {"request_id": "r2"},
                  REGULATOR)
    assert rebuilt["figures_changed"] == 2 and uow.repo.all_figures() == good


def test_daily_figures_are_bounded_and_checked(uow, clock, settings, year):
    # (the query itself is the repository's: tests/integration/test_reporting.py)
    for request, problem in (
            ({"from_day": "2026-07-02", "to_day": "2026-07-01"}, "to_day"),
            ({"from_day": "2025-01-01", "to_day": "2026-07-01"}, "366"),
            ({"from_day": "2026-07-01", "to_day": "2026-07-02", "figures": ["x"]}, "figures")):
        with pytest.raises(InvalidArgument, match=problem):
            run(handlers.get_daily_figures, uow, clock, settings, request, REGULATOR)


def test_two_sweeps_racing_for_a_new_period_skip_it_instead_of_failing(uow, clock, settings,
                                                                       year, monkeypatch):
    clock.set(2026, 7, 20)  # p01 overdue
    uow.begin()
    handlers.sweep(uow, clock, settings)
    uow.flush()
    uow.publish()
    # The other worker's sweep read no period a moment before this one was written.
    monkeypatch.setattr(type(uow.repo), "period", lambda self, period_id: None)
    uow.begin()
    assert handlers.sweep(uow, clock, settings) == {"overdue": 1}
    uow.flush()
    uow.publish()
    assert len(uow.events("EditionOverdue")) == 1
