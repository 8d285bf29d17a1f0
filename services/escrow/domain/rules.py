"""Prepaid schemes, charges, refunds and the period figures: the rules, pure.

Sources: seed 000 (Beijing: single-purpose prepaid cards of training institutions are filed
and the prepaid money held in custody; 15,275 refund complaints resolved, about 57.34 million
yuan refunded) and the project's prepaid-fee defaults where the seed gives no number: one
charge covers at most 60 class hours or 3 months of classes; the whole amount is refunded
when no lesson was taken within 7 days of signing; otherwise the refund is what was paid
minus the lessons consumed × the unit price minus the deductions the contract allows. Each number is a setting
(services/escrow/settings.py), pinned by tests/unit/test_escrow_domain.py.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from services.common.errors import InvalidArgument
from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT, parse_date
from services.common.workdays import SHANGHAI

# The prepaid-fee defaults (the Beijing rules' reading): one charge, at most 60 class hours or
# 3 months of classes, whichever is reached first.
MAX_HOURS_PER_CHARGE = 60
MAX_MONTHS_PER_CHARGE = 3
# The cooling-off reading: a refund asked for within 7 calendar days of signing, with no lesson
# taken, is the whole amount paid, no deduction.
COOLING_OFF_DAYS = 7
# A handling fee the contract may allow, at most 20 % (2,000 basis points) of the remainder.
MAX_HANDLING_FEE_BP = 2_000
MAX_PRICE_PER_HOUR_FEN = 10_000_000      # 100,000 yuan per class hour
MAX_CLASS_HOURS = 2_000
MAX_LESSONS_PER_ATTENDANCE = 60

OPEN, CLOSED = "CONTRACT_STATE_OPEN", "CONTRACT_STATE_CLOSED"
COMPLAINT_OPEN = "COMPLAINT_STATE_OPEN"
COMPLAINT_REFUNDED = "COMPLAINT_STATE_REFUNDED"
COMPLAINT_REJECTED = "COMPLAINT_STATE_REJECTED"
OUTCOME_REFUNDED = "COMPLAINT_OUTCOME_REFUNDED"
OUTCOME_REJECTED = "COMPLAINT_OUTCOME_REJECTED"
CLIENT_CLOSE_REASONS = ("CLOSE_REASON_COMPLETED", "CLOSE_REASON_TERMINATED",
                        "CLOSE_REASON_INSTITUTION_STOPPED")
CLOSED_BY_COMPLAINT = "CLOSE_REASON_COMPLAINT_DECIDED"

# Ledger codes of the platform's own transfers (statistics sum COMPLAINT_REFUND).
CODE_PAYMENT = "PAYMENT"
CODE_LESSON_FEE = "LESSON_FEE"
CODE_COMPLAINT_REFUND = "COMPLAINT_REFUND"
CODE_DEDUCTIONS = "ALLOWED_DEDUCTIONS"
CODE_CLOSE_REFUND = "CLOSE_REFUND"

# filing's events -> may the institution take prepaid fees (file schemes, receive payments)?
ACTIVE = "ACTIVE"
STATUS_BY_FILING_EVENT = {
    "InstitutionFiled": ACTIVE,
    "InstitutionReinstated": ACTIVE,
    "InstitutionSuspended": "SUSPENDED",
    "FilingTerminated": "TERMINATED",
    "FilingExpired": "EXPIRED",
}


def check_id(value, path: str, errors: list, required: bool = True) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        if required:
            errors.append(f"{path}: required, {CLIENT_ID_HINT}")
        return ""
    if not CLIENT_ID.match(text):
        errors.append(f"{path}: {CLIENT_ID_HINT}")
    return text


def check_int(value, path: str, errors: list, lo: int, hi: int, what: str = "") -> int:
    """An integer in [lo, hi] (proto already refused floats and strings)."""
    number = int(value or 0)
    if not lo <= number <= hi:
        errors.append(f"{path}: must be {lo}-{hi}{what} (got {number})")
    return number


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day (31 Jan + 1 month: 28/29 Feb)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_day(day: date) -> datetime:
    """The first moment after `day` in Asia/Shanghai: a lesson fee of classes until `day`
    waits until then."""
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI)


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time(0), SHANGHAI)


# --- schemes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefundTerms:
    materials_fee_fen: int = 0
    handling_fee_bp: int = 0
    handling_fee_cap_fen: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return {"materials_fee_fen": self.materials_fee_fen,
                "handling_fee_bp": self.handling_fee_bp,
                "handling_fee_cap_fen": self.handling_fee_cap_fen, "note": self.note}

    @classmethod
    def of(cls, data: dict | None) -> RefundTerms:
        data = data or {}
        return cls(int(data.get("materials_fee_fen") or 0), int(data.get("handling_fee_bp") or 0),
                   int(data.get("handling_fee_cap_fen") or 0), data.get("note") or "")


@dataclass(frozen=True)
class SchemeFiling:
    scheme_code: str
    name: str
    courses: tuple[str, ...]
    price_per_hour_fen: int
    class_hours: int
    valid_from: date
    valid_until: date
    refund_terms: RefundTerms
    custodian_id: str


def parse_scheme(request: dict, today: date) -> SchemeFiling:
    errors: list[str] = []
    code = check_id(request.get("scheme_code"), "scheme_code", errors)
    name = (request.get("name") or "").strip()
    if not name:
        errors.append("name: required")
    courses = [c.strip() if isinstance(c, str) else "" for c in request.get("courses") or []]
    if not courses:
        errors.append("courses: at least one course")
    for i, course in enumerate(courses):
        if not course:
            errors.append(f"courses[{i}]: must not be empty")
    price = check_int(request.get("price_per_hour_fen"), "price_per_hour_fen", errors, 1,
                      MAX_PRICE_PER_HOUR_FEN, " fen")
    hours = check_int(request.get("class_hours"), "class_hours", errors, 1, MAX_CLASS_HOURS)
    valid_from = parse_date(request.get("valid_from"), "valid_from", errors)
    valid_until = parse_date(request.get("valid_until"), "valid_until", errors)
    if valid_from and valid_until:
        if valid_until < valid_from:
            errors.append("valid_until: must not be before valid_from")
        elif valid_until < today:
            errors.append(f"valid_until: the scheme would be over already (today is {today})")
    terms = RefundTerms.of(request.get("refund_terms"))
    if terms.materials_fee_fen < 0 or (price and hours and
                                       terms.materials_fee_fen > price * hours):
        errors.append("refund_terms.materials_fee_fen: must be 0 to the course's whole price")
    if not 0 <= terms.handling_fee_bp <= MAX_HANDLING_FEE_BP:
        errors.append(f"refund_terms.handling_fee_bp: must be 0-{MAX_HANDLING_FEE_BP} "
                      "(at most 20 %)")
    if terms.handling_fee_cap_fen < 0:
        errors.append("refund_terms.handling_fee_cap_fen: must not be negative")
    custodian = check_id(request.get("custodian_id"), "custodian_id", errors)
    if errors:
        raise InvalidArgument(errors)
    return SchemeFiling(code, name, tuple(courses), price, hours, valid_from, valid_until, terms,
                        custodian)


# --- charges ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChargeRequest:
    institution_id: str
    scheme_id: str
    contract_id: str
    trainee_id: str
    trainee_name: str
    signed_on: date | None
    class_hours: int
    amount_fen: int
    bank_reference: str
    paid_on: date
    classes_until: date


def parse_charge(request: dict, today: date, max_hours: int, max_months: int,
                 institution_id: str) -> ChargeRequest:
    """The request's own rules (the scheme's come in `charge_outside_scheme`)."""
    errors: list[str] = []
    if not institution_id:
        errors.append("institution_id: required")
    scheme_id = check_id(request.get("scheme_id"), "scheme_id", errors)
    contract_id = check_id(request.get("contract_id"), "contract_id", errors)
    trainee_id = check_id(request.get("trainee_id"), "trainee_id", errors)
    trainee_name = (request.get("trainee_name") or "").strip()
    signed_on = parse_date(request.get("signed_on"), "signed_on", errors, required=False)
    hours = int(request.get("class_hours") or 0)
    if not 1 <= hours <= max_hours:
        errors.append(f"class_hours: one charge covers 1-{max_hours} class hours (got {hours})")
    amount = int(request.get("amount_fen") or 0)
    if amount <= 0:
        errors.append(f"amount_fen: must be a positive number of fen (got {amount})")
    reference = check_id(request.get("bank_reference"), "bank_reference", errors)
    paid_on = parse_date(request.get("paid_on"), "paid_on", errors)
    until = parse_date(request.get("classes_until"), "classes_until", errors)
    if paid_on and paid_on > today:
        errors.append(f"paid_on: must not be in the future (today is {today})")
    if signed_on and signed_on > today:
        errors.append(f"signed_on: must not be in the future (today is {today})")
    if signed_on and paid_on and signed_on > paid_on:
        errors.append("signed_on: must not be after paid_on")
    if paid_on and until:
        if until < paid_on:
            errors.append("classes_until: must not be before paid_on")
        elif until > add_months(paid_on, max_months):
            errors.append(f"classes_until: one charge covers at most {max_months} months of "
                          f"classes (until {add_months(paid_on, max_months)} for a payment on "
                          f"{paid_on})")
    if errors:
        raise InvalidArgument(errors)
    return ChargeRequest(institution_id, scheme_id, contract_id, trainee_id, trainee_name,
                         signed_on, hours, amount, reference, paid_on, until)


def charge_outside_scheme(charge: ChargeRequest, scheme, hours_bought: int) -> list[str]:
    """Why the charge does not fit the filed scheme (empty: it fits)."""
    problems = []
    price = scheme.price_per_hour_fen
    if charge.amount_fen != charge.class_hours * price:
        problems.append(f"amount_fen: {charge.amount_fen} fen is not {charge.class_hours} class "
                        f"hours × {price} fen = {charge.class_hours * price} fen")
    valid_from, valid_until = date.fromisoformat(scheme.valid_from), \
        date.fromisoformat(scheme.valid_until)
    if not valid_from <= charge.paid_on <= valid_until:
        problems.append(f"paid_on: outside the scheme's validity {valid_from} to {valid_until}")
    if charge.classes_until > valid_until:
        problems.append(f"classes_until: after the scheme's validity ends ({valid_until})")
    if hours_bought + charge.class_hours > scheme.class_hours:
        problems.append(f"class_hours: the course has {scheme.class_hours} class hours; "
                        f"{hours_bought} are bought already")
    return problems


# --- refunds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    paid_fen: int
    lessons_consumed: int
    price_per_hour_fen: int
    consumed_fen: int
    deductions_fen: int
    refund_fen: int
    cooling_off: bool
    lines: tuple[tuple[str, str, int], ...]
    refundable_fen: int
    quoted_on: date

    def as_dict(self, institution_id: str, contract_id: str) -> dict:
        return {"institution_id": institution_id, "contract_id": contract_id,
                "paid_fen": self.paid_fen, "lessons_consumed": self.lessons_consumed,
                "price_per_hour_fen": self.price_per_hour_fen,
                "consumed_fen": self.consumed_fen, "deductions_fen": self.deductions_fen,
                "refund_fen": self.refund_fen, "cooling_off": self.cooling_off,
                "lines": [{"code": c, "description": d, "amount_fen": a}
                          for c, d, a in self.lines],
                "refundable_fen": self.refundable_fen, "quoted_on": self.quoted_on.isoformat()}


def in_cooling_off(signed_on: date, today: date, lessons_consumed: int, days: int) -> bool:
    """No lesson taken and still within `days` calendar days of signing (the day of signing
    is day 0)."""
    return lessons_consumed == 0 and today <= signed_on + timedelta(days=days)


def quote_refund(paid_fen: int, lessons_consumed: int, price: int, terms: RefundTerms,
                 signed_on: date, today: date, refundable_fen: int,
                 cooling_off_days: int = COOLING_OFF_DAYS) -> Quote:
    """The refund line by line: paid, minus lessons consumed × unit price, minus the deductions
    the contract allows (none in the cooling-off days), at least 0, and at most what custody
    holds for the contract."""
    lines = [("PAID", "paid into custody", paid_fen)]
    consumed = lessons_consumed * price
    lines.append(("CONSUMED", f"{lessons_consumed} lessons consumed × {price} fen", -consumed))
    rest = max(0, paid_fen - consumed)
    deductions = 0
    cooling = in_cooling_off(signed_on, today, lessons_consumed, cooling_off_days)
    if cooling:
        lines.append(("COOLING_OFF_WAIVER", f"no lesson taken within {cooling_off_days} days of "
                      f"signing ({signed_on}): the whole amount, no deduction", 0))
    else:
        materials = min(terms.materials_fee_fen, rest)
        if materials:
            lines.append(("MATERIALS_FEE", "teaching materials handed over (refund terms)",
                          -materials))
        rest -= materials
        handling = rest * terms.handling_fee_bp // 10_000
        if terms.handling_fee_cap_fen:
            handling = min(handling, terms.handling_fee_cap_fen)
        if handling:
            lines.append(("HANDLING_FEE", f"handling fee {terms.handling_fee_bp} bp of "
                          f"{rest} fen" + (f", at most {terms.handling_fee_cap_fen} fen"
                                           if terms.handling_fee_cap_fen else ""), -handling))
        rest -= handling
        deductions = materials + handling
    refund = min(rest, refundable_fen)
    if refund < rest:
        lines.append(("CUSTODY_LIMIT", "custody holds less for the contract", refund - rest))
    lines.append(("REMAINDER", "the refund", refund))
    return Quote(paid_fen, lessons_consumed, price, consumed, deductions, refund, cooling,
                 tuple(lines), refundable_fen, today)


def parse_decision(request: dict, refundable: int) -> tuple[str, int, list[str], str]:
    errors: list[str] = []
    outcome = request.get("outcome") or ""
    if isinstance(outcome, int):
        outcome = {1: OUTCOME_REFUNDED, 2: OUTCOME_REJECTED}.get(outcome, "")
    amount = int(request.get("refund_fen") or 0)
    if outcome == OUTCOME_REFUNDED:
        if amount <= 0:
            errors.append("refund_fen: a refund decision names a positive amount in fen")
    elif outcome == OUTCOME_REJECTED:
        if amount:
            errors.append("refund_fen: must be 0 for a rejection")
    else:
        errors.append("outcome: COMPLAINT_OUTCOME_REFUNDED or COMPLAINT_OUTCOME_REJECTED")
    reasons = [r.strip() if isinstance(r, str) else "" for r in request.get("reasons") or []]
    if not reasons:
        errors.append("reasons: at least one reason")
    for i, reason in enumerate(reasons):
        if not reason:
            errors.append(f"reasons[{i}]: must not be empty")
    decision_ref = (request.get("decision_ref") or "").strip()
    if errors:
        raise InvalidArgument(errors)
    return outcome, amount, reasons, decision_ref


# --- personal data ----------------------------------------------------------------------------
def mask_name(name: str) -> str:
    """张三丰 -> 张*丰, 张三 -> 张*: enough to recognise, not to identify."""
    name = name or ""
    if len(name) <= 1:
        return "*" if name else ""
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """13812345678 -> 138****5678."""
    phone = phone or ""
    if len(phone) <= 4:
        return "*" * len(phone)
    if len(phone) <= 7:
        return "*" * (len(phone) - 4) + phone[-4:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


# --- the figures --------------------------------------------------------------------------------
def yuan(fen: int) -> str:
    """Fen as a yuan decimal string, exact: 5734000000 -> "57340000.00"."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    as_of: datetime
    final: bool

    @property
    def start_at(self) -> datetime:
        return start_of_day(self.start)

    @property
    def end_at(self) -> datetime:
        return end_of_day(self.end)


MAX_PERIOD_DAYS = 366 * 20


def parse_period(request: dict, now: datetime) -> Period:
    """from/to (inclusive dates, Asia/Shanghai) and the moment the figures are as known at:
    given, or the period's end (now while it is not over). An as_of in the future is refused:
    its answer could still change."""
    errors: list[str] = []
    start = parse_date(request.get("from"), "from", errors)
    end = parse_date(request.get("to"), "to", errors)
    if start and end and end < start:
        errors.append("to: must not be before from")
    elif start and end and (end - start).days > MAX_PERIOD_DAYS:
        errors.append("to: a period of at most 20 years")
    as_of = None
    text = (request.get("as_of") or "").strip()
    if text:
        try:
            as_of = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            errors.append("as_of: must be an RFC 3339 time, e.g. 2025-12-31T23:59:59+08:00")
        else:
            if as_of.tzinfo is None:
                errors.append("as_of: must carry its offset, e.g. +08:00")
            elif as_of > now:
                errors.append(f"as_of: must not be in the future (now is {now.isoformat()}): "
                              "figures known at a future moment could still change")
    if errors:
        raise InvalidArgument(errors)
    if as_of is not None:
        return Period(start, end, as_of, True)
    over = end_of_day(end) <= now
    return Period(start, end, end_of_day(end) if over else now, over)


def methods(period: Period, institution_id: str, district_code: str) -> dict[str, str]:
    scope = "every institution"
    if institution_id:
        scope = f"institution {institution_id}"
    if district_code:
        scope += f" in district {district_code}"
    span = f"{period.start} to {period.end} (Asia/Shanghai, inclusive)"
    known = f"as recorded by {period.as_of.isoformat()}"
    return {
        "received_method": f"count of refund complaints filed {span}, {scope}, {known}",
        "resolved_method": f"count of refund complaints decided (refunded or rejected) {span}, "
                           f"{scope}, {known}",
        "refunded_method": f"sum of the refunds account's credits minus debits over ledger "
                           f"entries with code {CODE_COMPLAINT_REFUND} taking effect {span}, "
                           f"{scope}, {known}; in fen, yuan = fen / 100",
    }


# --- filing's status --------------------------------------------------------------------------
def status_update(event_type: str, sequence: int, occurred_at: str,
                  applied: tuple[int, str] | None) -> str | None:
    """The status filing's event sets, or None when it is not newer than the one applied
    (events arrive in any order and may be redelivered: the newest wins). Newer: a higher
    sequence of filing's institution; without sequences, the later occurrence."""
    status = STATUS_BY_FILING_EVENT[event_type]
    if applied is None:
        return status
    applied_sequence, applied_at = applied
    if sequence and applied_sequence:
        return status if sequence > applied_sequence else None
    return status if occurred_at >= applied_at else None


def fees_refusal(status: str | None, reason: str | None = None) -> str | None:
    """Why an institution in this status may not take prepaid fees (None: it may). Only an
    active filing takes them; refunds and releases of what is already held go on."""
    if status == ACTIVE:
        return None
    what = {"SUSPENDED": "suspended", "TERMINATED": "terminated",
            "EXPIRED": "expired"}.get(status or "", "not filed (no filing event seen)")
    return f"the institution's filing is {what}" + (f": {reason}" if reason else "")
