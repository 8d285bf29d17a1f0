"""Certificate registry rules as pure functions: no broker, no database, no clock of their own.

Sources: seed 001 ch.4-6 (ch.6 art.1-2 invalidation, art.2(8)
late reporting, art.4 out-of-scope evaluation); seed 002 §4 (withdrawn certificate data).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.identifiers import (  # noqa: F401 (the registry's words for them)
    ID_WEIGHTS,
    PROVINCE_CODES,
    id_check_character,
    id_number_problem,
)
from services.common.vocabulary import (
    CLIENT_ID,
    CLIENT_ID_HINT,
    SKILL_LEVELS,
    check_occupation_code,
    check_skill_level,
    normalize_id,
    parse_date,
)

# --- numbers of the rules -------------------------------------------------------------
MAX_BATCH_ROWS = 10_000          # issue 4: one exam session's results per call
MAX_SELECTION_NUMBERS = 1_000    # explicit numbers in one invalidation or withdrawal
# Seed 001 ch.6 art.2(8) makes "未及时上报证书数据" a violation but gives no number of days.
# Reading: 30 calendar days after the assessment, the same window the regulation gives for
# filing a change (ch.2 art.8) and for a supplement (art.5). Config CERT_LATE_REPORT_DAYS.
DEFAULT_LATE_REPORT_DAYS = 30
MAX_EVALUATOR_SERIAL = 999_999   # part 7 of the certificate number: 6 digits, from 000001

MAX_NAME_CHARS = 50

# --- states and codes (the proto enum names) ------------------------------------------
VALID = "CERTIFICATE_STATUS_VALID"
INVALIDATED = "CERTIFICATE_STATUS_INVALIDATED"
WITHDRAWN = "CERTIFICATE_STATUS_WITHDRAWN"

ROW_ISSUED = "ROW_STATUS_ISSUED"
ROW_REJECTED = "ROW_STATUS_REJECTED"
ROW_DUPLICATE = "ROW_STATUS_DUPLICATE"

# Reason codes a regulator may give to InvalidateCertificates (seed 001 ch.6 art.1-4).
INVALIDATION_REASONS = (
    "INVALIDATION_REASON_INELIGIBLE_CANDIDATE",
    "INVALIDATION_REASON_EXAM_MISCONDUCT",
    "INVALIDATION_REASON_NON_STANDARD_MARKING",
    "INVALIDATION_REASON_QUESTION_LEAK",
    "INVALIDATION_REASON_OUT_OF_SCOPE_EVALUATION",
    "INVALIDATION_REASON_FRAUD",
)
# Withdrawal (seed 002 §4) is its own operation and its own status, never a void result.
DATA_WITHDRAWN = "INVALIDATION_REASON_DATA_WITHDRAWN"

# The institution statuses filing announces; only ACTIVE may issue.
ACTIVE = "INSTITUTION_STATUS_ACTIVE"
SUSPENDED = "INSTITUTION_STATUS_SUSPENDED"
TERMINATED = "INSTITUTION_STATUS_TERMINATED"
EXPIRED = "INSTITUTION_STATUS_EXPIRED"
# Filing's events that set the status the registry keeps (filed again after a termination
# is InstitutionFiled: ACTIVE again).
STATUS_BY_FILING_EVENT = {
    "InstitutionFiled": ACTIVE,
    "InstitutionSuspended": SUSPENDED,
    "InstitutionReinstated": ACTIVE,
    "FilingTerminated": TERMINATED,
    "FilingExpired": EXPIRED,
}

_FILING_CODE = re.compile(r"^[SY]\d{4}\d{2}\d{6}$")
_CERT_NUMBER = re.compile(r"^(?P<kind>[SY])(?P<evaluator>\d{4})(?P<province>\d{2})(?P<site>\d{6})"
                          r"(?P<year>\d{2})(?P<level>\d)(?P<serial>\d{6})$")
_DECISION_REF = re.compile(r"^\S.{0,199}$")


# --- GB 11643 resident ID number (services/common/identifiers.py) ---------------------
def normalize_id_number(value: str) -> str:
    # A lower-case x is the same check character as typed on most keyboards.
    return normalize_id(value)


# --- certificate numbers --------------------------------------------------------------
def filing_code_problem(code: str) -> str | None:
    if not isinstance(code, str) or not _FILING_CODE.match(code):
        return "filing code must be S or Y and 12 digits"
    if code[5:7] not in PROVINCE_CODES:
        return "filing code has no valid province"
    return None


def certificate_number(filing_code: str, issued_on: date, level: int, serial: int) -> str:
    """Parts 1-4 from the filing code, 5 the year issued, 6 the level, 7 the serial."""
    problem = filing_code_problem(filing_code)
    if problem:
        raise ValueError(problem)
    if level not in SKILL_LEVELS:
        raise ValueError("skill level is 1-5")
    if not 1 <= serial <= MAX_EVALUATOR_SERIAL:
        raise ValueError(f"serial must be 1-{MAX_EVALUATOR_SERIAL}")
    return f"{filing_code}{issued_on.year % 100:02d}{level}{serial:06d}"


def certificate_number_problem(number: str) -> str | None:
    if not isinstance(number, str) or len(number) != 22:
        return "must be 22 characters (a letter and 21 digits)"
    match = _CERT_NUMBER.match(number)
    if not match:
        return "must be S or Y followed by 21 digits"
    if match["province"] not in PROVINCE_CODES:
        return "province code is not a GB/T 2260 province"
    if int(match["level"]) not in SKILL_LEVELS:
        return "skill level digit must be 1-5"
    if int(match["site"]) == 0 or int(match["serial"]) == 0:
        return "site serial and evaluator serial start at 000001"
    return None


def issue_key(institution_id: str, exam_session_id: str, holder_id_number: str,
              occupation_code: str, skill_level: int) -> str:
    """The identity of "this holder's certificate for this occupation and level from this
    session". Hashed, so a duplicate-key error message never carries an ID number."""
    raw = "|".join((institution_id, exam_session_id, holder_id_number, occupation_code,
                    str(skill_level)))
    return hashlib.sha256(raw.encode()).hexdigest()


def serial_key(filing_code: str, issued_on: date, level: int) -> str:
    """Serials run per evaluator (its filing code), year issued and level."""
    return f"{filing_code}:{issued_on.year % 100:02d}:{level}"


def check_serials_left(used: int, wanted: int, level: int, year: int) -> None:
    """Part 7 of the number has six digits: a year's level cannot go past 999999."""
    if used + wanted > MAX_EVALUATOR_SERIAL:
        raise FailedPrecondition(
            f"cannot issue: level {level} serials for {year} would exceed "
            f"{MAX_EVALUATOR_SERIAL:06d}", reason="SERIALS_EXHAUSTED",
            subject=f"serials/{year}/level-{level}")


# --- masking for public answers -------------------------------------------------------
def mask_name(name: str) -> str:
    """张三 -> 张*, 张三丰 -> 张*丰, 欧阳娜娜 -> 欧**娜: enough to recognise, not to learn."""
    chars = list((name or "").strip())
    if len(chars) <= 1:
        return "*" * len(chars)
    if len(chars) == 2:
        return chars[0] + "*"
    return chars[0] + "*" * (len(chars) - 2) + chars[-1]


def mask_id_number(value: str) -> str:
    """Keep the first 3 and last 4 characters: hides the county and the birth date."""
    value = value or ""
    if len(value) < 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def normalize_name(name: str) -> str:
    # Full-width spaces and doubled spaces are typing noise; the middle dot of minority names
    # (U+00B7 and the often-typed U+2022, U+30FB) is one character.
    name = re.sub(r"[\s\u3000]+", " ", (name or "").strip())
    return re.sub(r"[\u2022\u30fb\uff65]", "\u00b7", name)


# --- batch validation -----------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    exam_session_id: str
    assessment_date: date
    late: bool
    rows: list  # list[Row]


@dataclass
class Row:
    index: int
    row_ref: str
    holder_name: str
    holder_id_number: str
    occupation_code: str
    occupation_name: str
    skill_level: int
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def key(self) -> tuple:
        """No second certificate for the same holder, occupation and level in a session."""
        return (self.holder_id_number, self.occupation_code, self.skill_level)


def check_holder_name(value, path: str, errors: list) -> str:
    name = normalize_name(value or "")
    if not name:
        errors.append(f"{path}: required")
    elif len(name) > MAX_NAME_CHARS:
        errors.append(f"{path}: longer than {MAX_NAME_CHARS} characters")
    return name


def is_late(assessment_date: date, today: date, late_days: int) -> bool:
    """Reported on day N after the assessment: late when N exceeds the allowed days."""
    return (today - assessment_date).days > late_days


def check_row(index: int, raw: dict, today: date) -> Row:
    errors: list[str] = []
    name = check_holder_name(raw.get("holder_name"), "holder_name", errors)
    id_number = normalize_id_number(raw.get("holder_id_number") or "")
    problem = id_number_problem(id_number, today) if id_number else "required"
    if problem:
        errors.append(f"holder_id_number: {problem}")
    occupation = check_occupation_code(raw.get("occupation_code"), "occupation_code", errors)
    occupation_name = (raw.get("occupation_name") or "").strip()
    if len(occupation_name) > 50:
        errors.append("occupation_name: longer than 50 characters")
    level = check_skill_level(raw.get("skill_level"), "skill_level", errors)
    row_ref = (raw.get("row_ref") or "").strip()
    if len(row_ref) > 64:
        errors.append("row_ref: longer than 64 characters")
        row_ref = row_ref[:64]
    return Row(index, row_ref, name, id_number, occupation, occupation_name, level, errors)


def parse_batch(request: dict, today: date, late_days: int,
                each=lambda rows: rows) -> Batch:
    """The batch envelope must be right (else InvalidArgument with every violation); each row
    is checked on its own and carries its errors, so one bad row does not hold up the rest.
    `each` wraps the loop over the rows (the worker's: services/common/turns.py in_turns)."""
    errors: list[str] = []
    session = (request.get("exam_session_id") or "").strip()
    if not CLIENT_ID.match(session):
        errors.append(f"exam_session_id: required, {CLIENT_ID_HINT}")
    assessed = parse_date(request.get("assessment_date"), "assessment_date", errors)
    if assessed is not None and assessed > today:
        errors.append(f"assessment_date: {assessed.isoformat()} is in the future")
    raw_rows = request.get("rows") or []
    if not raw_rows:
        errors.append("rows: at least one row is required")
    elif len(raw_rows) > MAX_BATCH_ROWS:
        errors.append(f"rows: at most {MAX_BATCH_ROWS} per call, got {len(raw_rows)}")
    if errors:
        raise InvalidArgument(errors)
    rows = [check_row(i, raw, today) for i, raw in each(enumerate(raw_rows))]
    mark_duplicates_in_batch(rows)
    return Batch(session, assessed, is_late(assessed, today, late_days), rows)


def mark_duplicates_in_batch(rows: list[Row]) -> None:
    """A holder twice for the same occupation and level: the first row stands."""
    seen: dict[tuple, int] = {}
    for row in rows:
        if not row.ok:
            continue
        first = seen.setdefault(row.key, row.index)
        if first != row.index:
            row.errors.append(f"duplicate of row {first} (same holder, occupation and level)")


def rights_to_ask(rows: list[Row]) -> list[tuple[str, int]]:
    """The (occupation, level) pairs to ask filing about: once per batch, not per row."""
    return sorted({(r.occupation_code, r.skill_level) for r in rows if r.ok})


def refuse_out_of_scope(rows: list[Row], refusals: dict[tuple[str, int], str]) -> None:
    for row in rows:
        reason = refusals.get((row.occupation_code, row.skill_level)) if row.ok else None
        if reason is not None:
            row.errors.append(f"occupation {row.occupation_code} level {row.skill_level} "
                              f"is outside the institution's filed scope: {reason}")


def counts_by_occupation_level(rows) -> list[dict]:
    """Rows (or dicts) -> [{occupation_code, skill_level, count}] sorted, for events and stats."""
    counter = Counter((r["occupation_code"], r["skill_level"]) if isinstance(r, dict)
                      else (r.occupation_code, r.skill_level) for r in rows)
    return [{"occupation_code": o, "skill_level": lv, "count": n}
            for (o, lv), n in sorted(counter.items())]


# --- issuing right ----------------------------------------------------------------------
def issuing_refusal(status: str | None, reason: str | None = None) -> str | None:
    """Why an institution in this status may not issue (None: it may). Only ACTIVE issues."""
    if status == ACTIVE:
        return None
    what = {SUSPENDED: "suspended (rectification: no evaluation)", TERMINATED: "terminated",
            EXPIRED: "expired"}.get(status, "not filed")
    return f"the institution's filing is {what}" + (f": {reason}" if reason else "")


# --- invalidation and withdrawal --------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    numbers: tuple = ()
    institution_id: str | None = None
    exam_session_id: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None

    @property
    def kind(self) -> str:
        if self.numbers:
            return "numbers"
        return "session" if self.exam_session_id else "period"


def parse_selection(selection: dict, errors: list) -> Selection | None:
    numbers = [(n or "").strip().upper() for n in selection.get("certificate_numbers") or []]
    session = selection.get("exam_session") or {}
    period = selection.get("period") or {}
    given = [bool(numbers), bool(session), bool(period)]
    if sum(given) != 1:
        errors.append("selection: give exactly one of certificate_numbers, exam_session, period")
        return None
    if numbers:
        if len(numbers) > MAX_SELECTION_NUMBERS:
            errors.append(f"selection.certificate_numbers: at most {MAX_SELECTION_NUMBERS}")
        for i, number in enumerate(numbers):
            problem = certificate_number_problem(number)
            if problem:
                errors.append(f"selection.certificate_numbers[{i}]: {problem}")
        return Selection(numbers=tuple(dict.fromkeys(numbers)))
    if session:
        institution_id = (session.get("institution_id") or "").strip().upper()
        session_id = (session.get("exam_session_id") or "").strip()
        if not institution_id:
            errors.append("selection.exam_session.institution_id: required")
        if not CLIENT_ID.match(session_id):
            errors.append(f"selection.exam_session.exam_session_id: required, {CLIENT_ID_HINT}")
        return Selection(institution_id=institution_id, exam_session_id=session_id)
    institution_id = (period.get("institution_id") or "").strip().upper()
    if not institution_id:
        errors.append("selection.period.institution_id: required")
    start = parse_date(period.get("issued_from"), "selection.period.issued_from", errors)
    end = parse_date(period.get("issued_to"), "selection.period.issued_to", errors)
    if start and end and start > end:
        errors.append("selection.period: issued_from is after issued_to")
    return Selection(institution_id=institution_id, issued_from=start, issued_to=end)


def selection_record(selection: Selection) -> dict:
    """A selection as stored with its operation (to finish it after a crash)."""
    return {k: v for k, v in {
        "numbers": list(selection.numbers), "institution_id": selection.institution_id,
        "exam_session_id": selection.exam_session_id,
        "issued_from": selection.issued_from.isoformat() if selection.issued_from else None,
        "issued_to": selection.issued_to.isoformat() if selection.issued_to else None,
    }.items() if v}


def selection_of(record: dict) -> Selection:
    return Selection(
        numbers=tuple(record.get("numbers") or ()), institution_id=record.get("institution_id"),
        exam_session_id=record.get("exam_session_id"),
        issued_from=date.fromisoformat(record["issued_from"]) if record.get("issued_from")
        else None,
        issued_to=date.fromisoformat(record["issued_to"]) if record.get("issued_to") else None)


def parse_invalidation(request: dict) -> tuple[Selection, str, str, str]:
    errors: list[str] = []
    selection = parse_selection(request.get("selection") or {}, errors)
    reason = request.get("reason") or "INVALIDATION_REASON_UNSPECIFIED"
    if reason == DATA_WITHDRAWN:
        errors.append("reason: withdrawn data is WithdrawCertificates, not a void result")
    elif reason not in INVALIDATION_REASONS:
        errors.append("reason: required, one of " + ", ".join(INVALIDATION_REASONS))
    decision_ref, note = _decision(request, errors)
    if errors:
        raise InvalidArgument(errors)
    return selection, reason, decision_ref, note


def parse_withdrawal(request: dict) -> tuple[Selection, str, str]:
    errors: list[str] = []
    selection = parse_selection(request.get("selection") or {}, errors)
    decision_ref, note = _decision(request, errors)
    if errors:
        raise InvalidArgument(errors)
    return selection, decision_ref, note


def _decision(request: dict, errors: list) -> tuple[str, str]:
    # Nothing is voided without the decision that says so: it is what a court would ask for.
    decision_ref = (request.get("decision_ref") or "").strip()
    if not _DECISION_REF.match(decision_ref):
        errors.append("decision_ref: required, up to 200 characters")
    note = (request.get("note") or "").strip()
    if len(note) > 1000:
        errors.append("note: longer than 1000 characters")
    return decision_ref, note


def parse_period(request: dict, errors: list) -> tuple[date | None, date | None]:
    start = end = None
    if request.get("issued_from"):
        start = parse_date(request["issued_from"], "issued_from", errors)
    if request.get("issued_to"):
        end = parse_date(request["issued_to"], "issued_to", errors)
    if start and end and start > end:
        errors.append("issued_from is after issued_to")
    return start, end


def check_occupation_filter(code: str | None, errors: list) -> None:
    check_occupation_code(code, "occupation_code", errors, required=False)


def check_level_filter(level: int | None, errors: list) -> None:
    if level and level not in SKILL_LEVELS:
        errors.append("skill_level: must be 1-5 (0 for any)")


def parse_certificate_number(value, path: str = "certificate_number") -> str:
    number = normalize_id(value)
    if not number:
        raise InvalidArgument(f"{path}: required")
    problem = certificate_number_problem(number)
    if problem:
        raise InvalidArgument(f"{path}: {problem}")
    return number


def parse_verification(request: dict) -> tuple[str, str]:
    """The public question: a number and the holder's name, both required."""
    errors: list[str] = []
    number = normalize_id(request.get("certificate_number"))
    problem = certificate_number_problem(number)
    if problem:
        errors.append(f"certificate_number: {problem}")
    name = check_holder_name(request.get("holder_name"), "holder_name", errors)
    if errors:
        raise InvalidArgument(errors)
    return number, name


def holder_matches(stored_name: str, asked_name: str) -> bool:
    return normalize_name(stored_name) == asked_name


# --- filing's status, as its events tell it -------------------------------------------
def status_update(event_type: str, sequence: int, occurred_at: str,
                  applied: tuple[int, str] | None) -> str | None:
    """The status filing's event sets, or None when it is not newer than the one already
    applied (events arrive in any order and may be redelivered: the newest wins). Newer means
    a higher sequence of filing's institution (its version); between events of the same
    write, or from a producer without sequences, the later occurrence."""
    status = STATUS_BY_FILING_EVENT[event_type]
    if applied is None:
        return status
    applied_sequence, applied_at = applied
    if sequence and applied_sequence:
        return status if sequence > applied_sequence else None
    return status if occurred_at >= applied_at else None


# --- what an operation tells the others -------------------------------------------------
def issued_event(batch_id: str, institution_id: str, details: dict, rows: list[dict]) -> dict | None:
    """CertificatesIssued for a batch, from its counts per occupation and level (`rows` as
    the repository counts them: {"_id": {"o", "l"}, "n", "late"}); None when nothing was
    issued."""
    if not rows:
        return None
    counts = [{"occupation_code": r["_id"]["o"], "skill_level": r["_id"]["l"],
               "count": r["n"], "late_reported_count": r["late"]} for r in rows]
    return {"batch_id": batch_id, "institution_id": institution_id, **details,
            "counts": counts, "total": sum(c["count"] for c in counts)}


def ended_event(kind: str, operation_id: str, details: dict,
                rows: list[dict]) -> tuple[str, dict | None]:
    """CertificatesInvalidated or CertificatesWithdrawn, counted per institution, occupation
    and level; None when nothing changed."""
    event_type = "CertificatesInvalidated" if kind == "invalidate" else "CertificatesWithdrawn"
    if not rows:
        return event_type, None
    counts = [{"institution_id": r["_id"]["i"], "occupation_code": r["_id"]["o"],
               "skill_level": r["_id"]["l"], "count": r["n"]} for r in rows]
    payload = {"operation_id": operation_id, "decision_ref": details["decision_ref"],
               "effective_on": details["effective_on"], "counts": counts,
               "total": sum(c["count"] for c in counts)}
    if kind == "invalidate":
        payload["reason"] = details["reason"]
    else:
        payload["recover_subsidies"] = details["recover_subsidies"]
    return event_type, payload


# --- what a list or a statistic selects -------------------------------------------------------
def list_filters(request: dict, institution_id: str | None, holder: str,
                 start: date | None, end: date | None) -> dict:
    filters = {}
    if institution_id:
        filters["institution_id"] = institution_id
    for key in ("exam_session_id", "occupation_code", "skill_level", "status"):
        if request.get(key) and request[key] != "CERTIFICATE_STATUS_UNSPECIFIED":
            filters[key] = request[key]
    if holder:
        filters["holder_id_number"] = holder
    if start:
        filters["issued_on__gte"] = start.isoformat()
    if end:
        filters["issued_on__lte"] = end.isoformat()
    return filters


def stats_match(request: dict, institution_id: str | None, start: date | None,
                end: date | None) -> dict:
    match: dict = {}
    if institution_id:
        match["institution_id"] = institution_id
    if request.get("occupation_code"):
        match["occupation_code"] = request["occupation_code"]
    if request.get("skill_level"):
        match["skill_level"] = request["skill_level"]
    issued = {}
    if start:
        issued["$gte"] = start.isoformat()
    if end:
        issued["$lte"] = end.isoformat()
    if issued:
        match["issued_on"] = issued
    return match


def operation_abandoned(kind: str, owner: str | None, owner_alive: bool, age_seconds: float,
                        stale_seconds: int, has_request: bool) -> bool:
    """May a PENDING operation be finished by someone else now? Not while the worker running it
    beats. Once it is gone (a crash): by a retry of the same request at once, since the retry
    carries everything the first call had; by the sweep, an invalidation or withdrawal at once
    (its selection is stored), but a batch only after `stale_seconds`, the window in which its
    caller's retry can still issue the rows the crash left out (the sweep has no rows, only
    what was stored). An operation that names no worker (stored before workers named
    themselves) counts as gone once it is `stale_seconds` old."""
    if owner and owner_alive:
        return False
    if not owner:
        return age_seconds >= stale_seconds
    if has_request or kind != "issue":
        return True
    return age_seconds >= stale_seconds
