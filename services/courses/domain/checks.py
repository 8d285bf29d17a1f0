"""The automatic checks of a course, each finding naming its rule and the items it concerns.

Sources: seed 004 二(一)1 (course quality), 二(一)2 (question bank), 二(一)3 (copyright),
二(一)4(1) (rejected courses uploaded again); seed 002 §5 (prohibited words).
Every number is a named constant; readings of the rules are stated beside them.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from services.courses.domain.content import PROOF_OF_USE, QUESTION_TYPES
from services.courses.domain.reuse import normalise

# --- rule names (proto CheckRule) ----------------------------------------------------------
PART_MISSING = "CHECK_RULE_PART_MISSING"
TOO_FEW_TYPES = "CHECK_RULE_TOO_FEW_QUESTION_TYPES"
TYPE_UNDER_SHARE = "CHECK_RULE_QUESTION_TYPE_UNDER_SHARE"
TOO_FEW_QUESTIONS = "CHECK_RULE_TOO_FEW_QUESTIONS"
POINT_IN_TWO_TYPES = "CHECK_RULE_KNOWLEDGE_POINT_IN_TWO_TYPES"
QUESTION_UNRELATED = "CHECK_RULE_QUESTION_UNRELATED"
PROHIBITED_WORD = "CHECK_RULE_PROHIBITED_WORD"
RESUBMITTED_UNCHANGED = "CHECK_RULE_RESUBMITTED_UNCHANGED"
REPACKAGED = "CHECK_RULE_REPACKAGED_AFTER_PERMANENT_REJECTION"
CONTENT_REUSED = "CHECK_RULE_CONTENT_REUSED"
COPYRIGHT_SAME_RESOURCE = "CHECK_RULE_COPYRIGHT_SAME_RESOURCE"
COPYRIGHT_HOLDER = "CHECK_RULE_COPYRIGHT_HOLDER_WITHOUT_PROOF"
BANK_TOO_EASY = "CHECK_RULE_BANK_TOO_EASY"

ERROR, WARNING = "SEVERITY_ERROR", "SEVERITY_WARNING"

# --- the numbers --------------------------------------------------------------------------
# 二(一)2(3): at least two question types ("两种(含)以上").
MIN_QUESTION_TYPES = 2
# 二(一)2(3): no type under 20 % of the questions ("占比不到20%"): exactly 20 % is enough.
MIN_TYPE_SHARE_PERCENT = 20
# 二(一)2(4): 10 questions when class hours <= 2, 20 when 2 < hours <= 5, 40 when hours > 5.
QUESTIONS_BY_HOURS = ((2.0, 10), (5.0, 20), (float("inf"), 40))
# 二(一)2(1): a question is related to the course when at least this share of its knowledge
# point's terms, or of its stem's terms, occur in the catalogue or the resources. Terms are
# character bigrams of Chinese text and words of other scripts. A heuristic: a WARNING.
RELATED_POINT_SHARE = 0.5
RELATED_STEM_SHARE = 0.3
# Seed 002 §5: words a title may not use without authority (the filing service checks
# institution names against the same list; it is not imported from there: one service never
# imports another).
PROHIBITED_WORDS = ("中华人民共和国", "中国", "中华", "国家", "全国", "职业资格", "人员资格",
                    "职业技能鉴定", "包过", "保过")

PARTS = (("introduction", "the introduction"), ("catalogue", "the catalogue"),
         ("resources", "the learning resources"), ("questions", "the question bank"))


def finding(rule: str, severity: str, message: str, items=(), **related) -> dict:
    return {"rule": rule, "severity": severity, "message": message, "items": list(items),
            **{k: v for k, v in related.items() if v not in (None, "", 0, 0.0)}}


def required_questions(class_hours: float) -> int:
    for upper, count in QUESTIONS_BY_HOURS:
        if class_hours <= upper:
            return count
    return QUESTIONS_BY_HOURS[-1][1]


def _question_item(i: int, q: dict) -> str:
    return f"questions[{i}] {q['question_id']}"


def check_parts(content: dict) -> list[dict]:
    """二(一)1(1): every part is there."""
    found = []
    for key, words in PARTS:
        value = content.get(key)
        if not value:
            found.append(finding(PART_MISSING, ERROR, f"{words} is missing", [key]))
    return found


def check_question_bank(content: dict) -> list[dict]:
    """二(一)2(2)-(4): types, their shares, the count for the class hours, knowledge points
    tested in two types."""
    questions = content.get("questions") or []
    if not questions:
        return []  # reported as a missing part
    found = []
    by_type = Counter(q["type"] for q in questions)
    total = len(questions)
    if len(by_type) < MIN_QUESTION_TYPES:
        found.append(finding(TOO_FEW_TYPES, ERROR,
                             f"{len(by_type)} question type(s); at least {MIN_QUESTION_TYPES} "
                             "are required", sorted(by_type)))
    else:
        for qtype in QUESTION_TYPES:
            n = by_type.get(qtype, 0)
            if n and n * 100 < MIN_TYPE_SHARE_PERCENT * total:
                found.append(finding(
                    TYPE_UNDER_SHARE, ERROR,
                    f"{qtype} is {n} of {total} questions ({100 * n / total:.1f} %), under "
                    f"{MIN_TYPE_SHARE_PERCENT} %", [qtype] + [
                        _question_item(i, q) for i, q in enumerate(questions)
                        if q["type"] == qtype]))
    hours = content.get("class_hours") or 0.0
    needed = required_questions(hours)
    if total < needed:
        found.append(finding(TOO_FEW_QUESTIONS, ERROR,
                             f"{total} questions for {hours:g} class hours; at least {needed} "
                             "are required", ["questions"]))
    types_by_point: dict[str, set] = defaultdict(set)
    items_by_point: dict[str, list] = defaultdict(list)
    for i, q in enumerate(questions):
        point = normalise(q["knowledge_point"])
        types_by_point[point].add(q["type"])
        items_by_point[point].append(_question_item(i, q))
    for point, types in types_by_point.items():
        if point and len(types) > 1:
            name = next(q["knowledge_point"] for q in questions
                        if normalise(q["knowledge_point"]) == point)
            found.append(finding(POINT_IN_TWO_TYPES, ERROR,
                                 f"knowledge point {name!r} is tested in {len(types)} types "
                                 f"({', '.join(sorted(types))})", items_by_point[point]))
    return found


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W\d_]{2,}|\d{2,}")


def terms(text: str) -> set[str]:
    """Chinese character bigrams (and single characters of one-character runs) and the words
    of other scripts, case folded."""
    text = (text or "").casefold()
    found: set[str] = set()
    for run in _CJK.findall(text):
        if len(run) == 1:
            found.add(run)
        found.update(run[i:i + 2] for i in range(len(run) - 1))
    found.update(_WORD.findall(_CJK.sub(" ", text)))
    return found


def check_relatedness(content: dict) -> list[dict]:
    """二(一)2(1): each question relates to what the catalogue and the resources teach."""
    questions = content.get("questions") or []
    vocabulary = terms(" ".join([e["title"] + " " + e["summary"] for e in content.get(
        "catalogue", [])] + [r["content_text"] for r in content.get("resources", [])]))
    if not questions or not vocabulary:
        return []
    unrelated = []
    for i, q in enumerate(questions):
        point, stem = terms(q["knowledge_point"]), terms(q["stem"])
        point_share = len(point & vocabulary) / len(point) if point else 0.0
        stem_share = len(stem & vocabulary) / len(stem) if stem else 0.0
        if point_share < RELATED_POINT_SHARE and stem_share < RELATED_STEM_SHARE:
            unrelated.append(_question_item(i, q))
    if not unrelated:
        return []
    return [finding(QUESTION_UNRELATED, WARNING,
                    f"{len(unrelated)} question(s) test nothing the catalogue or the resources "
                    "cover", unrelated)]


def prohibited_in(text: str) -> list[str]:
    return [w for w in PROHIBITED_WORDS if w in (text or "")]


def check_titles(content: dict) -> list[dict]:
    """Seed 002 §5: no prohibited word in the course's, the catalogue's or the resources'
    titles."""
    titles = [("title", content.get("title", ""))]
    titles += [(f"catalogue[{i}].title", e["title"]) for i, e in enumerate(content.get(
        "catalogue", []))]
    titles += [(f"resources[{i}].title", r["title"]) for i, r in enumerate(content.get(
        "resources", []))]
    found = []
    for where, title in titles:
        words = prohibited_in(title)
        if words:
            found.append(finding(PROHIBITED_WORD, ERROR,
                                 f"{where} uses {', '.join(words)} (seed 002 §5)", [where]))
    return found


def copyright_holder_problem(provider_id: str, copyright_: dict) -> str | None:
    """二(一)3(1): the rights holder differs from the provider without a licence or an
    assignment."""
    holder = copyright_.get("rights_holder_id") or ""
    if not holder or holder == provider_id:
        return None
    if any(p["kind"] in PROOF_OF_USE for p in copyright_.get("proof_documents", [])):
        return None
    return (f"the rights holder {holder} is not the provider {provider_id} and no licence or "
            "assignment is given")


def static_findings(content: dict) -> list[dict]:
    """Every check that needs nothing but the course itself."""
    return (check_parts(content) + check_question_bank(content) + check_relatedness(content)
            + check_titles(content))


def error_count(findings: list[dict], resolved_conflicts: set = frozenset()) -> int:
    """Findings that block approval: errors, but not a copyright conflict since resolved in
    the provider's favour."""
    return sum(1 for f in findings if f["severity"] == ERROR
               and f.get("conflict_id") not in resolved_conflicts)
