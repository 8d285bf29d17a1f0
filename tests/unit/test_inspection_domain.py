"""Inspection's pure rules: the verifiable draw (same seed same result, consistent sampling,
recusal, a changed pool fails verification, never a conflicted inspector), the standalone
verifier, the articles and tiers of seed 001 ch.6, escalation, the due-process clocks across
the 2025 National Day holidays, the plan's defaults, triggers, masking."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from services.common.workdays import WorkdayCalendar
from services.inspection.domain import draw, rules
from tests.support import uscc

ROOT = Path(__file__).resolve().parents[2]
CAL = WorkdayCalendar()


def make_pool(n_institutions=300, n_inspectors=30, conflicts_per_inspector=5, minimum=0,
              ratios=None, team_size=2) -> dict:
    grades = ("A", "B", "C", "D", "UNGRADED")
    ratios = ratios or rules.DEFAULT_RATIOS_BP
    by = {g: [] for g in grades}
    ids = [uscc(i) for i in range(n_institutions)]
    for i, institution_id in enumerate(ids):
        by[grades[i % 5]].append(institution_id)
    inspectors = [f"INSP-{j:04d}" for j in range(n_inspectors)]
    conflicts = [(inspectors[j], ids[(j * 7 + k * 13) % n_institutions], "DECLARED_RELATION")
                 for j in range(n_inspectors) for k in range(conflicts_per_inspector)]
    return draw.build_pool(
        draw_id="d1", plan_id="p1", round_=1, seed_source="福彩3D 2026年第150期",
        strata={g: (ratios[g], by[g]) for g in grades}, minimum_count=minimum,
        team_size=team_size, inspectors=inspectors, conflicts=conflicts,
        excluded_institutions=[(uscc(99_999), "suspended during rectification")],
        excluded_inspectors=[])


def published(pool, seed, recusals=()):
    result = draw.run(pool, seed, [(r["institution_id"], r["inspector_id"]) for r in recusals])
    return draw.record(pool, draw.pool_hash(pool), seed, result, list(recusals))


# --- the draw -------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_draw_and_another_seed_another():
    pool = make_pool()
    first, again = draw.run(pool, "3 8 5"), draw.run(copy.deepcopy(pool), " 3  8 5 ")
    assert first == again  # white space in the published value does not matter
    assert draw.run(pool, "3 8 6")["drawn"] != first["drawn"]


def test_each_stratum_takes_its_ratio_rounded_up_with_the_smallest_tickets():
    pool = make_pool()
    result = draw.run(pool, "seed")
    for stratum, spec in pool["strata"].items():
        mine = [d for d in result["drawn"] if d["stratum"] == stratum]
        assert len(mine) == draw.sample_size(len(spec["institutions"]), spec["ratio_bp"])
        seed = bytes.fromhex(result["canonical_seed"])
        tickets = sorted(draw._ticket(seed, b"institution", i).hex()
                         for i in spec["institutions"])
        assert sorted(d["ticket"] for d in mine) == tickets[:len(mine)]
    assert sum(d["top_up"] for d in result["drawn"]) == 0


def test_the_half_year_minimum_is_topped_up_from_the_rest_of_the_pool():
    pool = make_pool(ratios={"A": 100, "B": 100, "C": 100, "D": 100, "UNGRADED": 100},
                     minimum=rules.minimum_count(300, rules.MINIMUM_BP))
    result = draw.run(pool, "seed")
    assert len(result["drawn"]) == 15  # 5 % of 300; the ratios alone give 5 x 1
    assert sum(d["top_up"] for d in result["drawn"]) == 10


def test_every_inspection_has_its_team_and_no_conflicted_inspector_across_1000_seeds():
    pool = make_pool(n_institutions=120, n_inspectors=12, conflicts_per_inspector=10)
    conflicted = draw.conflict_map(pool)
    for n in range(1000):
        for entry in draw.run(pool, f"seed {n}")["drawn"]:
            team = entry["inspector_ids"]
            assert len(team) == 2 and len(set(team)) == 2
            assert not set(team) & conflicted.get(entry["institution_id"], set())


def test_recusing_one_inspector_replaces_only_that_person():
    pool = make_pool()
    before = draw.run(pool, "seed")["drawn"]
    target = before[3]
    gone = target["inspector_ids"][0]
    after = draw.run(pool, "seed", [(target["institution_id"], gone)])["drawn"]
    for old, new in zip(before, after, strict=True):
        if old["institution_id"] != target["institution_id"]:
            assert old == new
    new_team = after[3]["inspector_ids"]
    assert gone not in new_team and target["inspector_ids"][1] in new_team
    assert len(set(new_team) - set(target["inspector_ids"])) == 1
    assert draw.team_for(pool, "seed", target["institution_id"], {gone}) == new_team


def test_a_published_draw_verifies_and_a_changed_pool_or_result_does_not():
    pool = make_pool()
    first = draw.run(pool, "2026150: 3 8 5")["drawn"][0]
    record = published(pool, "2026150: 3 8 5",
                       [{"institution_id": first["institution_id"],
                         "inspector_id": first["inspector_ids"][0], "reason": "relative"}])
    assert draw.verify(record) == []
    changed = copy.deepcopy(record)
    changed["pool"]["strata"]["A"]["institutions"].append(uscc(5000))
    problems = draw.verify(changed)
    assert problems and "not to the commitment" in problems[0]
    forged = copy.deepcopy(record)
    forged["result"]["drawn"][0]["inspector_ids"] = ["INSP-0000", "INSP-0001"]
    assert any("another result" in p for p in draw.verify(forged))
    hidden = copy.deepcopy(record)
    hidden["recusals"] = []
    assert draw.verify(hidden)  # a recusal left out of the record shows


def test_the_standalone_verifier_reproduces_a_draw_from_its_record_alone(tmp_path):
    record = published(make_pool(), "beacon round 123456")
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"record_json": json.dumps(record, ensure_ascii=False)}))
    # run with -I (isolated: no site-packages, no repository on the path), from elsewhere
    script = ROOT / "services" / "inspection" / "verify_draw.py"
    ok = subprocess.run([sys.executable, "-I", str(script), str(path)], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout
    record["pool"]["inspectors"].remove("INSP-0003")
    path.write_text(json.dumps(record, ensure_ascii=False))
    bad = subprocess.run([sys.executable, "-I", str(script), str(path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "NOT VERIFIED" in bad.stdout


def test_the_pool_hash_is_over_the_canonical_sorted_pool():
    pool = make_pool()
    shuffled = copy.deepcopy(pool)
    shuffled["inspectors"].reverse()
    assert draw.pool_hash(pool) != draw.pool_hash(shuffled)  # the committed order is sorted
    rebuilt = draw.build_pool(
        draw_id="d1", plan_id="p1", round_=1, seed_source=pool["seed_source"],
        strata={g: (s["ratio_bp"], list(reversed(s["institutions"])))
                for g, s in pool["strata"].items()},
        minimum_count=0, team_size=2, inspectors=list(reversed(pool["inspectors"])),
        conflicts=[tuple(c) for c in reversed(pool["conflicts"])],
        excluded_institutions=[tuple(e) for e in pool["excluded_institutions"]],
        excluded_inspectors=[])
    assert draw.pool_hash(rebuilt) == draw.pool_hash(pool)


def test_an_institution_without_enough_eligible_inspectors_is_unstaffed():
    pool = make_pool(n_institutions=10, n_inspectors=3, conflicts_per_inspector=0)
    target = draw.run(pool, "s")["drawn"][0]["institution_id"]
    pool["conflicts"] = [["INSP-0000", target, "EMPLOYER"], ["INSP-0001", target, "EMPLOYER"]]
    entry = next(d for d in draw.run(pool, "s")["drawn"] if d["institution_id"] == target)
    assert entry["unstaffed"] and entry["inspector_ids"] == []


# --- conflicts ----------------------------------------------------------------------------------
def test_conflicts_employer_relations_former_employment_within_3_years_and_last_team():
    a, b, c, d, e = (uscc(i) for i in range(1, 6))
    inspector = {"inspector_id": "I1", "employer_id": a, "relations": [
        {"institution_id": b, "kind": "RELATION_KIND_PERSONAL"},
        {"institution_id": c, "kind": "RELATION_KIND_PAST_EMPLOYMENT", "until": "2023-03-01"},
        {"institution_id": d, "kind": "RELATION_KIND_PAST_EMPLOYMENT", "until": "2023-02-28"}]}
    found = dict(rules.conflicts_of(inspector, {a, b, c, d, e}, date(2026, 3, 1),
                                    {e: {"I1", "I2"}}))
    assert found == {a: "EMPLOYER", b: "DECLARED_RELATION", c: "FORMER_EMPLOYER",
                     e: "LAST_TEAM"}  # d: left more than 3 years before


# --- articles, tiers, escalation (ch.6 art.1-4) -----------------------------------------------------
def test_every_item_of_ch6_has_its_tier():
    assert [len([a for a in rules.ARTICLES if a.startswith(f"ch.6 art.{n}(")])
            for n in (1, 2, 3, 4)] == [4, 8, 8, 10]
    assert rules.article("ch.6 art.1(2)").tier == rules.TIER_1
    assert rules.article(" ch.6 art.3 (5) ").tier == rules.TIER_3
    assert rules.article("ch.6 art.4(10)").tier == rules.TIER_4
    assert rules.article("002 §二(三)4").tier == rules.TIER_NONE
    for wrong in ("ch.6 art.1(5)", "ch.6 art.5(1)", "art.3(1)", "", "ch.6 art.2(9)"):
        assert rules.article(wrong) is None


def test_a_tier3_act_after_an_accepted_rectification_proposes_tier_4():
    lapse = rules.article("ch.6 art.3(3)")
    assert rules.finding_tier(lapse, rules.EVALUATION_ORGANISATION, []) == (rules.TIER_3, "", "")
    assert rules.finding_tier(lapse, rules.EVALUATION_ORGANISATION, ["dec-1"]) == (
        rules.TIER_4, "ch.6 art.4(6)", "dec-1")
    tier2 = rules.article("ch.6 art.2(8)")
    assert rules.finding_tier(tier2, rules.EVALUATION_ORGANISATION, ["dec-1"])[0] == rules.TIER_2


def test_seed_002_items_bind_every_subject_and_ch6_only_evaluation_organisations():
    assert rules.article_fits_subject(rules.article("002 §二(三)1"),
                                      "SUBJECT_KIND_TRAINING_INSTITUTION")
    assert not rules.article_fits_subject(rules.article("ch.6 art.3(3)"),
                                          "SUBJECT_KIND_ONLINE_PLATFORM")


def test_decision_effects_by_tier():
    org = rules.EVALUATION_ORGANISATION
    assert rules.decision_effects(rules.TIER_3, org) == {
        "suspend_filing": True, "terminate_filing": False, "integrity_record": True,
        "black_list": False, "publish": True}
    assert rules.decision_effects(rules.TIER_4, org)["terminate_filing"]
    assert rules.decision_effects(rules.TIER_4, org)["black_list"]
    assert not rules.decision_effects(rules.TIER_4, "SUBJECT_KIND_ONLINE_PLATFORM")[
        "terminate_filing"]


# --- due-process clocks across holidays -------------------------------------------------------------
def test_the_statement_period_is_5_working_days_across_national_day_2025():
    # Friday 26 September; Sunday 28 September is a make-up working day; 1-8 October off.
    assert rules.statement_due(CAL, date(2025, 9, 26), 5).date == date(2025, 10, 10)
    assert rules.may_decide(rules.NOTIFIED, False, "2025-10-10", date(2025, 10, 10))
    assert rules.may_decide(rules.NOTIFIED, False, "2025-10-10", date(2025, 10, 11)) is None
    assert rules.may_decide(rules.NOTIFIED, True, "2025-10-10", date(2025, 9, 29)) is None
    assert rules.may_decide(rules.AWAITING, False, "2025-10-10", date(2025, 9, 29)) is None
    assert "not been notified" in rules.may_decide(rules.INSPECTED, False, "", date(2025, 9, 29))


def test_the_review_period_is_15_working_days_and_rectification_20():
    # Saturday 11 October 2025 is a make-up working day.
    assert rules.review_due(CAL, date(2025, 9, 30), 15).date == date(2025, 10, 28)
    assert rules.rectification_due(CAL, date(2025, 9, 30), 20).date == date(2025, 11, 4)


def test_a_year_the_calendar_does_not_know_gives_a_provisional_deadline():
    due = rules.statement_due(CAL, date(2031, 12, 30), 5)
    assert due.provisional and due.date == date(2032, 1, 6)


# --- the plan ---------------------------------------------------------------------------------------
def plan_request(**overrides):
    request = {"year": 2026, "title": "2026年度监管计划", "content": "评价活动合规性",
               "kinds": ["INSPECTION_KIND_DAILY"],
               "rounds": [{"round": 1, "half": 1, "window_from": "2026-03-01",
                           "window_to": "2026-06-30"},
                          {"round": 2, "half": 2, "window_from": "2026-09-01",
                           "window_to": "2026-11-30"}]}
    request.update(overrides)
    return request


def test_the_plan_defaults():
    errors = []
    plan = rules.check_plan(plan_request(ratios=[{"stratum": "d", "ratio_bp": 5000}]), errors)
    assert errors == []
    assert plan["ratios"] == {"D": 5000, "C": 1000, "B": 200, "A": 100, "UNGRADED": 1000}
    assert plan["minimum_bp"] == 500 and plan["team_size"] == 2


def test_a_plan_below_the_minimums_is_refused_with_every_problem():
    errors = []
    rules.check_plan(plan_request(minimum_bp=400, team_size=1, rounds=[
        {"round": 1, "half": 1, "window_from": "2026-07-01", "window_to": "2026-08-01"}]),
        errors)
    assert any(e.startswith("minimum_bp") for e in errors)
    assert any(e.startswith("team_size") for e in errors)
    assert any(e.startswith("rounds[0]: the window") for e in errors)
    assert any("each half-year" in e for e in errors)


# --- triggers and masking ----------------------------------------------------------------------------
def test_a_burst_is_far_above_the_usual_month_and_needs_history():
    history = {"2025-01": 40, "2025-02": 60, "2025-03": 50}
    assert rules.is_burst(history, "2025-04", 300, 200, 5)        # 300 > 5 x 50
    assert not rules.is_burst(history, "2025-04", 240, 200, 5)    # 240 <= 250
    assert not rules.is_burst(history, "2025-04", 199, 200, 1)    # below the minimum batch
    assert not rules.is_burst({}, "2025-04", 5000, 200, 5)        # no history, no judgement
    # months without certificates count as zero
    assert rules.is_burst({"2024-06": 100}, "2025-06", 201, 200, 5)


def test_public_text_masks_id_numbers_phones_and_titled_names():
    text = "考生张三丰先生(410502199003070012)电话13812345678"
    masked = rules.mask(text)
    assert "410502199003070012" not in masked and "410502********0012" in masked
    assert "138****5678" in masked and "张**先生" in masked


@pytest.mark.parametrize("entry, problem", [
    ({"outcome": "CASE_OUTCOME_SUBSIDY_RECOVERED"}, "amount_fen"),
    ({"outcome": "CASE_OUTCOME_TRANSFERRED_TO_JUDICIAL"}, "authority"),
    ({"outcome": "CASE_OUTCOME_RECTIFICATION_ORDERED"}, "due_on"),
    ({"outcome": "CASE_OUTCOME_CASE_NOTICE_PUBLISHED", "amount_fen": "5"}, "amount_fen"),
])
def test_outcomes_carry_what_they_need(entry, problem):
    errors = []
    rules.check_outcomes([entry], errors, date(2026, 1, 5))
    assert errors and errors[0].startswith(f"outcomes[0].{problem}")
