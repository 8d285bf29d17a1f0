"""The registry's handlers with an in-memory unit of work: the rules of each RPC, no broker,
no database."""
from __future__ import annotations

import pytest
from vocreg.certificates.v1 import events_pb2
from vocreg.filing.v1 import events_pb2 as filing_events

from services.certificates import domain, handlers
from services.certificates.models import InstitutionView, Operation
from services.certificates.repository import CertificatesRepository
from services.certificates.settings import CertificatesSettings
from services.common.entrypoints import ContractViolation, parse_event
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, run
from tests.support import uscc

OCCUPATION = "4-10-01-02"
FILING_CODE = "S000041000123"
INSTITUTION = uscc(1)


def holder(i: int) -> str:
    first17 = f"41050219900307{i:03d}"
    return first17 + domain.id_check_character(first17)


class FakeCertificatesRepository(FakeRepository, CertificatesRepository):
    """The registry's queries over plain lists."""

    def __init__(self):
        super().__init__("certificates")
        self.certificates: list[dict] = []
        self.views: dict[str, dict] = {}

    def pending_operations(self, limit=500):
        return self.track_all(sorted((o for o in self.all(Operation) if o.state == "PENDING"),
                                     key=lambda o: o.started_at)[:limit])

    def operation(self, operation_id):
        return self.load(Operation, operation_id)

    def batch_numbers(self, batch_id):
        return {(d["holder_id_number"], d["occupation_code"], d["skill_level"]):
                d["certificate_number"] for d in self.certificates if d["batch_id"] == batch_id}

    def count_changed_by(self, operation_id):
        return sum(1 for d in self.certificates if d.get("operation_id") == operation_id)

    def certificate(self, number):
        from services.certificates.models import Certificate
        for doc in self.certificates:
            if doc["certificate_number"] == number:
                return Certificate._from_son(doc)
        return None

    def verification_record(self, number):
        from services.certificates.public import FIELDS
        for doc in self.certificates:
            if doc["certificate_number"] == number:
                return {k: v for k, v in doc.items() if k in FIELDS}
        return None

    def session_numbers(self, institution_id, exam_session_id):
        return {(d["holder_id_number"], d["occupation_code"], d["skill_level"]):
                d["certificate_number"] for d in self.certificates
                if d["institution_id"] == institution_id
                and d["exam_session_id"] == exam_session_id}

    def insert_certificates(self, docs, batch_id):
        self.certificates.extend(docs)
        return {d["certificate_number"] for d in docs}

    def counts(self, match, by_institution):
        field, value = next(iter(match.items()))
        rows = {}
        for d in self.certificates:
            if d.get(field) != value:
                continue
            key = (d["institution_id"], d["occupation_code"], d["skill_level"])
            row = rows.setdefault(key, {"_id": {"i": key[0], "o": key[1], "l": key[2]},
                                        "n": 0, "late": 0})
            row["n"] += 1
            row["late"] += bool(d["late_reported"])
        return [rows[k] for k in sorted(rows)]

    def _matching(self, selection):
        if selection.kind == "numbers":
            return [d for d in self.certificates if d["certificate_number"] in selection.numbers]
        return [d for d in self.certificates if d["institution_id"] == selection.institution_id
                and d["exam_session_id"] == selection.exam_session_id]

    def count_selected(self, selection):
        return len(self._matching(selection))

    def present_numbers(self, selection):
        return {d["certificate_number"] for d in self._matching(selection)}

    def end_valid(self, selection, valid, status, record, operation_id):
        changed = 0
        for d in self._matching(selection):
            if d["status"] == valid:
                d.update(status=status, invalidation=record, operation_id=operation_id)
                changed += 1
        return changed

    def institution_view(self, institution_id):
        view = self.views.get(institution_id)
        return None if view is None else InstitutionView(**view)

    def record_status_event(self, institution_id, entry):
        view = self.views.setdefault(institution_id, {"institution_id": institution_id,
                                                      "history": []})
        if entry not in view["history"]:
            view["history"].append(entry)

    def set_status(self, institution_id, status, reason, changed_at, sequence, event_id, read):
        view = self.views[institution_id]
        if view.get("event_id") != (read.event_id if read else None):
            return False
        view.update(status=status, reason=reason, changed_at=changed_at, sequence=sequence,
                    event_id=event_id)
        return True


class FakeFiling:
    """The filing gateway's two questions, answered from what the test sets."""

    def __init__(self, status="INSTITUTION_STATUS_ACTIVE", levels=(5, 4, 3)):
        self.status, self.levels = status, levels
        self.asked = []

    def institution(self, institution_id):
        if self.status is None:
            return None
        return {"institution_id": institution_id, "name": "安阳市第1职业技能培训评价中心",
                "filing_code": FILING_CODE, "status": self.status}

    def evaluation_right(self, institution_id, occupation, level, on):
        self.asked.append((occupation, level))
        if occupation != OCCUPATION:
            return False, f"occupation {occupation} is not filed"
        if level not in self.levels:
            return False, f"level {level} is not filed"
        return True, ""


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeCertificatesRepository(), events_pb2, clock, "certificates")


SETTINGS = CertificatesSettings()
INST = caller("institution", INSTITUTION)
REGULATOR = caller("regulator")


def batch(*rows, session="S-2025-09", assessed="2025-09-10"):
    return {"exam_session_id": session, "assessment_date": assessed, "rows": list(rows)}


def row(i, occupation=OCCUPATION, level=4, name="张三"):
    return {"holder_name": name, "holder_id_number": holder(i), "occupation_code": occupation,
            "skill_level": level, "row_ref": f"r{i}"}


def issue(uow, clock, request, filing=None):
    return run(handlers.issue_certificates, uow, clock, SETTINGS, request, INST,
               filing=filing or FakeFiling())


def test_a_batch_issues_numbers_and_publishes_one_event_with_its_counts(uow, clock):
    answer = issue(uow, clock, batch(row(1), row(2, level=5)))
    assert answer["issued_count"] == 2
    numbers = [r["certificate_number"] for r in answer["results"]]
    assert numbers == [f"{FILING_CODE}254000001", f"{FILING_CODE}255000001"]
    [event] = uow.events("CertificatesIssued")
    assert event["total"] == 2 and event["batch_id"] == answer["batch_id"]
    assert {(c["skill_level"], c["count"]) for c in event["counts"]} == {(4, 1), (5, 1)}
    [op] = uow.repo.all(Operation)
    assert op.state == "DONE" and op.pending_events == []


def test_rows_outside_the_scope_are_refused_and_filing_is_asked_once_per_pair(uow, clock):
    filing = FakeFiling()
    answer = issue(uow, clock, batch(row(1), row(2), row(3, occupation="4-03-02-01"),
                                     row(4, level=1)), filing)
    assert [r["status"] for r in answer["results"]] == [
        "ROW_STATUS_ISSUED", "ROW_STATUS_ISSUED", "ROW_STATUS_REJECTED", "ROW_STATUS_REJECTED"]
    assert "outside the institution's filed scope" in answer["results"][2]["errors"][0]
    assert sorted(filing.asked) == [("4-03-02-01", 4), (OCCUPATION, 1), (OCCUPATION, 4)]


def test_the_same_batch_again_is_answered_with_the_first_numbers(uow, clock):
    first = issue(uow, clock, batch(row(1)))
    again = issue(uow, clock, batch(row(1)))
    assert again["duplicate_count"] == 1 and again["issued_count"] == 0
    assert again["results"][0]["certificate_number"] == first["results"][0]["certificate_number"]
    assert len(uow.events("CertificatesIssued")) == 1  # nothing issued, nothing announced


@pytest.mark.parametrize("status, why", [
    ("INSTITUTION_STATUS_SUSPENDED", "suspended"), ("INSTITUTION_STATUS_TERMINATED", "terminated"),
    (None, "is not filed")])
def test_an_institution_that_may_not_issue_is_refused_whole(uow, clock, status, why):
    with pytest.raises(FailedPrecondition, match=why):
        issue(uow, clock, batch(row(1)), FakeFiling(status=status))
    assert uow.repo.certificates == [] and uow.published == []


def test_serials_of_a_level_cannot_pass_999999(uow, clock):
    uow.repo.counters[domain.serial_key(FILING_CODE, clock.now().date(), 4)] = 999_999
    with pytest.raises(FailedPrecondition, match="would exceed 999999"):
        issue(uow, clock, batch(row(1)))
    assert uow.repo.certificates == []


def test_verification_answers_wrong_name_exactly_like_an_unknown_number(uow, clock):
    number = issue(uow, clock, batch(row(1)))["results"][0]["certificate_number"]
    ok = run(handlers.verify_certificate, uow, clock, SETTINGS,
             {"certificate_number": number, "holder_name": "张三"}, caller("regulator"))
    assert ok["result"] == "VERIFICATION_RESULT_VALID" and ok["holder_name_masked"] == "张*"
    wrong = run(handlers.verify_certificate, uow, clock, SETTINGS,
                {"certificate_number": number, "holder_name": "李四"}, caller("regulator"))
    unknown_number = number[:-1] + "9"
    unknown = run(handlers.verify_certificate, uow, clock, SETTINGS,
                  {"certificate_number": unknown_number, "holder_name": "张三"},
                  caller("regulator"))
    assert wrong == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": number}
    assert unknown["result"] == wrong["result"] and set(unknown) == set(wrong)


def test_a_verification_without_a_name_is_invalid(uow, clock):
    with pytest.raises(InvalidArgument, match="holder_name: required"):
        run(handlers.verify_certificate, uow, clock, SETTINGS,
            {"certificate_number": f"{FILING_CODE}254000001"}, caller("regulator"))


def test_invalidation_changes_only_valid_ones_and_is_announced_once(uow, clock):
    number = issue(uow, clock, batch(row(1)))["results"][0]["certificate_number"]
    request = {"selection": {"certificate_numbers": [number]},
               "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "AY-2025-7"}
    first = run(handlers.invalidate_certificates, uow, clock, SETTINGS, request, REGULATOR)
    again = run(handlers.invalidate_certificates, uow, clock, SETTINGS, request, REGULATOR)
    assert (first["result"]["changed_count"], again["result"]["changed_count"]) == (1, 0)
    assert again["result"]["unchanged_count"] == 1
    [event] = uow.events("CertificatesInvalidated")
    assert event["reason"] == "INVALIDATION_REASON_EXAM_MISCONDUCT" and event["total"] == 1


def test_invalidating_nothing_is_not_found_and_stores_nothing(uow, clock):
    with pytest.raises(NotFound):
        run(handlers.invalidate_certificates, uow, clock, SETTINGS,
            {"selection": {"certificate_numbers": [f"{FILING_CODE}254000001"]},
             "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "AY-2025-8"}, REGULATOR)
    assert uow.repo.all(Operation) == []


def filing_event(event_type, sequence, occurred_at="2025-09-15T02:00:00Z", reason="r"):
    body = {"meta": {"event_id": f"e{sequence}{event_type}", "occurred_at": occurred_at,
                     "source": "filing", "aggregate_id": INSTITUTION, "sequence": sequence},
            "institution_id": INSTITUTION}
    if "reason" in filing_events.DESCRIPTOR.message_types_by_name[event_type].fields_by_name:
        body["reason"] = reason
    return parse_event("filing", event_type, body)


def apply(uow, clock, *events):
    for event in events:
        handlers.filing_status_changed(event, uow, clock, SETTINGS)
    return uow.repo.views[INSTITUTION]["status"]


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1), (3, 3, 0, 1, 2)])
def test_the_newest_filing_event_wins_in_any_delivery_order(uow, clock, order):
    history = [filing_event("InstitutionSuspended", 2), filing_event("InstitutionReinstated", 3),
               filing_event("FilingTerminated", 4), filing_event("InstitutionFiled", 5)]
    assert apply(uow, clock, *(history[i] for i in order)) == domain.ACTIVE


def test_a_terminated_institution_filed_again_may_issue_again(uow, clock):
    apply(uow, clock, filing_event("FilingTerminated", 4))
    with pytest.raises(FailedPrecondition, match="terminated"):
        issue(uow, clock, batch(row(1)))
    apply(uow, clock, filing_event("InstitutionFiled", 5))
    assert issue(uow, clock, batch(row(1)))["issued_count"] == 1


def test_a_certificate_is_stored_as_its_document_would_write_it():
    """The plain document the batch inserts (built without mongoengine, for speed) is the one
    models.Certificate writes, with and without the optional issuer name."""
    from datetime import date
    from types import SimpleNamespace

    from services.certificates.models import Certificate

    row = domain.check_row(0, {"holder_name": "张三丰", "holder_id_number": holder(1),
                               "occupation_code": OCCUPATION, "occupation_name": "育婴员",
                               "skill_level": 4}, date(2026, 12, 1))
    batch = SimpleNamespace(exam_session_id="s-1", assessment_date=date(2026, 11, 30), late=True)
    for issuer in ("安阳市职业技能培训评价中心", None):
        op = SimpleNamespace(institution_id=INSTITUTION, filing_code=FILING_CODE,
                             issuer_name=issuer, operation_id="op-1")
        number = domain.certificate_number(FILING_CODE, date(2026, 12, 1), 4, 1)
        plain = handlers._certificate_doc(row, number, op, batch, date(2026, 12, 1))
        modelled = Certificate(
            key=plain["_id"], certificate_number=number, institution_id=INSTITUTION,
            filing_code=FILING_CODE, issuer_name=issuer, exam_session_id="s-1",
            batch_id="op-1", holder_name="张三丰", holder_id_number=holder(1),
            occupation_code=OCCUPATION, occupation_name="育婴员", skill_level=4,
            assessment_date="2026-11-30", issued_on="2026-12-01", late_reported=True,
            status=domain.VALID).to_mongo().to_dict()
        assert plain == modelled


# --- filing's status: every transition, redeliveries and events out of order ------------------
F = "InstitutionFiled"
S = "InstitutionSuspended"
R = "InstitutionReinstated"
T = "FilingTerminated"
E = "FilingExpired"


def may_issue(uow, clock, session: str) -> bool:
    try:
        return issue(uow, clock, batch(row(1), session=session))["issued_count"] == 1
    except FailedPrecondition:
        return False


@pytest.mark.parametrize("before, event, status, issues", [
    pytest.param([], (F, 1), domain.ACTIVE, True, id="filed"),
    pytest.param([(F, 1)], (S, 2), domain.SUSPENDED, False, id="suspended"),
    pytest.param([(F, 1), (S, 2)], (R, 3), domain.ACTIVE, True, id="reinstated"),
    pytest.param([(F, 1)], (T, 2), domain.TERMINATED, False, id="terminated"),
    pytest.param([(F, 1), (S, 2)], (T, 3), domain.TERMINATED, False,
                 id="terminated-while-suspended"),
    pytest.param([(F, 1)], (E, 2), domain.EXPIRED, False, id="expired"),
    pytest.param([(F, 1), (T, 2)], (F, 3), domain.ACTIVE, True, id="filed-again-after-termination"),
    pytest.param([(F, 1), (E, 2)], (F, 3), domain.ACTIVE, True, id="filed-again-after-expiry"),
    pytest.param([(F, 1), (T, 2), (F, 3)], (S, 4), domain.SUSPENDED, False,
                 id="suspended-after-filed-again"),
])
def test_each_transition_of_filing_status(uow, clock, before, event, status, issues):
    for kind, sequence in before:
        apply(uow, clock, filing_event(kind, sequence))
    assert apply(uow, clock, filing_event(*event)) == status
    assert may_issue(uow, clock, "after") is issues


@pytest.mark.parametrize("kind", [F, S, R, T, E])
def test_a_redelivered_event_changes_nothing(uow, clock, kind):
    apply(uow, clock, filing_event(F, 1), filing_event(kind, 2))
    view = dict(uow.repo.views[INSTITUTION])
    assert apply(uow, clock, filing_event(kind, 2)) == view["status"]
    assert uow.repo.views[INSTITUTION] == view
    assert [h["event_id"] for h in view["history"]] == [f"e1{F}", f"e2{kind}"]


@pytest.mark.parametrize("newer, older, status", [
    ((F, 3), (T, 2), domain.ACTIVE),        # filed again, the termination arrives late
    ((T, 3), (F, 2), domain.TERMINATED),
    ((R, 3), (S, 2), domain.ACTIVE),
    ((S, 3), (R, 2), domain.SUSPENDED),
    ((E, 3), (F, 2), domain.EXPIRED),
    ((F, 3), (E, 2), domain.ACTIVE),
])
def test_an_older_event_delivered_after_a_newer_one_changes_nothing(uow, clock, newer, older,
                                                                     status):
    assert apply(uow, clock, filing_event(*newer), filing_event(*older)) == status


def test_without_sequences_the_later_occurrence_wins(uow, clock):
    terminated = filing_event(T, 0, occurred_at="2025-09-15T02:00:00Z")
    filed_again = filing_event(F, 0, occurred_at="2025-09-16T02:00:00Z")
    assert apply(uow, clock, filed_again, terminated) == domain.ACTIVE
    assert may_issue(uow, clock, "later")


def test_an_event_without_its_institution_is_a_contract_violation(uow, clock):
    event = parse_event("filing", F, {"meta": {"event_id": "e-none", "occurred_at":
                                               "2025-09-15T02:00:00Z", "source": "filing"}})
    with pytest.raises(ContractViolation, match="no institution_id"):
        handlers.filing_status_changed(event, uow, clock, SETTINGS)
    assert uow.repo.views == {}
