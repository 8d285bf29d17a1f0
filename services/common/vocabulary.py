"""The words every service shares: skill levels, occupation codes, request and session ids,
dates, identifiers, and the shape of an answer. One definition each; a service's domain adds
its own words beside these, never a second copy of them.

Validators follow one convention: they append "field.path: what is wrong" to `errors` and
return the cleaned value (or None), so a request's every problem is reported at once.
"""
from __future__ import annotations

import re
from datetime import date

# 职业技能等级, the five levels of the national occupational skill standards: 5 初级工 … 1 高级技师.
SKILL_LEVELS = {1: "高级技师", 2: "技师", 3: "高级工", 4: "中级工", 5: "初级工"}

# 职业分类大典 codes: 4-10-01-02, optionally with a fifth part for a work type (工种).
OCCUPATION_CODE = re.compile(r"^\d-\d{2}-\d{2}-\d{2}(-\d{2})?$")
OCCUPATION_CODE_HINT = "must look like 4-10-01-02"

# Client-chosen ids (request ids, exam sessions): safe in keys, logs and URLs.
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CLIENT_ID_HINT = "1-64 of A-Z a-z 0-9 . _ : -"

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalize_id(value) -> str:
    """Codes that are upper-case by definition (credit codes, ID numbers, certificate numbers):
    a typed lower-case letter or stray space is the same code."""
    return value.strip().upper() if isinstance(value, str) else ""


def parse_date(value, path: str, errors: list, required: bool = True) -> date | None:
    """An ISO calendar date (YYYY-MM-DD only: fromisoformat alone would also take 20250101)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        if required:
            errors.append(f"{path}: required (YYYY-MM-DD)")
        return None
    if not _ISO_DATE.match(text):
        errors.append(f"{path}: must be a date YYYY-MM-DD")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(f"{path}: {text} is not a calendar date")
        return None


def check_occupation_code(value, path: str, errors: list, required: bool = True) -> str:
    code = value.strip() if isinstance(value, str) else ""
    if not code:
        if required:
            errors.append(f"{path}: required, e.g. 4-10-01-02")
        return ""
    if not OCCUPATION_CODE.match(code):
        errors.append(f"{path}: {OCCUPATION_CODE_HINT}")
    return code


def check_skill_level(value, path: str, errors: list, required: bool = True) -> int:
    level = value if isinstance(value, int) and not isinstance(value, bool) else 0
    if level == 0 and not required:
        return 0
    if level not in SKILL_LEVELS:
        errors.append(f"{path}: must be 1-5")
    return level


def check_client_id(value, path: str, errors: list, required: bool = True) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        if required:
            errors.append(f"{path}: required, {CLIENT_ID_HINT}")
        return ""
    if not CLIENT_ID.match(text):
        errors.append(f"{path}: {CLIENT_ID_HINT}")
    return text


def required_text(data: dict, key: str, path: str, errors: list, lo: int = 1,
                  hi: int = 200) -> str:
    value = data.get(key)
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        errors.append(f"{path}: required")
    elif not lo <= len(value) <= hi:
        errors.append(f"{path}: must be {lo}-{hi} characters")
    return value


def drop_empty(data: dict) -> dict:
    """A response dict as proto3 would carry it: fields at their default (None, "", 0, False,
    empty list or map) are left out, so the worker's answer over the bus equals the edge's."""
    return {k: v for k, v in data.items()
            if v is not None and not (v in ("", [], {}) or (v is False) or
                                      (isinstance(v, int) and not isinstance(v, bool) and v == 0))}
