"""Grading's and inspection's lists through the indexes they read, on the real database server
(issue 18): the black list and the cases check part of their filter on the documents read (the
publication period beside the key's range; case filter combinations with no index of their
own), the grades have an index per combination of filters. Every page in key order, each
entry once, none that fails the filter, no token after the last match; and every single
filter of the cases served whole by an index (tests/integration/test_list_indexes.py checks
that such a query does not scan), a combination with the institution by the institution's."""
from __future__ import annotations

from datetime import datetime, timezone
from itertools import combinations

import pytest

from services.common.mongo import connect, disconnect, ensure_indexes
from services.common.repository import indexed_filter, keyset_page
from services.grading.models import GradeRecord, IntegrityListing
from services.grading.repository import GradingRepository
from services.inspection.models import InspectionCase
from services.inspection.repository import InspectionRepository
from tests.support import uscc

TODAY = "2026-03-01"


def connected(alias: str, databases):
    """A fresh database for the service's documents, indexed as a worker start does (an
    earlier test's worker may have left the alias registered)."""
    disconnect(alias)
    connect(alias, databases.uri(alias))
    ensure_indexes(alias)


@pytest.fixture
def grading_db(databases):
    connected("grading", databases)
    yield GradingRepository("grading")
    disconnect("grading")


@pytest.fixture
def inspection_db(databases):
    connected("inspection", databases)
    yield InspectionRepository("inspection")
    disconnect("inspection")


def every_page(fetch, size: int) -> list:
    """All rows of a list, asked `size` at a time; each page full but the last."""
    seen, after = [], None
    while True:
        rows, after = fetch(size, after)
        assert len(rows) <= size
        seen.extend(rows)
        if after is None:
            return seen
        assert len(rows) == size, "a page short of its size before the last"


def test_black_list_pages_skip_entries_whose_period_ended(grading_db):
    """The sweep has not yet removed some entries whose period ended: they are listed in the
    database but not published, wherever they fall among the pages, the last ones too."""
    until = {1: "2026-12-31", 2: "2026-02-28", 3: "2026-02-28", 4: TODAY, 5: "2027-01-01",
             6: "2026-02-01", 7: None, 8: "2028-01-01", 9: "2026-01-01", 10: "2025-12-31"}
    for i, day in until.items():
        IntegrityListing(listing_id=f"L{i:02d}", kind="BLACK", institution_id=uscc(i),
                         district_code="410502" if i % 2 else "410503", listed_on="2025-01-01",
                         publish_until=day, state="LISTING_STATE_LISTED").save()
    IntegrityListing(listing_id="L11", kind="BLACK", institution_id=uscc(11),
                     district_code="410502", listed_on="2025-01-01", publish_until="2027-01-01",
                     state="LISTING_STATE_REMOVED").save()
    IntegrityListing(listing_id="L12", kind="RED", institution_id=uscc(12),
                     district_code="410502", listed_on="2025-01-01", year=2025,
                     state="LISTING_STATE_LISTED").save()
    black = {"kind": "BLACK", "state": "LISTING_STATE_LISTED"}
    for filters, expected in ((black, ["L01", "L04", "L05", "L08"]),
                              ({**black, "district_code": "410502"}, ["L01", "L05"])):
        for size in (1, 2, 3, 20):
            rows = every_page(lambda n, after, filters=filters: grading_db.listings_page(
                filters, n, after, published_on=TODAY), size)
            assert [r.listing_id for r in rows] == expected, (filters, size)


def case(number: int, **fields) -> InspectionCase:
    values = {"subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION", "institution_id": uscc(1),
              "origin": "CASE_ORIGIN_RANDOM_DRAW", "kind": "INSPECTION_KIND_DAILY",
              "state": "CASE_STATE_OPEN", **fields}
    return InspectionCase(case_id=f"C{number:02d}", subject_id=values["institution_id"],
                          opened_on="2026-01-05",
                          opened_at=datetime(2026, 1, 5, tzinfo=timezone.utc), **values)


def test_cases_filtered_every_way_page_in_key_order(inspection_db):
    """A combination with no index of its own (state, origin and kind; a state and an outcome;
    the published results of an institution and a kind) pages like one that has: the same cases as the filter asked whole, in order."""
    special = {"origin": "CASE_ORIGIN_COMPLAINT", "kind": "INSPECTION_KIND_SPECIAL"}
    cases = [
        case(1, **special, published=True), case(2, published=True), case(3, **special, state="CASE_STATE_CLOSED"),
        case(4, **special, outcome_kinds=["CASE_OUTCOME_SUBSIDY_RECOVERED"]),
        case(5, origin="CASE_ORIGIN_COMPLAINT"), case(6, kind="INSPECTION_KIND_SPECIAL"),
        case(7, **special, institution_id=uscc(2), published=True),
        case(8, state="CASE_STATE_CLOSED", outcome_kinds=["CASE_OUTCOME_SUBSIDY_RECOVERED",
                                                          "CASE_OUTCOME_CATALOGUE_REMOVED"]),
        case(9, outcome_kinds=["CASE_OUTCOME_CATALOGUE_REMOVED",
                               "CASE_OUTCOME_SUBSIDY_RECOVERED"]),
        case(10, **special, published=True), case(11), case(12, state="CASE_STATE_CLOSED", **special),
    ]
    for c in cases:
        c.save()
    recovered = "CASE_OUTCOME_SUBSIDY_RECOVERED"
    for filters, expected in (
            ({"state": "CASE_STATE_OPEN", **special}, ["C01", "C04", "C07", "C10"]),
            ({"state": "CASE_STATE_OPEN", "outcome_kinds": recovered}, ["C04", "C09"]),
            ({"state": "CASE_STATE_CLOSED", "outcome_kinds": recovered}, ["C08"]),
            ({"institution_id": uscc(1), "state": "CASE_STATE_OPEN", **special},
             ["C01", "C04", "C10"]),
            ({"institution_id": uscc(2), "subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION",
              "origin": "CASE_ORIGIN_COMPLAINT"}, ["C07"]),
            ({"state": "CASE_STATE_OPEN", "origin": "CASE_ORIGIN_RANDOM_DRAW",
              "outcome_kinds": "CASE_OUTCOME_CATALOGUE_REMOVED"}, ["C09"]),
            ({"kind": "INSPECTION_KIND_SPECIAL", "outcome_kinds": "CASE_OUTCOME_NONE_SUCH"},
             []),
            # ListPublishedResults: published, the institution's index, the kind checked
            ({"published": True, "institution_id": uscc(1), "kind": "INSPECTION_KIND_SPECIAL"},
             ["C01", "C10"])):
        # the database's own answer to the whole filter, for comparison
        assert sorted(c.case_id for c in InspectionCase.objects(**filters)) == expected
        for size in (1, 2, 3, 20):
            rows = every_page(lambda n, after, filters=filters:
                              inspection_db.list_cases(filters, n, after), size)
            assert [r.case_id for r in rows] == expected, (filters, size)


CASE_FILTERS = {"institution_id": uscc(1), "subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION",
                "state": "CASE_STATE_OPEN", "origin": "CASE_ORIGIN_COMPLAINT",
                "kind": "INSPECTION_KIND_SPECIAL", "outcome_kinds": "CASE_OUTCOME_NONE"}


@pytest.mark.parametrize("field", sorted(CASE_FILTERS))
def test_each_case_filter_has_its_index_and_an_institution_its_own(field):
    """ListCases' single filters are asked whole of an index (nothing left to check on the
    cases read); beside an institution, the institution's index is walked (its few cases)."""
    alone = {field: CASE_FILTERS[field]}
    assert indexed_filter(InspectionCase, "case_id", alone) == (alone, None)
    served, keep = indexed_filter(InspectionCase, "case_id", {"institution_id": uscc(1), **alone})
    assert served == {"institution_id": uscc(1)} and (keep is None) == (field == "institution_id")


def test_a_page_checked_on_the_rows_reads_on_until_it_is_full(inspection_db):
    """keyset_page(keep=...): rows that fail the test are skipped, however many in a row,
    and the page still holds `size` rows and a token only if one more passes."""
    for i in range(1, 31):
        case(i, state="CASE_STATE_CLOSED" if i % 7 else "CASE_STATE_OPEN").save()
    open_ = [f"C{i:02d}" for i in (7, 14, 21, 28)]
    keep = lambda c: c.state == "CASE_STATE_OPEN"  # noqa: E731
    rows, after = keyset_page(InspectionCase.objects(), "case_id", 3, None, keep=keep)
    assert [r.case_id for r in rows] == open_[:3] and after == "C21"
    rows, after = keyset_page(InspectionCase.objects(), "case_id", 3, after, keep=keep)
    assert [r.case_id for r in rows] == open_[3:] and after is None


def test_grades_filtered_every_way_page_in_key_order(grading_db):
    """ListGrades' eight combinations of year, grade and district, each through its own index
    (a descending one for the key alone): the same grades as a filter over all of them, in key
    order, across pages."""
    grades = []
    for i in range(24):
        year, grade = 2024 + i % 2, ("GRADE_A", "GRADE_B", "GRADE_C")[i % 3]
        district = ("410502", "410503")[i // 2 % 2]
        grades.append(dict(grade_id=f"{year}:{uscc(100 - i)}", year=year, grade=grade,
                           district_code=district))
        GradeRecord(institution_id=uscc(100 - i), system_id="default", system_hash="h",
                    score=0, revision=1, published_on=f"{year + 1}-01-05", **grades[-1]).save()
    values = {"year": 2025, "grade": "GRADE_A", "district_code": "410503"}
    for n in range(4):
        for names in combinations(sorted(values), n):
            filters = {name: values[name] for name in names}
            expected = sorted(g["grade_id"] for g in grades
                              if all(g[k] == v for k, v in filters.items()))
            assert expected
            for size in (1, 3, 50):
                rows = every_page(lambda size_, after, filters=filters:
                                  grading_db.grades_page(filters, size_, after), size)
                assert [r.grade_id for r in rows] == expected, (filters, size)
