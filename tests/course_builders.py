"""Test data for the course review (unit, integration, e2e): courses whose question banks meet
every rule unless told otherwise, with texts distinct per course number."""
from __future__ import annotations

import hashlib
import random

TOPICS = ("婴儿喂养", "婴儿睡眠", "婴儿洗浴", "婴儿抚触", "辅食添加", "预防接种", "意外伤害",
          "生长发育", "早期教育", "常见疾病")
SINGLE = "QUESTION_TYPE_SINGLE_CHOICE"
MULTIPLE = "QUESTION_TYPE_MULTIPLE_CHOICE"
TRUE_FALSE = "QUESTION_TYPE_TRUE_FALSE"
FILL_IN = "QUESTION_TYPE_FILL_IN"
# Common characters outside the topics' own, so a course's body text is its own.
_CHARS = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def provider_id(n: int = 1) -> str:
    return f"PROVIDER-{n}"


def body_text(seed: int, length: int) -> str:
    """`length` characters of text distinct for each seed."""
    return "".join(random.Random(seed).choices(_CHARS, k=length))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resource(n: int, i: int, text: str | None = None, media: str | None = None) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    text = text if text is not None else f"{topic}的方法与要点。" + body_text(n * 100 + i, 600)
    return {"resource_id": f"r{i}", "title": f"{topic}讲解", "kind": "RESOURCE_KIND_VIDEO",
            "duration_minutes": 30, "content_text": text,
            "content_hash": media or sha(f"media-{n}-{i}")}


def question(i: int, qtype: str, point: str | None = None, stem: str | None = None) -> dict:
    topic = TOPICS[i % 5]
    q = {"question_id": f"q{i}", "type": qtype,
         "knowledge_point": point or f"{topic}要点{i}",
         "stem": stem or f"关于{topic}，第{i}题下列说法正确的是", "answer": "A"}
    if qtype in (SINGLE, MULTIPLE):
        q["options"] = ["正确做法", "错误做法", "无关做法"]
    elif qtype == TRUE_FALSE:
        q["answer"] = "true"
    return q


def bank(count: int, types=(SINGLE, TRUE_FALSE)) -> list[dict]:
    """`count` questions spread evenly over `types`, each on its own knowledge point."""
    return [question(i, types[i % len(types)]) for i in range(count)]


def bank_with(counts: dict[str, int]) -> list[dict]:
    """Exactly counts[type] questions of each type."""
    types = [t for t, c in counts.items() for _ in range(c)]
    return [question(i, t) for i, t in enumerate(types)]


def course(n: int = 1, hours: float = 2.0, questions=None, resources=None, title=None,
           provider: str | None = None, rights_holder: str | None = None, proofs=None,
           **overrides) -> dict:
    data = {
        "title": title or f"育婴员线上课程{n}",
        "introduction": f"本课程第{n}版介绍育婴员的基本知识与技能。",
        "catalogue": [{"title": f"第{i + 1}章 {t}", "summary": f"{t}的知识"}
                      for i, t in enumerate(TOPICS[:5])],
        "resources": resources if resources is not None else [resource(n, i) for i in range(5)],
        "class_hours": hours,
        "questions": questions if questions is not None else bank(10),
        "copyright": {"rights_holder_id": rights_holder or provider or provider_id(1),
                      "rights_holder_name": "某某教育科技有限公司",
                      "proof_documents": proofs if proofs is not None else [
                          {"kind": "PROOF_KIND_COPYRIGHT_CERTIFICATE", "title": "著作权登记证书",
                           "document_uri": f"s3://docs/copyright-{n}.pdf",
                           "sha256": sha(f"proof-{n}")}]},
    }
    data.update(overrides)
    return data


def learning(trainee: str, course_id: str, employer: str = "EMP-1", minutes: int = 60,
             first=None, flags=(), on: str = "2026-06-01", request_id: str | None = None) -> dict:
    """A learning report; `first`: (passed, {question_id: correct}) of a first attempt."""
    data = {"trainee_ref": trainee, "course_id": course_id, "employer_id": employer,
            "minutes": minutes, "session_on": on, "flags": list(flags),
            "request_id": request_id or f"learn-{trainee}-{course_id[:8]}-{len(flags)}-{minutes}"}
    if first is not None:
        passed, answers = first
        data["attempts"] = [{"attempt_number": 1, "taken_on": on, "passed": passed,
                             "responses": [{"question_id": q, "correct": c}
                                           for q, c in answers.items()]}]
    return data
