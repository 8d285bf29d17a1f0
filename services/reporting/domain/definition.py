"""The report definition: the rows of the ministry's progress table (seed 002 §三(二), the
special action's contents in §二(三)) and, for each, the events it is counted from.

A version is fixed once editions were generated with it: its hash (SHA-256 of its canonical
JSON) is stored with every edition, so an edition is always read with the rules that made it.
Changing what a figure counts is a new version, and a new edition.

Readings where the seeds give no rule (each one a choice stated here):
- The day a fact counts on is the date of the act the event carries (completed_on,
  decided_on, effective_on, resolved_on, delisted_on, confirmed_on); an event without one
  counts on the day it was recorded (meta.occurred_at in Asia/Shanghai). So a decision
  entered late still counts in the period it was taken, and the period's edition is corrected.
- Institutions checked are distinct institutions (one checked twice is one), per kind of
  subject and per kind of check; a subject without a filed institution id is counted by its
  subject id.
- Results voided (取消评价结果) are decisions that void evaluation results: tier 1 (seed 001
  ch.6 art.1) or any decision whose certificate effect voids certificates or an exam session
  (not a withdrawal of uploaded data, which has its own row).
- Certificates invalidated and uploaded data withdrawn are counted in certificates, from the
  registry's own events (what it actually changed, not what was asked).
- A reversed decision is not subtracted: the table reports acts done in the period; the
  reversal is an act of its own, reported by the services that apply it.
- Refund complaints resolved count every decided complaint (refunded or rejected); the amount
  refunded sums the refunds paid.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime

from services.common.workdays import SHANGHAI

VERSION = "2026.1"

COUNT, DISTINCT, SUM = "MEASURE_COUNT", "MEASURE_DISTINCT", "MEASURE_SUM"


@dataclass(frozen=True)
class Figure:
    figure: str
    label: str
    unit: str
    measure: str
    sources: tuple[str, ...]
    rule: str
    money: bool = False  # carried in fen, shown in yuan

    def to_dict(self) -> dict:
        return {"figure": self.figure, "label": self.label, "unit": self.unit,
                "measure": self.measure, "sources": list(self.sources), "rule": self.rule}


_COMPLETED = ("inspection.InspectionCompleted",)
_KINDS = (("daily", "日常检查", "INSPECTION_KIND_DAILY"),
          ("special", "专项检查", "INSPECTION_KIND_SPECIAL"),
          ("annual", "年度评估", "INSPECTION_KIND_ANNUAL_ASSESSMENT"),
          ("periodic", "定期评估", "INSPECTION_KIND_PERIODIC_EVALUATION"))
# Whom a check was on: the table's two kinds of institution (seed 002 §二(一)), and the rest.
SUBJECT_GROUPS = {
    "SUBJECT_KIND_TRAINING_INSTITUTION": "training",
    "SUBJECT_KIND_ONLINE_PLATFORM": "training",
    "SUBJECT_KIND_EVALUATION_ORGANISATION": "evaluation",
    "SUBJECT_KIND_UNAPPROVED_CERTIFIER": "other",
}
KIND_SUFFIX = {proto: key for key, _, proto in _KINDS}


def _checked(group: str, label: str, subjects: str) -> list[Figure]:
    rows = [Figure(f"checked_{group}", f"检查{label}", "家", DISTINCT, _COMPLETED,
                   f"distinct institutions of InspectionCompleted with subject_kind {subjects}")]
    for key, kind_label, proto in _KINDS:
        rows.append(Figure(f"checked_{group}_{key}", f"  其中：{kind_label}", "家", DISTINCT,
                           _COMPLETED, f"as checked_{group}, kind {proto}"))
    return rows


FIGURES: tuple[Figure, ...] = (
    *_checked("training", "培训机构数", "TRAINING_INSTITUTION or ONLINE_PLATFORM"),
    *_checked("evaluation", "评价机构数", "EVALUATION_ORGANISATION"),
    Figure("checked_other", "检查未经备案发证主体数", "家", DISTINCT, _COMPLETED,
           "distinct subjects of InspectionCompleted with subject_kind UNAPPROVED_CERTIFIER or "
           "unspecified"),
    Figure("problems_found", "发现问题数", "个", COUNT, ("inspection.FindingRecorded",),
           "one per finding (finding_id)"),
    Figure("results_voided", "取消评价结果", "件", COUNT, ("inspection.SanctionDecided",),
           "decisions of tier RESULTS_VOID, or whose certificate effect voids named "
           "certificates or an exam session without withdraw_data (decision_id)"),
    Figure("certificates_invalidated", "宣布证书作废", "张", SUM,
           ("certificates.CertificatesInvalidated",),
           "certificates the registry invalidated (total, by operation_id)"),
    Figure("certificate_data_withdrawn", "撤销上传证书数据", "条", SUM,
           ("certificates.CertificatesWithdrawn",),
           "certificates whose uploaded data the registry withdrew (total, by operation_id)"),
    Figure("subsidies_recovered", "追回补贴资金", "元", SUM,
           ("inspection.CaseOutcomeRecorded",),
           "amount_fen of outcomes SUBSIDY_RECOVERED (by case_id)", money=True),
    Figure("catalogue_removed", "移出政府补贴性培训机构目录", "家", DISTINCT,
           ("inspection.CaseOutcomeRecorded",),
           "distinct institutions with an outcome CATALOGUE_REMOVED"),
    Figure("filings_suspended", "暂停备案", "家次", COUNT, ("filing.InstitutionSuspended",),
           "one per suspension (institution_id)"),
    Figure("filings_terminated", "终止备案", "家", COUNT, ("filing.FilingTerminated",),
           "one per termination (institution_id)"),
    Figure("cases_transferred_judicial", "移送司法机关", "件", COUNT,
           ("inspection.CaseOutcomeRecorded",), "outcomes TRANSFERRED_TO_JUDICIAL (case_id)"),
    Figure("cases_transferred_discipline", "移送纪检监察机关", "件", COUNT,
           ("inspection.CaseOutcomeRecorded",), "outcomes TRANSFERRED_TO_DISCIPLINE (case_id)"),
    Figure("refund_complaints_resolved", "办结退费投诉", "件", COUNT,
           ("escrow.ComplaintResolved",), "one per decided complaint (complaint_id)"),
    Figure("amount_refunded", "退费金额", "元", SUM, ("escrow.ComplaintResolved",),
           "refunded_fen of decided complaints (complaint_id)", money=True),
    Figure("courses_delisted", "下架课程", "门", COUNT, ("courses.CourseDelisted",),
           "one per delisting (course_id)"),
    Figure("cheating_confirmed", "查实作弊案件", "件", COUNT, ("courses.CheatingConfirmed",),
           "one per confirmed case (case_id)"),
)
BY_KEY = {f.figure: f for f in FIGURES}

# The events the report reads, (producer, event type): the worker subscribes to exactly these.
SOURCES: tuple[tuple[str, str], ...] = tuple(sorted({
    tuple(source.split(".")) for f in FIGURES for source in f.sources}))

# Where each event carries the date of its act (see the module's docstring).
DAY_FIELDS = {
    "inspection.InspectionCompleted": "completed_on",
    "inspection.SanctionDecided": "decided_on",
    "inspection.CaseOutcomeRecorded": "decided_on",
    "certificates.CertificatesInvalidated": "effective_on",
    "certificates.CertificatesWithdrawn": "effective_on",
    "filing.InstitutionSuspended": "effective_on",
    "filing.FilingTerminated": "effective_on",
    "escrow.ComplaintResolved": "resolved_on",
    "courses.CourseDelisted": "delisted_on",
    "courses.CheatingConfirmed": "confirmed_on",
}


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def definition_document() -> dict:
    return {"version": VERSION, "figures": [f.to_dict() for f in FIGURES],
            "day_fields": DAY_FIELDS}


DEFINITION_HASH = sha256_hex(canonical_json(definition_document()))


@dataclass(frozen=True)
class Counted:
    """One thing a figure counts: what (subject_id) and how much (1, certificates, fen)."""

    figure: str
    subject_id: str
    amount: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def event_day(kind: str, body: dict) -> date | None:
    """The day the event counts on (see the module's docstring); None if it has none."""
    field = DAY_FIELDS.get(kind)
    value = body.get(field) if field else None
    if value:
        try:
            return date.fromisoformat(str(value)[:10])
        except ValueError:
            pass  # a malformed business date: the recording day
    occurred = (body.get("meta") or {}).get("occurred_at")
    if not occurred:
        return None
    try:
        moment = datetime.fromisoformat(str(occurred).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(SHANGHAI).date()


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def counted(kind: str, body: dict) -> list[Counted]:
    """What one event counts in the table (proto JSON body, proto field names)."""
    rule = _RULES.get(kind)
    return rule(body) if rule else []


def _inspection_completed(body: dict) -> list[Counted]:
    group = SUBJECT_GROUPS.get(body.get("subject_kind") or "", "other")
    subject = body.get("institution_id") or body.get("subject_id") or body.get("case_id") or ""
    found = [Counted(f"checked_{group}", subject)]
    suffix = KIND_SUFFIX.get(body.get("kind") or "")
    if suffix and group != "other":
        found.append(Counted(f"checked_{group}_{suffix}", subject))
    return found


def _sanction(body: dict) -> list[Counted]:
    effect = body.get("certificates") or {}
    voids = bool(effect.get("certificate_numbers") or effect.get("exam_session_id")) \
        and not effect.get("withdraw_data")
    if body.get("tier") == "SANCTION_TIER_RESULTS_VOID" or voids:
        return [Counted("results_voided", body.get("decision_id") or "")]
    return []


_OUTCOMES = {
    "CASE_OUTCOME_TRANSFERRED_TO_JUDICIAL": "cases_transferred_judicial",
    "CASE_OUTCOME_TRANSFERRED_TO_DISCIPLINE": "cases_transferred_discipline",
}


def _case_outcome(body: dict) -> list[Counted]:
    outcome = body.get("outcome") or ""
    case_id = body.get("case_id") or ""
    if outcome == "CASE_OUTCOME_SUBSIDY_RECOVERED":
        amount = _int(body.get("amount_fen"))
        return [Counted("subsidies_recovered", case_id, amount)] if amount > 0 else []
    if outcome == "CASE_OUTCOME_CATALOGUE_REMOVED":
        return [Counted("catalogue_removed",
                        body.get("institution_id") or body.get("subject_id") or case_id)]
    if outcome in _OUTCOMES:
        return [Counted(_OUTCOMES[outcome], case_id)]
    return []


def _total(figure: str, id_field: str):
    def rule(body: dict) -> list[Counted]:
        total = _int(body.get("total"))
        return [Counted(figure, body.get(id_field) or "", total)] if total > 0 else []
    return rule


def _one(figure: str, id_field: str):
    def rule(body: dict) -> list[Counted]:
        return [Counted(figure, body.get(id_field) or "")]
    return rule


def _complaint(body: dict) -> list[Counted]:
    complaint = body.get("complaint_id") or ""
    found = [Counted("refund_complaints_resolved", complaint)]
    refunded = _int(body.get("refunded_fen"))
    if refunded > 0:
        found.append(Counted("amount_refunded", complaint, refunded))
    return found


_RULES = {
    "inspection.InspectionCompleted": _inspection_completed,
    "inspection.FindingRecorded": _one("problems_found", "finding_id"),
    "inspection.SanctionDecided": _sanction,
    "inspection.CaseOutcomeRecorded": _case_outcome,
    "certificates.CertificatesInvalidated": _total("certificates_invalidated", "operation_id"),
    "certificates.CertificatesWithdrawn": _total("certificate_data_withdrawn", "operation_id"),
    "filing.InstitutionSuspended": _one("filings_suspended", "institution_id"),
    "filing.FilingTerminated": _one("filings_terminated", "institution_id"),
    "escrow.ComplaintResolved": _complaint,
    "courses.CourseDelisted": _one("courses_delisted", "course_id"),
    "courses.CheatingConfirmed": _one("cheating_confirmed", "case_id"),
}

assert set(_RULES) == {s for f in FIGURES for s in f.sources} == set(DAY_FIELDS) | {
    "inspection.FindingRecorded"}, "every source has a rule and a day"
