"""Grading's rules as pure functions: the indicator system and its one check, the default
catalogue pinned, scoring at the band edges, direct D, UNGRADED, the explanations, facts and
offences, the lists and the rewards. Seeds 000, 001 ch.6-7, 003."""
from __future__ import annotations

import copy
import json
from datetime import date

import numpy as np
import pytest

from services.grading import domain
from services.grading.domain import scoring

# The default catalogue's canonical hash (SHA-256 of its RFC 8785 JSON): a change to the file
# is a new version of the system, and must be a deliberate one.
DEFAULT_HASH = "50834205ae1945aa0aa91fc7c4583c61a1a7f6cfcdf1a26a00f25b62cb1137a0"


def catalogue() -> dict:
    with open(domain.DEFAULT_CATALOGUE_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def small_system(**overrides) -> dict:
    """A version of four leaves: 40 points awarded, 30 by deduction (10 a time, floor 5),
    20 by rate, 10 by deduction computed from sanctions."""
    data = {
        "system_id": "small", "version": "1", "title": "small",
        "dimensions": [{"id": "1", "name": "诚信与守法", "children": [{
            "id": "1.1", "name": "first", "children": [{
                "id": "1.1.1", "name": "second", "leaves": [
                    {"id": "P", "name": "points", "max_centi": 4000,
                     "rule": {"kind": domain.POINTS}, "evidence": ["证明"]},
                    {"id": "D", "name": "deduction", "max_centi": 3000,
                     "rule": {"kind": domain.DEDUCTION, "per_occurrence_centi": 1000,
                              "floor_centi": 500}},
                    {"id": "R", "name": "rate", "max_centi": 2000,
                     "rule": {"kind": domain.RATE}},
                    {"id": "S", "name": "sanctions", "max_centi": 1000,
                     "rule": {"kind": domain.DEDUCTION, "per_occurrence_centi": 500},
                     "platform_source": "FACT_KIND_SANCTION"}]}]}]}]}
    data.update(overrides)
    return data


def score_rows(system, rows, sources=None, **kwargs):
    values = np.array(rows, dtype=np.int64)
    sources = np.full(values.shape, scoring.SOURCE_DECLARED) if sources is None else \
        np.array(sources)
    return domain.score(system, values, sources, **kwargs)


# --- the default catalogue ----------------------------------------------------------------------
def test_default_catalogue_has_the_published_shape_and_sums_to_100():
    system = domain.default_system()
    assert system.counts == domain.SHAPE == (3, 21, 49, 58)
    assert [name for _, name, _ in system.tree] == ["诚信与守法", "培训条件与质量", "社会评价调查"]
    assert int(system.max.sum()) == 10000
    assert system.system_id == "default" and "default catalogue" in system.label
    assert "may replace" in system.label
    assert system.thresholds == domain.Thresholds(9000, 7000, 4000)
    assert [o.legal_basis for o in system.offences][2:] == [
        "001 ch.6 art.4(5)", "001 ch.6 art.4(4)", "001 ch.6 art.3(7)"]


def test_default_catalogue_hash_is_pinned_and_the_file_is_its_canonical_content():
    system = domain.default_system()
    assert system.canonical_hash == DEFAULT_HASH
    assert domain.canonical_hash(catalogue()) == DEFAULT_HASH  # the file is stored normalised


def test_default_catalogue_passes_the_same_check_as_a_committee_version():
    assert domain.parse_system(catalogue()).canonical_hash == DEFAULT_HASH


def test_platform_leaves_of_the_default_catalogue_are_deductions():
    system = domain.default_system()
    sources = {leaf.platform_source for leaf in system.leaves if leaf.platform_source}
    assert sources == {"FACT_KIND_FILING_VIOLATION", "FACT_KIND_SANCTION",
                       "FACT_KIND_CERTIFICATE_INVALIDATION",
                       "FACT_KIND_LATE_CERTIFICATE_REPORTING", "FACT_KIND_REFUND_COMPLAINT",
                       "FACT_KIND_COURSE_CHEATING"}


# --- the one check ----------------------------------------------------------------------------------
def test_a_malformed_version_is_refused_with_every_violation():
    data = catalogue()
    data["system_id"] = "bad"
    leaves = data["dimensions"][0]["children"][0]["children"][0]["leaves"]
    leaves[0]["max_centi"] -= 50                      # points no longer sum to 100
    del data["dimensions"][1]["children"][0]["children"][0]["leaves"][0]["rule"]  # no rule
    data["dimensions"][2]["children"][0]["id"] = "1.1"  # a duplicate id
    with pytest.raises(ValueError) as refused:
        domain.parse_system(data)
    violations = refused.value.args[0]
    assert any("must sum to 100.00, not 99.50" in v for v in violations)
    assert any("dimensions[1].children[0].children[0].leaves[0].rule: a leaf needs a scoring "
               "rule" in v for v in violations)
    assert any("dimensions[2].children[0].id: duplicate id '1.1'" in v for v in violations)


def test_version_checks_rules_thresholds_and_offences():
    data = small_system(thresholds={"a_centi": 7000, "b_centi": 9000, "c_centi": 4000},
                        direct_d_offences=[{"id": "X", "title": "t", "legal_basis": "b",
                                            "triggers": [{"fact": "FACT_KIND_NOPE"}]}])
    leaves = data["dimensions"][0]["children"][0]["children"][0]["leaves"]
    leaves[1]["rule"]["per_occurrence_centi"] = 0
    leaves[2]["platform_source"] = "FACT_KIND_SANCTION"
    with pytest.raises(ValueError) as refused:
        domain.parse_system(data)
    text = "\n".join(refused.value.args[0])
    assert "per_occurrence_centi: a deduction must be > 0" in text
    assert "its rule must be DEDUCTION" in text
    assert "thresholds: must be 0 < c_centi < b_centi < a_centi" in text
    assert "triggers[0].fact" in text


def test_defaults_fill_thresholds_and_offences_and_are_in_the_hash():
    system = domain.parse_system(small_system())
    assert system.thresholds.to_dict() == domain.DEFAULT_THRESHOLDS
    assert [o.id for o in system.offences] == ["D1", "D2", "D3", "D4", "D5"]
    assert system.to_dict()["thresholds"] == domain.DEFAULT_THRESHOLDS
    other = domain.parse_system(small_system(thresholds={"a_centi": 8500, "b_centi": 7000,
                                                         "c_centi": 4000}))
    assert other.canonical_hash != system.canonical_hash


def test_the_hash_ignores_key_order_and_defaults_left_out():
    data = small_system()
    shuffled = json.loads(json.dumps(data))
    shuffled = dict(reversed(list(shuffled.items())))
    assert domain.parse_system(shuffled).canonical_hash == \
        domain.parse_system(data).canonical_hash


def test_the_built_in_id_is_reserved_for_committees():
    with pytest.raises(ValueError) as refused:
        domain.parse_system(small_system(system_id="default"), reserved_ids=("default",))
    assert "reserved" in refused.value.args[0][0]


# --- scoring ------------------------------------------------------------------------------------------
def test_89_99_is_b_and_90_00_is_a():
    system = domain.parse_system(small_system())
    # points 3999 or 4000, deduction 0 occurrences (30), rate 100 % (20), sanctions 0 (10)
    scored = score_rows(system, [[3999, 0, 10000, 0], [4000, 0, 10000, 0]])
    assert scored.totals.tolist() == [9999, 10000]
    low = score_rows(system, [[3999 - 1000, 0, 10000, 0], [4000 - 1000, 0, 10000, 0]])
    assert low.totals.tolist() == [8999, 9000]
    assert low.grades.tolist() == [scoring.GRADE_B, scoring.GRADE_A]


def test_band_edges_of_b_c_d():
    system = domain.parse_system(small_system())
    rows = [[p, 3, 0, 2] for p in (0, 0)]  # deduction floors at 5, sanctions at 0
    assert score_rows(system, rows).totals.tolist() == [500, 500]
    totals = {7000: scoring.GRADE_B, 6999: scoring.GRADE_C, 4000: scoring.GRADE_C,
              3999: scoring.GRADE_D}
    for total, grade in totals.items():
        assert system.thresholds.band(total) == grade


def test_rules_points_deduction_with_floor_and_rate_rounded_half_up():
    system = domain.parse_system(small_system())
    scored = score_rows(system, [[1234, 1, 3333, 1], [5000, 9, 1, 7]])
    assert scored.scores.tolist()[0] == [1234, 2000, 667, 500]   # 2000 * 0.3333 = 666.6
    assert scored.scores.tolist()[1] == [4000, 500, 0, 0]        # clipped, floored, 0.2 -> 0


def test_a_direct_d_offence_beats_100_points():
    system = domain.parse_system(small_system())
    scored = score_rows(system, [[4000, 0, 10000, 0]], direct_d=np.array([True]))
    assert scored.totals.tolist() == [10000]
    assert scored.banded.tolist() == [scoring.GRADE_A]
    assert scored.grades.tolist() == [scoring.GRADE_D]
    assert scored.what_if_count.tolist() == [0]  # no indicator lifts a direct D


def test_ungraded_is_never_d_even_with_an_offence():
    system = domain.parse_system(small_system())
    scored = score_rows(system, [[0, 9, 0, 9]], direct_d=np.array([True]),
                        ungraded=np.array([True]))
    assert scored.grades.tolist() == [scoring.UNGRADED]


def test_ungraded_reason_reads_the_filing_dates():
    assert domain.ungraded_reason("2025-01-01", None, None, 2025) is None
    assert "less than the full grading year 2025" in domain.ungraded_reason(
        "2025-01-02", None, None, 2025)
    assert "expired on 2025-06-30" in domain.ungraded_reason("2020-05-01", "2025-06-30",
                                                             "EXPIRED", 2025)
    # a termination within the year is an offence, not a reason to be ungraded
    assert domain.ungraded_reason("2020-05-01", "2025-06-30", "TERMINATED", 2025) is None
    assert domain.in_population("2020-05-01", "2025-06-30", 2025)
    assert not domain.in_population("2020-05-01", "2024-12-31", 2025)
    assert not domain.in_population("2026-01-01", None, 2025)


def test_an_override_replaces_the_band_and_a_direct_d_stands_over_it():
    system = domain.parse_system(small_system())
    scored = score_rows(system, [[4000, 0, 10000, 0]] * 2, override=np.array([2, 2]),
                        direct_d=np.array([False, True]))
    assert scored.grades.tolist() == [scoring.GRADE_B, scoring.GRADE_D]


def test_top_reasons_only_scored_leaves_that_lost_largest_first():
    system = domain.default_system()
    leaves = len(system.leaves)
    values = np.zeros((1, leaves), dtype=np.int64)
    sources = np.full((1, leaves), scoring.SOURCE_DECLARED)
    for c, leaf in enumerate(system.leaves):  # full points everywhere...
        values[0, c] = leaf.max_centi if leaf.kind == domain.POINTS else (
            10000 if leaf.kind == domain.RATE else 0)
    lose = {"2.7.1.1": 0, "1.2.1.1": 1, "2.1.1.1": 50, "3.3.2.1": 5000, "1.1.1.1": 150}
    for leaf_id, value in lose.items():
        values[0, system.index[leaf_id]] = value
    sources[0, system.index["2.2.1.1"]] = scoring.SOURCE_NONE  # not declared: loses 2 points
    scored = domain.score(system, values, sources)
    names = [system.leaves[c].id for c in scored.reasons(0)]
    # lost: 2.7.1.1 4.00, 2.1.1.1 1.50, 1.1.1.1 0.50, 1.2.1.1 1.50, 3.3.2.1 1.00
    assert names == ["2.7.1.1", "1.2.1.1", "2.1.1.1", "3.3.2.1"]  # ties in catalogue order
    assert "2.2.1.1" not in names  # unscored: it lost points but was never scored


def test_what_if_is_the_fewest_leaves_reaching_the_next_band():
    system = domain.parse_system(small_system())
    # total 6000: C; B needs 7000: the gap 1000 is closed by one leaf (rate lost 2000)
    scored = score_rows(system, [[4000, 1, 0, 2]])
    assert scored.totals.tolist() == [6000] and scored.grades.tolist() == [scoring.GRADE_C]
    assert scored.next_grade.tolist() == [scoring.GRADE_B] and scored.gap.tolist() == [1000]
    assert [system.leaves[c].id for c in scored.what_if(0)] == ["R"]
    # total 3500: D; C needs 4000 -> the largest loss first (points lost 3000) suffices
    scored = score_rows(system, [[1000, 1, 2500, 2]])
    assert scored.totals.tolist() == [1000 + 2000 + 500 + 0]
    assert [system.leaves[c].id for c in scored.what_if(0)] == ["P"]
    # a gap two leaves must close: 4300 -> 7000 (losses P 1900, R 1800, D 1000, S 1000)
    scored = score_rows(system, [[2100, 1, 1000, 2]])
    assert scored.totals.tolist() == [4300] and scored.gap.tolist() == [2700]
    assert [system.leaves[c].id for c in scored.what_if(0)] == ["P", "R"]


def test_what_if_is_empty_for_a_and_for_an_override():
    system = domain.parse_system(small_system())
    scored = score_rows(system, [[4000, 0, 10000, 0], [0, 0, 0, 0]],
                        override=np.array([0, 1]))
    assert scored.what_if_count.tolist() == [0, 0]


def test_nothing_declared_scores_zero_but_platform_leaves_count_no_facts_as_none():
    system = domain.parse_system(small_system())
    values, sources = domain.assemble(system, np.full((1, 4), -1), np.full((1, 4), -1))
    assert sources.tolist() == [[scoring.SOURCE_NONE] * 3 + [scoring.SOURCE_PLATFORM]]
    assert domain.score(system, values, sources).totals.tolist() == [1000]


def test_reviewed_beats_declared_and_facts_beat_both_with_their_event_ids():
    system = domain.parse_system(small_system())
    values, sources = domain.assemble(system, np.array([[4000, 0, 10000, 0]]),
                                      np.array([[3000, -1, -1, 0]]))
    assert values.tolist() == [[3000, 0, 10000, 0]]
    assert sources.tolist() == [[scoring.SOURCE_REVIEWED, scoring.SOURCE_DECLARED,
                                 scoring.SOURCE_DECLARED, scoring.SOURCE_REVIEWED]]
    facts = [{"kind": "FACT_KIND_SANCTION", "event_id": "e1"},
             {"kind": "FACT_KIND_SANCTION", "event_id": "e2"}]
    refs = domain.apply_facts(system, values[0], sources[0], facts)
    assert refs == {"S": ["e1", "e2"]}
    assert values[0, 3] == 2 and sources[0, 3] == scoring.SOURCE_PLATFORM
    refs = domain.apply_facts(system, values[0], sources[0], facts, fixed={3: 0})
    assert refs == {} and sources[0, 3] == scoring.SOURCE_APPEAL


def test_scoring_ten_thousand_rows_is_vectorised():
    system = domain.default_system()
    rng = np.random.default_rng(7)
    values = rng.integers(0, 200, size=(10_000, len(system.leaves)))
    sources = np.full(values.shape, scoring.SOURCE_DECLARED)
    scored = domain.score(system, values, sources)
    assert scored.scores.shape == (10_000, 58)
    assert (scored.totals == scored.scores.sum(axis=1)).all()
    assert ((scored.scores >= 0) & (scored.scores <= system.max)).all()


# --- facts and offences ------------------------------------------------------------------------------
def test_facts_in_year_keep_the_year_and_drop_reversed():
    facts = [{"kind": "FACT_KIND_SANCTION", "on": "2025-03-01", "event_id": "a"},
             {"kind": "FACT_KIND_SANCTION", "on": "2024-12-31", "event_id": "b"},
             {"kind": "FACT_KIND_SANCTION", "on": "2025-12-31", "event_id": "c",
              "reversed": "2026-01-05"}]
    assert [f["event_id"] for f in domain.facts_in_year(facts, 2025)] == ["a"]


def test_offences_by_basis_prefix_invalidation_reason_and_reviewer_finding():
    system = domain.default_system()
    facts = [
        {"kind": "FACT_KIND_SANCTION", "basis": "001 ch.6 art.4(5)", "event_id": "s1",
         "decision_ref": "dec-1"},
        {"kind": "FACT_KIND_SANCTION", "basis": "001 ch.6 art.3(5)", "event_id": "s2"},
        {"kind": "FACT_KIND_CERTIFICATE_INVALIDATION",
         "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "event_id": "c1"}]
    found = domain.offences_found(system, facts, [{"offence_id": "D5", "reason": "refused"}])
    assert [(o["offence_id"], o.get("event_ids"), o.get("finding")) for o in found] == [
        ("D3", ["s1"], None), ("D5", [], "refused")]
    assert found[0]["decision_refs"] == ["dec-1"]
    several = [{"kind": "FACT_KIND_SANCTION", "event_id": "s3",
                "basis": "001 ch.6 art.3(5); 001 ch.6 art.4(4)"}]  # as inspection joins them
    assert [o["offence_id"] for o in domain.offences_found(system, several, [])] == ["D4"]
    fraud = [{"kind": "FACT_KIND_CERTIFICATE_INVALIDATION",
              "reason": "INVALIDATION_REASON_FRAUD", "event_id": "c2"}]
    assert [o["offence_id"] for o in domain.offences_found(system, fraud, [])] == ["D3"]


# --- requests -----------------------------------------------------------------------------------------
def test_values_unknown_ids_duplicates_ranges_and_wrong_fields_all_reported():
    system = domain.parse_system(small_system())
    errors: list[str] = []
    domain.parse_values(system, [
        {"indicator_id": "P", "points_centi": 4001},
        {"indicator_id": "nope", "points_centi": 1},
        {"indicator_id": "D", "points_centi": 5},
        {"indicator_id": "R", "rate_basis_points": 10001},
        {"indicator_id": "R", "rate_basis_points": 1}], final=True, errors=errors)
    assert errors == [
        "values[0].points_centi: must be 0-4000 for indicator P",
        "values[0].evidence: indicator P needs evidence (证明)",
        "values[1].indicator_id: 'nope' is not a third-level indicator of small",
        "values[2].points_centi: indicator D is scored by DEDUCTION: give occurrences",
        "values[3].rate_basis_points: must be 0-10000 for indicator R",
        "values[4].indicator_id: R given twice"]


def test_overall_judgement_needs_its_written_reason():
    errors: list[str] = []
    assert domain.parse_overall({"grade": "GRADE_B"}, errors) == {"grade": 2, "reason": ""}
    assert errors == ["overall.reason: required: an overall judgement is written and audited"]
    errors = []
    domain.parse_overall({"grade": "GRADE_UNGRADED", "reason": "x"}, errors)
    assert "overall.grade" in errors[0]


# --- lists and rewards -----------------------------------------------------------------------------
def test_black_list_period_between_three_months_and_three_years():
    decided = date(2025, 11, 30)
    assert domain.publish_until(decided) == date(2028, 11, 30)
    assert domain.publish_until(decided, 1) == date(2026, 2, 28)  # at least 3 months
    assert domain.publish_until(decided, 99) == date(2028, 11, 30)  # at most 3 years
    assert domain.repair_from(decided) == date(2026, 2, 28)


def test_credit_repair_only_after_the_minimum_and_once_at_a_time():
    listed = date(2025, 6, 10)
    assert "from 2025-09-10" in domain.repair_refusal(domain.LISTED, listed, date(2025, 9, 9),
                                                      False)
    assert domain.repair_refusal(domain.LISTED, listed, date(2025, 9, 10), False) is None
    assert "pending" in domain.repair_refusal(domain.LISTED, listed, date(2026, 1, 1), True)
    assert "no longer" in domain.repair_refusal(domain.REMOVED, listed, date(2026, 1, 1), False)


def test_rewards_are_strictly_over_4000_in_an_occupation_or_10000_a_year():
    assert domain.rewards_due(2025, 10000, {"4-10-01-02": 4000}) == []
    due = domain.rewards_due(2025, 10001, {"4-10-01-02": 4001, "4-03-02-01": 10})
    assert [k for k, _ in due] == ["occupation:2025:4-10-01-02", "certificates:2025"]


def test_praised_three_years_running():
    assert domain.praised_running({2023, 2024, 2025}, 2025)
    assert not domain.praised_running({2022, 2024, 2025}, 2025)


def test_serious_sanctions_are_tier_four_or_asked_for():
    assert domain.serious("SANCTION_TIER_TERMINATION", False)
    assert domain.serious("SANCTION_TIER_WARNING", True)
    assert not domain.serious("SANCTION_TIER_WARNING", False)


def test_a_copy_of_the_catalogue_with_a_changed_name_is_another_version():
    data = copy.deepcopy(catalogue())
    data["dimensions"][0]["children"][0]["name"] += "。"
    assert domain.parse_system(data).canonical_hash != DEFAULT_HASH
