"""A submitted course: what the request must hold (bad input is refused whole), and the
course's text and hashes the reuse checks work on.

Missing parts (no introduction, catalogue, resources or questions) are NOT bad input: the
course is stored and the automatic checks report them (seed 004 二(一)1(1)), so the expert
and the provider see every problem at once. Bad input is what cannot be a course at all: no
title, class hours out of range, a question without a type, two resources with one id.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT
from services.courses.domain.reuse import normalise, text_hash

TITLE_MAX = 100
MAX_CLASS_HOURS = 500.0
MAX_RESOURCE_MINUTES = 1440
MIN_OPTIONS, MAX_OPTIONS = 2, 10
# A resource text shorter than this (normalised) is not evidence of a shared resource.
MIN_RESOURCE_TEXT_FOR_KEY = 20
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")

SINGLE_CHOICE = "QUESTION_TYPE_SINGLE_CHOICE"
MULTIPLE_CHOICE = "QUESTION_TYPE_MULTIPLE_CHOICE"
TRUE_FALSE = "QUESTION_TYPE_TRUE_FALSE"
FILL_IN = "QUESTION_TYPE_FILL_IN"
SHORT_ANSWER = "QUESTION_TYPE_SHORT_ANSWER"
QUESTION_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE, FILL_IN, SHORT_ANSWER)
CHOICE_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE)
RESOURCE_KINDS = ("RESOURCE_KIND_VIDEO", "RESOURCE_KIND_AUDIO", "RESOURCE_KIND_DOCUMENT",
                  "RESOURCE_KIND_SLIDES", "RESOURCE_KIND_INTERACTIVE")
PROOF_KINDS = ("PROOF_KIND_COPYRIGHT_CERTIFICATE", "PROOF_KIND_LICENCE",
               "PROOF_KIND_ASSIGNMENT", "PROOF_KIND_OTHER")
# What proves a provider may use a work whose rights holder is someone else (seed 004
# 二(一)3(1) "有效证明"): the holder's licence or an assignment of the rights.
PROOF_OF_USE = ("PROOF_KIND_LICENCE", "PROOF_KIND_ASSIGNMENT")


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _enum(value, allowed: tuple, path: str, errors: list) -> str:
    if value not in allowed:
        errors.append(f"{path}: required, one of {', '.join(allowed)}")
        return ""
    return value


def _id(value, path: str, errors: list, seen: set) -> str:
    text = _text(value)
    if not CLIENT_ID.match(text):
        errors.append(f"{path}: required, {CLIENT_ID_HINT}")
    elif text in seen:
        errors.append(f"{path}: {text} is used twice")
    seen.add(text)
    return text


def parse_content(course, errors: list, path: str = "course") -> dict:
    """The course as stored (plain dicts, stripped), every problem appended to `errors`."""
    if not isinstance(course, dict) or not course:
        errors.append(f"{path}: required")
        return {}
    title = _text(course.get("title"))
    if not title:
        errors.append(f"{path}.title: required")
    elif len(title) > TITLE_MAX:
        errors.append(f"{path}.title: at most {TITLE_MAX} characters")
    hours = course.get("class_hours")
    if not isinstance(hours, int | float) or isinstance(hours, bool) or not (
            0 < float(hours) <= MAX_CLASS_HOURS):
        errors.append(f"{path}.class_hours: required, more than 0 and at most "
                      f"{MAX_CLASS_HOURS:g}")
        hours = 0.0
    catalogue = []
    for i, entry in enumerate(course.get("catalogue") or []):
        entry_title = _text(entry.get("title"))
        if not entry_title:
            errors.append(f"{path}.catalogue[{i}].title: required")
        catalogue.append({"title": entry_title, "summary": _text(entry.get("summary"))})
    resources, seen = [], set()
    for i, res in enumerate(course.get("resources") or []):
        where = f"{path}.resources[{i}]"
        resource_id = _id(res.get("resource_id"), f"{where}.resource_id", errors, seen)
        kind = _enum(res.get("kind"), RESOURCE_KINDS, f"{where}.kind", errors)
        minutes = res.get("duration_minutes") or 0
        if not isinstance(minutes, int) or not 1 <= minutes <= MAX_RESOURCE_MINUTES:
            errors.append(f"{where}.duration_minutes: required, 1-{MAX_RESOURCE_MINUTES}")
        digest = _text(res.get("content_hash")).lower()
        if not SHA256_HEX.match(digest):
            errors.append(f"{where}.content_hash: required, SHA-256 as 64 hex characters")
        text = res.get("content_text") or ""
        if not normalise(text):
            errors.append(f"{where}.content_text: required (the text, or the transcript)")
        resources.append({"resource_id": resource_id, "title": _text(res.get("title")),
                          "kind": kind, "duration_minutes": minutes, "content_text": text,
                          "content_hash": digest})
    questions, seen = [], set()
    for i, q in enumerate(course.get("questions") or []):
        where = f"{path}.questions[{i}]"
        question_id = _id(q.get("question_id"), f"{where}.question_id", errors, seen)
        qtype = _enum(q.get("type"), QUESTION_TYPES, f"{where}.type", errors)
        point = _text(q.get("knowledge_point"))
        if not point:
            errors.append(f"{where}.knowledge_point: required")
        stem = _text(q.get("stem"))
        if not stem:
            errors.append(f"{where}.stem: required")
        options = [_text(o) for o in q.get("options") or []]
        if qtype in CHOICE_TYPES and not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            errors.append(f"{where}.options: a choice question has {MIN_OPTIONS}-{MAX_OPTIONS}")
        elif qtype and qtype not in CHOICE_TYPES and options:
            errors.append(f"{where}.options: only choice questions have options")
        if any(not o for o in options):
            errors.append(f"{where}.options: an option is empty")
        answer = _text(q.get("answer"))
        if not answer:
            errors.append(f"{where}.answer: required")
        questions.append({"question_id": question_id, "type": qtype, "knowledge_point": point,
                          "stem": stem, "options": options, "answer": answer})
    copyright_ = _parse_copyright(course.get("copyright") or {}, f"{path}.copyright", errors)
    return {"title": title, "introduction": _text(course.get("introduction")),
            "catalogue": catalogue, "resources": resources, "class_hours": float(hours),
            "questions": questions, "copyright": copyright_}


def _parse_copyright(data: dict, path: str, errors: list) -> dict:
    holder = _text(data.get("rights_holder_id"))
    if not holder:
        errors.append(f"{path}.rights_holder_id: required")
    proofs = []
    for i, doc in enumerate(data.get("proof_documents") or []):
        where = f"{path}.proof_documents[{i}]"
        kind = _enum(doc.get("kind"), PROOF_KINDS, f"{where}.kind", errors)
        uri = _text(doc.get("document_uri"))
        if not uri:
            errors.append(f"{where}.document_uri: required")
        digest = _text(doc.get("sha256")).lower()
        if not SHA256_HEX.match(digest):
            errors.append(f"{where}.sha256: required, 64 hex characters")
        proofs.append({"kind": kind, "title": _text(doc.get("title")), "document_uri": uri,
                       "sha256": digest})
    return {"rights_holder_id": holder, "rights_holder_name": _text(data.get("rights_holder_name")),
            "proof_documents": proofs}


# --- what the reuse checks work on ---------------------------------------------------------
def course_text(content: dict) -> str:
    """The course's text for the containment check: introduction, catalogue, resources'
    texts and the question bank (the title is left out: a repackaged course changes it)."""
    parts = [content.get("introduction", "")]
    parts += [f"{e['title']} {e['summary']}" for e in content.get("catalogue", [])]
    parts += [r["content_text"] for r in content.get("resources", [])]
    parts += [" ".join([q["stem"], *q["options"]]) for q in content.get("questions", [])]
    return "\n".join(parts)


def content_hash(content: dict) -> str:
    """SHA-256 of the normalised content, title and copyright evidence left out: a course
    uploaded again unchanged (perhaps renamed) has the same hash."""
    canonical = [
        normalise(content.get("introduction", "")),
        [[normalise(e["title"]), normalise(e["summary"])] for e in content.get("catalogue", [])],
        [[r["kind"], r["duration_minutes"], normalise(r["content_text"]), r["content_hash"]]
         for r in content.get("resources", [])],
        f"{content.get('class_hours', 0):g}",
        [[q["type"], normalise(q["knowledge_point"]), normalise(q["stem"]),
          [normalise(o) for o in q["options"]], normalise(q["answer"])]
         for q in content.get("questions", [])],
    ]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


def resource_keys(resource: dict) -> list[str]:
    """What identifies a resource across courses: its media file's hash, and the hash of its
    normalised text when that text is long enough to be evidence."""
    keys = [f"media:{resource['content_hash']}"] if resource.get("content_hash") else []
    if len(normalise(resource.get("content_text", ""))) >= MIN_RESOURCE_TEXT_FOR_KEY:
        keys.append(f"text:{text_hash(resource['content_text'])}")
    return keys


@dataclass(frozen=True)
class ResourceKeys:
    by_resource: dict[str, list[str]]   # resource id -> its keys

    @property
    def all(self) -> list[str]:
        return sorted({k for keys in self.by_resource.values() for k in keys})


def keys_of(content: dict) -> ResourceKeys:
    return ResourceKeys({r["resource_id"]: resource_keys(r) for r in content.get("resources", [])})
