"""A report year of events from every producer, as their events.proto messages (proto JSON,
proto field names), for the reporting tests at every level: unit (the domain's pure
functions), integration (dispatched on the broker) and e2e (published to a running worker).

Each entry is (producer, event type, body). The expected figures of the 2026 year are stated
beside it (EXPECTED_P01, EXPECTED_P03), worked out by hand from the list."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from tests.support import uscc

T1, T2 = f"T{uscc(501)}", f"T{uscc(502)}"   # training institutions (subject ids)
E1, E2 = uscc(511), uscc(512)               # filed evaluation organisations


def occurred(day: str, hour: int = 3) -> str:
    """The recording time of an event: `hour` UTC on `day` (Asia/Shanghai is +8)."""
    when = datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)
    return when.isoformat().replace("+00:00", "Z")


def event(producer: str, event_type: str, event_id: str, day: str, **fields) -> tuple:
    body = {"meta": {"event_id": event_id, "occurred_at": occurred(day), "source": producer,
                     "actor": "test"}, **fields}
    return producer, event_type, body


def completed(n, day, subject_kind, subject, kind, institution_id="", problems=0):
    return event("inspection", "InspectionCompleted", f"ins-done-{n}", day, case_id=f"case-{n}",
                 subject_kind=f"SUBJECT_KIND_{subject_kind}", subject_id=subject,
                 institution_id=institution_id, kind=f"INSPECTION_KIND_{kind}",
                 completed_on=day, problems_found=problems)


def finding(n, day, institution_id=""):
    return event("inspection", "FindingRecorded", f"ins-finding-{n}", day, case_id=f"case-{n}",
                 finding_id=f"finding-{n}", institution_id=institution_id,
                 article="ch.6 art.1(2)", tier="SANCTION_TIER_RESULTS_VOID", summary="问题")


def outcome(n, day, kind, amount_fen=0, institution_id="", case=None):
    return event("inspection", "CaseOutcomeRecorded", f"ins-outcome-{n}", day,
                 case_id=case or f"case-{n}", outcome_id=f"outcome-{n}",
                 subject_kind="SUBJECT_KIND_TRAINING_INSTITUTION",
                 subject_id=institution_id or f"S{n}", institution_id=institution_id,
                 outcome=f"CASE_OUTCOME_{kind}", amount_fen=str(amount_fen), decided_on=day)


def report_year() -> list[tuple]:
    """The events of the 2026 action year (periods: p01 07-01..07-14, p02 07-15..07-28,
    p03 07-29..08-11), in the order they are published."""
    return [
        # June: before the action; never counted.
        completed(0, "2026-06-20", "TRAINING_INSTITUTION", T2, "DAILY"),
        # p01
        completed(1, "2026-07-03", "TRAINING_INSTITUTION", T1, "DAILY", problems=1),
        finding(1, "2026-07-03"),
        completed(2, "2026-07-05", "EVALUATION_ORGANISATION", E1, "ANNUAL_ASSESSMENT", E1, 1),
        finding(2, "2026-07-05", E1),
        completed(3, "2026-07-08", "UNAPPROVED_CERTIFIER", "U-1", "SPECIAL"),
        event("escrow", "ComplaintResolved", "esc-1", "2026-07-06", complaint_id="cmp-1",
              institution_id=T1, district_code="410102", outcome="COMPLAINT_OUTCOME_REFUNDED",
              refunded_fen="350000", resolved_on="2026-07-06", transfer_id="tr-1"),
        event("inspection", "SanctionDecided", "ins-dec-1", "2026-07-10", decision_id="dec-1",
              case_id="case-2", subject_kind="SUBJECT_KIND_EVALUATION_ORGANISATION",
              subject_id=E1, institution_id=E1, tier="SANCTION_TIER_RESULTS_VOID",
              basis="001 ch.6 art.1", decided_on="2026-07-10",
              certificates={"certificate_numbers": ["S00004100012326400000" + "1"],
                            "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT"}),
        event("certificates", "CertificatesInvalidated", "crt-inv-1", "2026-07-10",
              operation_id="op-1", reason="INVALIDATION_REASON_EXAM_MISCONDUCT",
              decision_ref="dec-1", effective_on="2026-07-10",
              counts=[{"institution_id": E1, "occupation_code": "4-01-02-01",
                       "skill_level": 4, "count": 12}], total=12),
        outcome(4, "2026-07-11", "SUBSIDY_RECOVERED", 1234500, T1, case="case-1"),
        outcome(5, "2026-07-11", "CATALOGUE_REMOVED", institution_id=T1, case="case-1"),
        event("inspection", "SanctionDecided", "ins-dec-2", "2026-07-12", decision_id="dec-2",
              case_id="case-2", subject_kind="SUBJECT_KIND_EVALUATION_ORGANISATION",
              subject_id=E1, institution_id=E1, tier="SANCTION_TIER_WARNING",
              basis="001 ch.6 art.3", decided_on="2026-07-12", suspend_filing=True,
              certificates={"exam_session_id": "2026-06-A", "withdraw_data": True,
                            "recover_subsidies": True}),
        event("certificates", "CertificatesWithdrawn", "crt-wd-1", "2026-07-12",
              operation_id="op-2", decision_ref="dec-2", effective_on="2026-07-12",
              recover_subsidies=True, total=5),
        event("filing", "InstitutionSuspended", "fil-sus-1", "2026-07-12", institution_id=E1,
              reason="rectification", decision_ref="dec-2", effective_on="2026-07-12"),
        # p02
        completed(6, "2026-07-20", "TRAINING_INSTITUTION", T1, "SPECIAL"),
        event("escrow", "ComplaintResolved", "esc-2", "2026-07-21", complaint_id="cmp-2",
              institution_id=T1, district_code="410102", outcome="COMPLAINT_OUTCOME_REJECTED",
              resolved_on="2026-07-21"),
        outcome(7, "2026-07-25", "TRANSFERRED_TO_JUDICIAL", case="case-7"),
        event("courses", "CourseDelisted", "crs-del-1", "2026-07-15", course_id="course-1",
              provider_id="prov-1", permanent=False, reason="copyright",
              sanction_id="san-1", delisted_on="2026-07-15"),
        # p03
        event("courses", "CheatingConfirmed", "crs-cheat-1", "2026-07-30", case_id="cheat-1",
              course_id="course-2", provider_id="prov-2", employer_id="emp-1",
              trainee_ref="acct-9", minutes_zeroed=600, confirmed_on="2026-07-30"),
        completed(8, "2026-08-01", "EVALUATION_ORGANISATION", E2, "PERIODIC_EVALUATION", E2, 1),
        finding(8, "2026-08-01", E2),
        event("inspection", "SanctionDecided", "ins-dec-3", "2026-08-02", decision_id="dec-3",
              case_id="case-8", subject_kind="SUBJECT_KIND_EVALUATION_ORGANISATION",
              subject_id=E2, institution_id=E2, tier="SANCTION_TIER_INTERVIEW",
              basis="001 ch.6 art.2", decided_on="2026-08-02",
              certificates={"exam_session_id": "2026-07-B",
                            "reason": "INVALIDATION_REASON_QUESTION_LEAK"}),
        outcome(9, "2026-08-05", "TRANSFERRED_TO_DISCIPLINE", case="case-8"),
        event("filing", "FilingTerminated", "fil-term-1", "2026-08-06", institution_id=E2,
              reason="organised cheating", decision_ref="dec-4", effective_on="2026-08-06",
              filing_code="S0000410001"),
    ]


# A decision entered after p01 was submitted, dated inside p01: the correction's cause.
LATE = outcome(10, "2026-07-09", "SUBSIDY_RECOVERED", 20000, T2, case="case-10")
LATE_BODY_DAY = "2026-07-09"

# The p01 edition (cut-off 2026-07-14) of report_year(): (figure, period, cumulative).
EXPECTED_P01 = {
    "checked_training": (1, 1), "checked_training_daily": (1, 1),
    "checked_training_special": (0, 0), "checked_evaluation": (1, 1),
    "checked_evaluation_annual": (1, 1), "checked_other": (1, 1), "problems_found": (2, 2),
    "results_voided": (1, 1), "certificates_invalidated": (12, 12),
    "certificate_data_withdrawn": (5, 5), "subsidies_recovered": (1234500, 1234500),
    "catalogue_removed": (1, 1), "filings_suspended": (1, 1), "filings_terminated": (0, 0),
    "cases_transferred_judicial": (0, 0), "refund_complaints_resolved": (1, 1),
    "amount_refunded": (350000, 350000), "courses_delisted": (0, 0),
    "cheating_confirmed": (0, 0),
}
# The p03 edition (cut-off 2026-08-11): the period column and the cumulative one.
EXPECTED_P03 = {
    "checked_training": (0, 1), "checked_training_daily": (0, 1),
    "checked_training_special": (0, 1), "checked_evaluation": (1, 2),
    "checked_evaluation_annual": (0, 1), "checked_evaluation_periodic": (1, 1),
    "checked_other": (0, 1), "problems_found": (1, 3), "results_voided": (1, 2),
    "certificates_invalidated": (0, 12), "certificate_data_withdrawn": (0, 5),
    "subsidies_recovered": (0, 1234500), "catalogue_removed": (0, 1),
    "filings_suspended": (0, 1), "filings_terminated": (1, 1),
    "cases_transferred_judicial": (0, 1), "cases_transferred_discipline": (1, 1),
    "refund_complaints_resolved": (0, 2), "amount_refunded": (0, 350000),
    "courses_delisted": (0, 1), "cheating_confirmed": (1, 1),
}


def values(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """A table's rows (RPC or domain) as {figure: (period, cumulative)}, zeros left out
    unless expected: compare with `expected_full`."""
    return {r["figure"]: (int(r.get("period_value") or 0), int(r.get("cumulative_value") or 0))
            for r in rows}


def expected_full(expected: dict) -> dict[str, tuple[int, int]]:
    from services.reporting.domain.definition import FIGURES

    return {f.figure: expected.get(f.figure, (0, 0)) for f in FIGURES}


def day(text: str) -> date:
    return date.fromisoformat(text)


def shanghai_noon(text: str) -> datetime:
    """Noon in Asia/Shanghai on that day, as an aware datetime (04:00 UTC)."""
    return datetime.fromisoformat(text).replace(hour=4, tzinfo=timezone.utc)


def after(text: str, days: int = 1) -> datetime:
    return shanghai_noon((day(text) + timedelta(days=days)).isoformat())
