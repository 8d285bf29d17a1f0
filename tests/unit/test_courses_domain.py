"""The course review's pure rules: every threshold of the question-bank rules on both sides
of its edge, the prohibited words, copyright, reuse (partial, with small edits, unrelated),
item statistics, employers' standing and ratings. Seed 004; seed 002 §5."""
from __future__ import annotations

import random

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.courses.domain import checks, content, learning, lifecycle, reuse
from tests.course_builders import (
    FILL_IN,
    SINGLE,
    TRUE_FALSE,
    bank,
    bank_with,
    body_text,
    course,
    question,
)


def parsed(data: dict) -> dict:
    errors: list[str] = []
    body = content.parse_content(data, errors)
    assert errors == []
    return body


def rules(body: dict) -> list[str]:
    return [f["rule"] for f in checks.static_findings(body)]


def test_a_complete_course_has_no_finding():
    assert checks.static_findings(parsed(course())) == []


@pytest.mark.parametrize("part", ["introduction", "catalogue", "resources", "questions"])
def test_each_missing_part_is_named(part):
    data = course()
    data[part] = "" if part == "introduction" else []
    found = [f for f in checks.static_findings(parsed(data)) if f["rule"] == checks.PART_MISSING]
    assert [f["items"] for f in found] == [[part]]
    assert found[0]["severity"] == checks.ERROR


def test_one_question_type_is_too_few_two_are_enough():
    assert checks.TOO_FEW_TYPES in rules(parsed(course(questions=bank(10, types=(SINGLE,)))))
    assert checks.TOO_FEW_TYPES not in rules(parsed(course(questions=bank(10))))


def test_a_type_under_20_percent_is_named_exactly_20_is_enough():
    under = parsed(course(questions=bank_with({SINGLE: 9, TRUE_FALSE: 1, FILL_IN: 10})))
    found = [f for f in checks.static_findings(under) if f["rule"] == checks.TYPE_UNDER_SHARE]
    assert len(found) == 1 and found[0]["items"][0] == TRUE_FALSE
    assert "questions[9] q9" in found[0]["items"]
    # 19 of 100 is under, 20 of 100 is not
    assert checks.TYPE_UNDER_SHARE in rules(parsed(course(
        hours=6, questions=bank_with({SINGLE: 81, TRUE_FALSE: 19}))))
    assert checks.TYPE_UNDER_SHARE not in rules(parsed(course(
        hours=6, questions=bank_with({SINGLE: 80, TRUE_FALSE: 20}))))


@pytest.mark.parametrize("hours,enough,short", [
    (1.0, 10, 9), (2.0, 10, 9),        # <= 2 h: 10
    (2.5, 20, 19), (5.0, 20, 19),      # 2 < h <= 5: 20
    (5.5, 40, 39), (40.0, 40, 39),     # > 5 h: 40
])
def test_question_count_by_class_hours_on_both_sides(hours, enough, short):
    assert checks.required_questions(hours) == enough
    assert checks.TOO_FEW_QUESTIONS not in rules(parsed(course(hours=hours, questions=bank(enough))))
    found = rules(parsed(course(hours=hours, questions=bank(short))))
    assert checks.TOO_FEW_QUESTIONS in found


def test_the_hours_edges_themselves():
    assert checks.required_questions(2.0) == 10
    assert checks.required_questions(2.01) == 20
    assert checks.required_questions(5.0) == 20
    assert checks.required_questions(5.01) == 40


def test_one_knowledge_point_in_two_types_is_found_in_one_type_is_not():
    questions = bank(10)
    questions[0]["knowledge_point"] = questions[1]["knowledge_point"] = "婴儿喂养的温度"
    assert questions[0]["type"] != questions[1]["type"]
    found = [f for f in checks.static_findings(parsed(course(questions=questions)))
             if f["rule"] == checks.POINT_IN_TWO_TYPES]
    assert len(found) == 1 and found[0]["items"] == ["questions[0] q0", "questions[1] q1"]
    same_type = bank(10)
    same_type[0]["knowledge_point"] = same_type[2]["knowledge_point"] = "婴儿喂养的温度"
    assert checks.POINT_IN_TWO_TYPES not in rules(parsed(course(questions=same_type)))


def test_a_question_unrelated_to_the_catalogue_is_named():
    questions = bank(10)
    questions[3] = question(3, questions[3]["type"], point="汽车发动机维修",
                            stem="发动机机油多久更换一次")
    found = [f for f in checks.static_findings(parsed(course(questions=questions)))
             if f["rule"] == checks.QUESTION_UNRELATED]
    assert len(found) == 1 and found[0]["items"] == ["questions[3] q3"]
    assert found[0]["severity"] == checks.WARNING


@pytest.mark.parametrize("word", checks.PROHIBITED_WORDS)
def test_every_prohibited_word_in_a_title_is_found(word):
    found = [f for f in checks.static_findings(parsed(course(title=f"{word}育婴员课程")))
             if f["rule"] == checks.PROHIBITED_WORD]
    assert found and found[0]["items"] == ["title"]


def test_a_prohibited_word_in_a_catalogue_title():
    data = course()
    data["catalogue"][2]["title"] = "包过秘籍"
    found = [f for f in checks.static_findings(parsed(data)) if f["rule"] == checks.PROHIBITED_WORD]
    assert found[0]["items"] == ["catalogue[2].title"]


def test_rights_holder_other_than_the_provider_needs_a_licence():
    body = parsed(course(rights_holder="OTHER-CO"))
    assert checks.copyright_holder_problem("PROVIDER-1", body["copyright"])
    licensed = parsed(course(rights_holder="OTHER-CO", proofs=[
        {"kind": "PROOF_KIND_LICENCE", "title": "授权书", "document_uri": "s3://l.pdf",
         "sha256": "a" * 64}]))
    assert checks.copyright_holder_problem("PROVIDER-1", licensed["copyright"]) is None
    assert checks.copyright_holder_problem("PROVIDER-1", parsed(course())["copyright"]) is None


def test_bad_input_is_refused_with_every_field_named():
    errors: list[str] = []
    data = course(hours=0)
    data["title"] = ""
    data["questions"][0]["type"] = "QUESTION_TYPE_UNSPECIFIED"
    data["resources"][1]["content_hash"] = "xyz"
    data["resources"][2]["resource_id"] = "r0"
    content.parse_content(data, errors)
    assert "course.title: required" in errors
    assert any(e.startswith("course.class_hours:") for e in errors)
    assert any(e.startswith("course.questions[0].type:") for e in errors)
    assert any(e.startswith("course.resources[1].content_hash:") for e in errors)
    assert "course.resources[2].resource_id: r0 is used twice" in errors


def test_content_hash_ignores_title_spacing_and_punctuation_but_not_content():
    a = parsed(course())
    renamed = parsed(course(title="另一个名字"))
    assert content.content_hash(a) == content.content_hash(renamed)
    spaced = course()
    spaced["introduction"] = " 本课程 第1版，介绍育婴员的基本知识 与技能 "
    assert content.content_hash(parsed(spaced)) == content.content_hash(a)
    changed = course()
    changed["questions"][0]["stem"] += "（修改）"
    assert content.content_hash(parsed(changed)) != content.content_hash(a)


# --- reuse ------------------------------------------------------------------------------------
def index_of(texts: dict, threshold: float = 0.25):
    sigs = {k: reuse.signature(t) for k, t in texts.items()}
    index = reuse.ContainmentIndex(threshold)
    index.build([(k, s.minhash, s.size) for k, s in sigs.items()])
    return index, sigs


def found(index, sigs, text, threshold=0.25):
    sig = reuse.signature(text)
    candidates = index.candidates(sig.minhash, sig.size)
    return {m.key: round(m.share, 2) for m in reuse.verify(
        sig, {k: sigs[k] for k in candidates if k in sigs}, threshold)}


@pytest.fixture(scope="module")
def library():
    texts = {f"c{i}": body_text(i, 3000) for i in range(300)}
    return texts, *index_of(texts)


def test_partial_reuse_is_found_with_its_share(library):
    texts, index, sigs = library
    half = texts["c7"][:1500] + body_text(9001, 1500)
    assert found(index, sigs, half) == {"c7": pytest.approx(0.5, abs=0.02)}
    third = texts["c8"][1000:2000] + body_text(9002, 2000)
    assert found(index, sigs, third) == {"c8": pytest.approx(0.33, abs=0.02)}


def test_reuse_with_small_edits_is_still_found(library):
    texts, index, sigs = library
    rng = random.Random(3)
    chars = list(texts["c11"])
    for _ in range(30):  # 30 characters changed in 3,000
        chars[rng.randrange(len(chars))] = "改"
    edited = "，".join("".join(chars[i:i + 50]) for i in range(0, len(chars), 50))  # re-punctuated
    assert found(index, sigs, edited)["c11"] > 0.85


def test_a_short_course_copied_into_a_long_one_and_the_reverse(library):
    texts, index, sigs = library
    assert found(index, sigs, texts["c20"][:800]) == {"c20": 1.0}


def test_unrelated_text_finds_nothing(library):
    _, index, sigs = library
    assert found(index, sigs, body_text(77777, 3000)) == {}


def test_below_the_threshold_is_not_reported(library):
    texts, index, sigs = library
    tenth = texts["c30"][:300] + body_text(9003, 2700)
    assert found(index, sigs, tenth) == {}


def test_courses_added_after_the_build_and_removed_ones():
    texts = {f"d{i}": body_text(500 + i, 2000) for i in range(20)}
    index, sigs = index_of(texts)
    new = body_text(600, 2000)
    sig = reuse.signature(new)
    index.add("new", sig.minhash, sig.size)
    sigs["new"] = sig
    assert found(index, sigs, new[:1000] + body_text(601, 1000)) == {"new": pytest.approx(0.5, abs=0.03)}
    index.remove("d3")
    assert "d3" not in index.candidates(sigs["d3"].minhash, sigs["d3"].size)


def test_signature_survives_storage():
    sig = reuse.signature(body_text(1, 500))
    again = reuse.Signature.from_bytes(*sig.to_bytes())
    assert again.size == sig.size and np.array_equal(again.shingles, sig.shingles)
    assert np.array_equal(again.minhash, sig.minhash)
    assert reuse.signature("短") is None


# --- item statistics ------------------------------------------------------------------------
def sums_of(attempts: list[dict]) -> dict:
    total: dict = {}
    for responses in attempts:
        for qid, inc in learning.first_attempt_increments(responses).items():
            s = total.setdefault(qid, {"n": 0, "x": 0, "y": 0, "yy": 0, "xy": 0})
            for k, v in inc.items():
                s[k] += v
    return total


def test_discrimination_from_running_sums_equals_the_correlation_over_all_attempts():
    rng = random.Random(5)
    attempts = [[{"question_id": f"q{j}", "correct": rng.random() < 0.3 + 0.1 * j}
                 for j in range(5)] for _ in range(200)]
    sums = sums_of(attempts)
    for j in range(5):
        x = np.array([a[j]["correct"] for a in attempts], dtype=float)
        rest = np.array([sum(r["correct"] for r in a) for a in attempts], dtype=float) - x
        assert learning.discrimination(sums[f"q{j}"]) == pytest.approx(np.corrcoef(x, rest)[0, 1])
        assert learning.facility(sums[f"q{j}"]) == pytest.approx(x.mean())


def test_no_variance_no_discrimination():
    sums = sums_of([[{"question_id": "q", "correct": True}]] * 5)
    assert learning.discrimination(sums["q"]) == 0.0


@pytest.mark.parametrize("passed,total,easy", [(79, 100, False), (80, 100, True),
                                               (4, 5, True), (3, 5, False)])
def test_too_easy_at_80_percent_and_above(passed, total, easy):
    assert learning.too_easy(total, passed, 1) is easy


# --- employers -----------------------------------------------------------------------------
def test_cheating_again_after_rectification_costs_the_subsidy():
    first = learning.confirm(learning.GOOD, rectified_before=False)
    assert first.standing == learning.RECTIFICATION_REQUIRED and not first.subsidy_revoked
    again_before = learning.confirm(first.standing, rectified_before=False)
    assert again_before.standing == learning.RECTIFICATION_REQUIRED
    after = learning.confirm(learning.standing_after_rectification(first.standing),
                             rectified_before=True)
    assert after.standing == learning.SUBSIDY_REVOKED and after.subsidy_revoked
    assert after.repeat_after_rectification


# --- ratings ---------------------------------------------------------------------------------
def test_shrunk_score_pulls_few_ratings_towards_the_mean():
    assert learning.shrunk(3.0, 5, 5.0, 1) == pytest.approx((5 * 3.0 + 5.0) / 6)
    one_five = learning.shrunk(3.5, 5, 5.0, 1)
    many_fours = learning.shrunk(3.5, 5, 4.0 * 100, 100)
    assert many_fours > one_five
    assert learning.shrunk(3.5, 5, 0.0, 0) == 3.5


def test_interval_is_the_scale_for_one_rating_and_narrows_with_more():
    assert learning.mean_interval(5.0, 25.0, 1) == (1.0, 5.0)
    low, high = learning.mean_interval(4 * 50 + 5 * 50, 16 * 50 + 25 * 50, 100)
    assert 4.3 < low < 4.5 < high < 4.7


def test_stars_and_limits_are_checked():
    with pytest.raises(InvalidArgument):
        learning.check_stars(6)
    with pytest.raises(InvalidArgument):
        learning.check_stars(0)


def test_review_needs_reasons_to_reject_and_a_submitted_course():
    with pytest.raises(InvalidArgument):
        lifecycle.parse_review({"course_id": "c1", "outcome": lifecycle.REJECT})
    assert lifecycle.review_refusal(lifecycle.LISTED, lifecycle.APPROVED, 0) is not None
    assert lifecycle.review_refusal(lifecycle.SUBMITTED, lifecycle.APPROVED, 1) is not None
    assert lifecycle.review_refusal(lifecycle.SUBMITTED, lifecycle.REJECT, 1) is None
