"""The escrow handlers with an in-memory unit of work and an in-memory ledger (the same pure
planning the real repository uses): each RPC's rules, no broker, no database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from vocreg.escrow.v1 import events_pb2

from services.common.entrypoints import parse_event
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.escrow import handlers
from services.escrow.domain import ledger as L
from services.escrow.models import (
    EscrowContract,
    EscrowInstitution,
    EscrowScheme,
    RefundComplaint,
)
from services.escrow.repository import EscrowRepository
from services.escrow.settings import EscrowSettings
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, page_of, run
from tests.support import uscc

INST_ID = uscc(41)
OTHER_ID = uscc(42)
BANK = "ICBC-BJ"
SETTINGS = EscrowSettings()
INST = caller("institution", INST_ID)
REGULATOR = caller("regulator")
CUSTODIAN = caller("custodian", party_id=BANK)


def matches(doc: dict, query: dict) -> bool:
    """The few MongoDB query forms the repository uses, over plain dicts."""
    for key, wanted in query.items():
        value = doc.get(key)
        if isinstance(wanted, dict):
            for op, operand in wanted.items():
                if value is None and op != "$in":
                    return False
                if op == "$gte" and not value >= operand:
                    return False
                if op == "$gt" and not value > operand:
                    return False
                if op == "$lt" and not value < operand:
                    return False
                if op == "$lte" and not value <= operand:
                    return False
                if op == "$in" and value not in operand:
                    return False
        elif isinstance(value, list):
            if wanted not in value:
                return False
        elif value != wanted:
            return False
    return True


class FakeEscrowRepository(FakeRepository, EscrowRepository):
    def __init__(self):
        super().__init__("escrow")
        self.accounts: dict[str, dict] = {}
        self.journal: list[dict] = []
        self.timeouts: dict[str, dict] = {}

    # aggregates
    def institution(self, institution_id):
        return self.load(EscrowInstitution, institution_id)

    def institution_view(self, institution_id):
        return self.get(EscrowInstitution, institution_id)

    def scheme(self, scheme_id):
        return self.tracked(EscrowScheme, scheme_id) or self.get(EscrowScheme, scheme_id)

    def scheme_by_code(self, institution_id, code):
        return next((s for s in self.all(EscrowScheme) if s.institution_id == institution_id
                     and s.scheme_code == code), None)

    def schemes_page(self, institution_id, size, after):
        return page_of([s for s in self.all(EscrowScheme) if not institution_id
                        or s.institution_id == institution_id], "scheme_id", size, after)

    def contract(self, key):
        return self.load(EscrowContract, key)

    def contract_view(self, key):
        return self.tracked(EscrowContract, key) or self.get(EscrowContract, key)

    def contract_with_reference(self, reference_key):
        return next((c for c in self.all(EscrowContract)
                     if reference_key in (c.bank_references or [])), None)

    def contracts_with_open_ops(self, limit=200):
        return self.load_all(EscrowContract, lambda c: any(
            o.get("state") == "PENDING" for o in c.ops or []))

    def count_open_contracts(self, institution_id):
        return sum(1 for c in self.all(EscrowContract) if c.institution_id == institution_id
                   and c.state == "CONTRACT_STATE_OPEN")

    def complaint(self, complaint_id):
        return self.load(RefundComplaint, complaint_id)

    def complaint_view(self, complaint_id):
        return self.get(RefundComplaint, complaint_id)

    def complaints_page(self, filters, size, after):
        return page_of([c for c in self.all(RefundComplaint)
                        if matches(c.to_mongo().to_dict(), filters)], "complaint_id", size,
                       after)

    def _complaint_docs(self, match):
        return [d for d in (c.to_mongo().to_dict() for c in self.all(RefundComplaint))
                if matches(d, match)]

    def count_complaints(self, match):
        return len(self._complaint_docs(match))

    def complaint_ids(self, match, limit):
        return sorted(d["_id"] for d in self._complaint_docs(match))[:limit]

    def count_breached(self):
        return sum(1 for i in self.all(EscrowInstitution) if i.conserved is False)

    # the ledger
    def open_accounts(self, specs, now):
        for a, kind, bank in specs:
            self.accounts.setdefault(a, {"_id": a, "ledger": a.split("/", 1)[0], "kind": kind,
                                         "bank": bank, "cache": {}, "cache_seq": 0})

    def account_docs(self, ids):
        return {a: self.accounts[a] for a in ids if a in self.accounts}

    def accounts_exist(self, ids):
        return all(a in self.accounts for a in ids)

    def ledger_account_kinds(self, ledger):
        return {a: d["kind"] for a, d in self.accounts.items() if d["ledger"] == ledger}

    def ledger_account_caches(self, ledger):
        return {}

    def ledgers(self):
        return sorted({d["ledger"] for d in self.accounts.values()})

    def balances(self, ids):
        found = {}
        for a in ids:
            if a not in self.accounts:
                continue
            b, seq = L.Balance(), 0
            for e in self.journal:
                for leg in e["legs"]:
                    if leg["a"] == a:
                        b, seq = b.plus(L.Leg.of(leg)), e["seq"]
            found[a] = (self.accounts[a], b, seq)
        return found

    def head(self, ledger):
        return max((e["seq"] for e in self.journal if e["ledger"] == ledger), default=0)

    def entries_by_ids(self, stored_ids):
        ids = set(stored_ids)
        return [e for e in self.journal if e["_id"] in ids]

    entries_by_ids_light = entries_by_ids

    def settlements(self, pending_ids):
        ids = set(pending_ids)
        return {e["settles"]: e for e in self.journal if e.get("settles") in ids}

    def ledger_entries(self, ledger, head):
        return [e for e in self.journal if e["ledger"] == ledger and e["seq"] <= head]

    def open_lesson_fees(self, ledger, contract_id):
        pending = [e for e in self.journal if e["ledger"] == ledger and e["kind"] == L.PENDING
                   and e.get("contract_id") == contract_id]
        settled = self.settlements([p["_id"] for p in pending])
        return sorted((p for p in pending if p["_id"] not in settled),
                      key=lambda p: (p.get("timeout_at") or datetime.max.replace(
                          tzinfo=timezone.utc), p["seq"]))

    def due_timeouts(self, now, limit=500):
        return [t for t in self.timeouts.values() if t["timeout_at"] <= now][:limit]

    def drop_timeouts(self, stored_ids):
        for i in stored_ids:
            self.timeouts.pop(i, None)

    def refund_entries(self, match, projection=None):
        return [e for e in self.journal if matches(e, match)]

    def append_with_docs(self, ledger, specs, clock, actor, path="transfers"):
        wanted = {a for s in specs for a in (s.debit, s.credit) if a}
        pendings = {}
        for e in self.journal:
            if e["kind"] == L.PENDING and e["ledger"] == ledger:
                debit = next(leg["a"] for leg in e["legs"] if leg.get("dp"))
                credit = next(leg["a"] for leg in e["legs"] if leg.get("cp"))
                settled = self.settlements([e["_id"]]).get(e["_id"])
                pendings[e["_id"]] = L.PendingState(
                    e["_id"], debit, credit, e["amount"], e.get("timeout_at"),
                    L.STATE_BY_SETTLEMENT[settled["kind"]] if settled else L.STATE_PENDING,
                    e.get("contract_id", ""), e.get("complaint_id", ""),
                    e.get("district_code", ""))
                wanted |= {debit, credit}
        wanted |= {d["bank"] for a, d in self.accounts.items() if a in wanted and d["bank"]}
        wanted.add(L.custody(ledger))
        accounts = {a: L.AccountState(a, doc["kind"], b, doc["bank"])
                    for a, (doc, b, _) in self.balances(wanted).items()}
        existing = {e["_id"]: e["digest"] for e in self.journal}
        state = L.LedgerState(ledger, self.head(ledger), accounts, pendings, existing)
        docs, answers = L.plan(state, specs, clock.now(), actor, path)
        self.journal.extend(docs)
        for d in docs:
            if d.get("timeout_at"):
                self.timeouts[d["_id"]] = {"_id": d["_id"], "ledger": ledger,
                                           "timeout_at": d["timeout_at"]}
        return answers, {d["_id"]: d for d in docs}

    def append(self, ledger, specs, clock, actor, path="transfers"):
        return self.append_with_docs(ledger, specs, clock, actor, path)[0]


@pytest.fixture
def clock():
    c = FakeClock()
    c.set(2026, 3, 2)
    return c


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeEscrowRepository(), events_pb2, clock, "escrow")


def filing_event(uow, clock, event_type, sequence, institution_id=INST_ID, **fields):
    body = {"meta": {"event_id": f"{event_type}-{sequence}-{institution_id}",
                     "occurred_at": "2026-03-01T01:00:00Z", "source": "filing",
                     "sequence": sequence}, "institution_id": institution_id, **fields}
    uow.begin()
    event = parse_event("filing", event_type, body)
    result = handlers.filing_status_changed(event, uow, clock, SETTINGS)
    uow.flush()
    return result


def scheme(uow, clock, **overrides) -> str:
    request = {"scheme_code": "S1", "name": "建造师", "courses": ["经济"],
               "price_per_hour_fen": 10_000, "class_hours": 120, "valid_from": "2026-01-01",
               "valid_until": "2026-12-31", "custodian_id": BANK,
               "refund_terms": {"materials_fee_fen": 20_000, "handling_fee_bp": 500},
               "request_id": "scheme-1", **overrides}
    return run(handlers.file_scheme, uow, clock, SETTINGS, request, INST)["scheme"]["scheme_id"]


def payment(scheme_id, contract="HT-1", hours=10, reference="B1", **overrides) -> dict:
    return {"institution_id": INST_ID, "scheme_id": scheme_id, "contract_id": contract,
            "trainee_id": f"t-{contract}", "trainee_name": "张三丰", "signed_on": "2026-03-02",
            "class_hours": hours, "amount_fen": hours * 10_000, "bank_reference": reference,
            "paid_on": "2026-03-02", "classes_until": "2026-05-31",
            "request_id": f"pay-{reference}", **overrides}


@pytest.fixture
def filed(uow, clock):
    filing_event(uow, clock, "InstitutionFiled", 1, district_code="110108")
    return scheme(uow, clock)


def pay(uow, clock, scheme_id, **kw):
    return run(handlers.record_payment, uow, clock, SETTINGS, payment(scheme_id, **kw), CUSTODIAN)


def stored(uow):
    repo = uow.repo
    return (len(repo.journal), len(repo.all(EscrowContract)), len(repo.all(RefundComplaint)))


def conserved(uow, clock):
    answer = run(handlers.check_conservation, uow, clock, SETTINGS, {}, REGULATOR)
    return answer["breaches"] == 0


# --- schemes and filing's status --------------------------------------------------------------
def test_only_an_active_filing_files_a_scheme(uow, clock):
    with pytest.raises(FailedPrecondition) as caught:
        scheme(uow, clock)
    assert "not filed" in str(caught.value)
    filing_event(uow, clock, "InstitutionFiled", 1)
    sid = scheme(uow, clock)
    assert uow.events("SchemeFiled")[0]["scheme_id"] == sid
    assert set(uow.repo.ledger_account_kinds(INST_ID).values()) == {
        "CUSTODY", "RELEASED", "REFUNDS", "BANK"}
    with pytest.raises(AlreadyExists):
        scheme(uow, clock, request_id="other")
    filing_event(uow, clock, "InstitutionSuspended", 2, reason="整改")
    with pytest.raises(FailedPrecondition) as caught:
        scheme(uow, clock, scheme_code="S2", request_id="s2")
    assert "suspended: 整改" in str(caught.value)
    # an older event delivered late changes nothing
    filing_event(uow, clock, "InstitutionReinstated", 1)
    assert uow.repo.institution_view(INST_ID).status == "SUSPENDED"


def test_a_scheme_with_bad_fields_names_them_all(uow, clock):
    filing_event(uow, clock, "InstitutionFiled", 1)
    with pytest.raises(InvalidArgument) as caught:
        scheme(uow, clock, price_per_hour_fen=0, class_hours=0, valid_from="2026-13-01",
               courses=[], refund_terms={"handling_fee_bp": 3_000})
    assert [v.split(":")[0] for v in caught.value.violations] == [
        "courses", "price_per_hour_fen", "class_hours", "valid_from",
        "refund_terms.handling_fee_bp"]


# --- payments ------------------------------------------------------------------------------------------
def test_a_payment_holds_each_lessons_fee_pending_and_a_retry_moves_nothing(uow, clock, filed):
    answer = pay(uow, clock, filed)
    assert len(uow.repo.journal) == 11
    contract = answer["contract"]
    assert (contract["paid_fen"], contract["pending_fen"]) == (100_000, 100_000)
    assert contract["trainee_name"] == "张*丰"
    fees = [e for e in uow.repo.journal if e["kind"] == L.PENDING]
    assert len(fees) == 10 and {e["amount"] for e in fees} == {10_000}
    # waiting until the end of the charge's classes (Asia/Shanghai)
    assert fees[0]["timeout_at"] == datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=8)))
    assert uow.events("PaymentRecorded") == [{**uow.events("PaymentRecorded")[0]}]
    assert pay(uow, clock, filed) == answer and len(uow.repo.journal) == 11
    with pytest.raises(AlreadyExists) as caught:
        pay(uow, clock, filed, request_id="another")
    assert caught.value.reason == "BANK_REFERENCE_RECORDED"
    with pytest.raises(AlreadyExists) as caught:  # the same request_id, other content
        pay(uow, clock, filed, hours=9)
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert conserved(uow, clock)


@pytest.mark.parametrize("overrides, error, text", [
    ({"hours": 61}, InvalidArgument, "class_hours: one charge covers 1-60"),
    ({"classes_until": "2026-06-03"}, InvalidArgument, "at most 3 months"),
    ({"amount_fen": 100_001}, FailedPrecondition, "a charge outside the scheme"),
    ({"amount_fen": -1}, InvalidArgument, "amount_fen: must be a positive"),
    ({"scheme_id": "nope"}, NotFound, "scheme nope"),
    ({"institution_id": OTHER_ID}, NotFound, "scheme"),
    ({"trainee_name": ""}, InvalidArgument, "trainee_name: required"),
])
def test_a_charge_outside_the_rules_is_refused_and_stores_nothing(uow, clock, filed, overrides,
                                                                   error, text):
    before = stored(uow)
    kw = dict(overrides)
    if "scheme_id" in kw:
        sid = kw.pop("scheme_id")
    else:
        sid = filed
    if "hours" in kw:
        kw["amount_fen"] = kw["hours"] * 10_000
    with pytest.raises(error) as caught:
        pay(uow, clock, sid, **kw)
    assert text in str(caught.value)
    assert stored(uow) == before


def test_only_the_schemes_custodian_reports_its_payments(uow, clock, filed):
    other_bank = caller("custodian", party_id="CCB")
    with pytest.raises(PermissionDenied):
        run(handlers.record_payment, uow, clock, SETTINGS, payment(filed), other_bank)
    filing_event(uow, clock, "FilingTerminated", 2, reason="吊销")
    with pytest.raises(FailedPrecondition) as caught:
        pay(uow, clock, filed)
    assert "terminated" in str(caught.value) and stored(uow) == (0, 0, 0)


# --- attendance, refunds, closing -----------------------------------------------------------------
def test_lessons_taken_release_their_fees_oldest_first(uow, clock, filed):
    pay(uow, clock, filed)
    answer = run(handlers.record_attendance, uow, clock, SETTINGS,
                 {"contract_id": "HT-1", "lessons": 3, "attended_on": "2026-03-02",
                  "request_id": "a1"}, INST)
    assert answer["released_fen"] == 30_000 and answer["lessons_released"] == 3
    assert answer["contract"]["released_fen"] == 30_000
    assert answer["contract"]["lessons_taken"] == 3
    assert uow.events("LessonsReleased")[0]["transfer_ids"] == answer["transfer_ids"]
    with pytest.raises(FailedPrecondition) as caught:
        run(handlers.record_attendance, uow, clock, SETTINGS,
            {"contract_id": "HT-1", "lessons": 8, "attended_on": "2026-03-02",
             "request_id": "a2"}, INST)
    assert caught.value.reason == "NOT_ENOUGH_LESSONS_HELD"
    other = caller("institution", OTHER_ID)
    with pytest.raises(NotFound):
        run(handlers.record_attendance, uow, clock, SETTINGS,
            {"contract_id": "HT-1", "lessons": 1, "attended_on": "2026-03-02",
             "request_id": "a3"}, other)
    assert conserved(uow, clock)


def test_a_refund_complaint_from_filing_to_the_money_and_the_figures(uow, clock, filed):
    pay(uow, clock, filed)
    trainee = caller("trainee", party_id="t-HT-1")
    clock.set(2026, 3, 5)
    quote = run(handlers.quote_refund, uow, clock, SETTINGS,
                {"institution_id": INST_ID, "contract_id": "HT-1"}, trainee)["quote"]
    assert quote["cooling_off"] and quote["refund_fen"] == 100_000
    run(handlers.record_attendance, uow, clock, SETTINGS,
        {"contract_id": "HT-1", "lessons": 2, "attended_on": "2026-03-05", "request_id": "a"},
        INST)
    with pytest.raises(PermissionDenied):
        run(handlers.file_refund_complaint, uow, clock, SETTINGS, {
            "institution_id": INST_ID, "contract_id": "HT-1", "complainant_name": "X",
            "reason": "r", "request_id": "c0"}, caller("trainee", party_id="someone"))
    complaint = run(handlers.file_refund_complaint, uow, clock, SETTINGS, {
        "institution_id": INST_ID, "contract_id": "HT-1", "complainant_name": "张三丰",
        "complainant_phone": "13812345678", "reason": "不满意", "request_id": "c1"},
        trainee)["complaint"]
    assert complaint["complainant_phone"] == "138****5678"
    assert complaint["district_code"] == "110108"
    # 100,000 - 20,000 consumed - 20,000 materials - 5 % of 60,000
    assert complaint["quote_at_filing"]["refund_fen"] == 57_000
    with pytest.raises(FailedPrecondition):  # one open complaint per contract
        run(handlers.file_refund_complaint, uow, clock, SETTINGS, {
            "institution_id": INST_ID, "contract_id": "HT-1", "complainant_name": "张三丰",
            "reason": "again", "request_id": "c2"}, trainee)
    with pytest.raises(FailedPrecondition) as caught:
        run(handlers.decide_complaint, uow, clock, SETTINGS, {
            "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
            "refund_fen": 80_001, "reasons": ["r"], "request_id": "d0"}, REGULATOR)
    assert caught.value.reason == "REFUND_EXCEEDS_CUSTODY"
    decided = run(handlers.decide_complaint, uow, clock, SETTINGS, {
        "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 57_000, "reasons": ["按合同"], "request_id": "d1"}, REGULATOR)
    assert decided["complaint"]["state"] == "COMPLAINT_STATE_REFUNDED"
    assert decided["complaint"]["complainant_name"] == "张三丰"  # the regulator sees it
    resolved = uow.events("ComplaintResolved")[0]
    assert resolved["refunded_fen"] == 57_000 and resolved["district_code"] == "110108"
    closed = uow.events("ContractClosed")[0]
    assert (closed["released_fen"], closed["refunded_fen"]) == (43_000, 57_000)
    summary = run(handlers.get_custody_summary, uow, clock, SETTINGS, {}, INST)["summary"]
    assert (summary["custody_fen"], summary["released_fen"], summary["refunded_fen"]) == (
        0, 43_000, 57_000) and summary["conserved"]
    with pytest.raises(FailedPrecondition):
        run(handlers.decide_complaint, uow, clock, SETTINGS, {
            "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REJECTED",
            "reasons": ["r"], "request_id": "d2"}, REGULATOR)
    clock.set(2026, 4, 2)
    stats = run(handlers.get_refund_statistics, uow, clock, SETTINGS,
                {"from": "2026-03-01", "to": "2026-03-31", "include_ids": True}, None)
    assert (stats["complaints_received"], stats["complaints_resolved"],
            stats["refunded_fen"], stats["refunded_yuan"]) == (1, 1, 57_000, "570.00")
    assert stats["received_ids"] == [complaint["complaint_id"]] and stats["final"]
    before = run(handlers.get_refund_statistics, uow, clock, SETTINGS,
                 {"from": "2026-03-01", "to": "2026-03-31",
                  "as_of": "2026-03-04T00:00:00+08:00"}, None)
    assert before["complaints_received"] == 0 and before["refunded_fen"] == 0
    assert conserved(uow, clock)


def test_a_rejection_moves_no_money(uow, clock, filed):
    pay(uow, clock, filed)
    complaint = run(handlers.file_refund_complaint, uow, clock, SETTINGS, {
        "institution_id": INST_ID, "contract_id": "HT-1", "complainant_name": "代理人",
        "reason": "热线", "request_id": "c"}, REGULATOR)["complaint"]
    assert complaint["on_behalf"]
    entries = len(uow.repo.journal)
    run(handlers.decide_complaint, uow, clock, SETTINGS, {
        "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REJECTED",
        "reasons": ["证据不足"], "request_id": "d"}, REGULATOR)
    assert len(uow.repo.journal) == entries
    assert uow.events("ComplaintResolved")[0]["outcome"] == "COMPLAINT_OUTCOME_REJECTED"


def test_closing_a_contract_voids_pending_fees_and_refunds_what_is_owed(uow, clock, filed):
    pay(uow, clock, filed)
    run(handlers.record_attendance, uow, clock, SETTINGS,
        {"contract_id": "HT-1", "lessons": 4, "attended_on": "2026-03-02", "request_id": "a"},
        INST)
    answer = run(handlers.close_contract, uow, clock, SETTINGS,
                 {"contract_id": "HT-1", "reason": "CLOSE_REASON_TERMINATED",
                  "request_id": "close"}, INST)
    assert answer["refunded_fen"] == 60_000
    assert answer["contract"]["state"] == "CONTRACT_STATE_CLOSED"
    assert answer["contract"].get("pending_fen", 0) == 0
    assert uow.events("ContractClosed")[0]["released_fen"] == 40_000
    with pytest.raises(FailedPrecondition):
        pay(uow, clock, filed, reference="B2")
    assert conserved(uow, clock)


# --- the ledger API ---------------------------------------------------------------------------------------
def transfers(uow, clock, *rows, who=CUSTODIAN, ledger=INST_ID):
    return run(handlers.create_transfers, uow, clock, SETTINGS,
               {"institution_id": ledger, "transfers": list(rows)}, who)


def test_transfers_are_checked_whole_and_answered_as_stored(uow, clock, filed):
    fees = pay(uow, clock, filed)["charge"]["lesson_fee_ids"]
    first = transfers(uow, clock, {"id": "v", "kind": "TRANSFER_KIND_VOID_PENDING",
                                   "pending_id": fees[0]},
                      {"id": "r", "kind": "TRANSFER_KIND_POSTED",
                       "debit_account_id": "contract/HT-1", "credit_account_id": "refunds",
                       "amount_fen": 10_000, "code": "CORRECTION"})
    assert [t["id"] for t in first["transfers"]] == ["v", "r"]
    assert transfers(uow, clock, {"id": "v", "kind": "TRANSFER_KIND_VOID_PENDING",
                                  "pending_id": fees[0]})["transfers"] == first["transfers"][:1]
    before = stored(uow)
    for rows, error, reason in [
        ([{"id": "p", "kind": "TRANSFER_KIND_POST_PENDING", "pending_id": fees[0]}],
         FailedPrecondition, "PENDING_TRANSFER_ALREADY_VOIDED"),
        ([{"id": "ok", "kind": "TRANSFER_KIND_POST_PENDING", "pending_id": fees[1]},
          {"id": "x", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "contract/NOPE",
           "credit_account_id": "refunds", "amount_fen": 1}], NotFound, "ACCOUNT_NOT_FOUND"),
        ([{"id": "r", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "contract/HT-1",
           "credit_account_id": "refunds", "amount_fen": 9_999, "code": "CORRECTION"}],
         AlreadyExists, "TRANSFER_EXISTS_WITH_DIFFERENT_CONTENT"),
        ([{"id": "neg", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "custody",
           "credit_account_id": "refunds", "amount_fen": -1}], InvalidArgument,
         "INVALID_ARGUMENT"),
        ([{"id": "code", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "custody",
           "credit_account_id": "refunds", "amount_fen": 1, "code": "COMPLAINT_REFUND"}],
         InvalidArgument, "INVALID_ARGUMENT"),
    ]:
        with pytest.raises(error) as caught:
            transfers(uow, clock, *rows)
        assert caught.value.reason == reason
    assert stored(uow) == before
    with pytest.raises(PermissionDenied):
        transfers(uow, clock, {"id": "z", "kind": "TRANSFER_KIND_POSTED"},
                  who=caller("custodian", party_id="CCB"))


def test_expiry_and_the_sweep_finish_what_was_left(uow, clock, filed):
    pay(uow, clock, filed, classes_until="2026-03-31")
    clock.current = datetime(2026, 3, 31, 16, 0, 1, tzinfo=timezone.utc)  # 04-01 00:00:01 +08
    uow.begin()
    assert handlers.sweep(uow, clock, SETTINGS)["expired"] == 10
    uow.begin()
    assert handlers.sweep(uow, clock, SETTINGS)["expired"] == 0
    answer = run(handlers.get_contract, uow, clock, SETTINGS, {"contract_id": "HT-1"}, INST)
    assert answer["contract"]["owed_fen"] == 100_000
    assert conserved(uow, clock)


def test_a_breach_is_an_event_and_a_metric_once_per_breach(uow, clock, filed):
    pay(uow, clock, filed)
    transfers(uow, clock, {"id": "mis", "kind": "TRANSFER_KIND_POSTED",
                           "debit_account_id": f"bank/{BANK}", "credit_account_id": "custody",
                           "amount_fen": 500}, who=REGULATOR)
    assert not conserved(uow, clock)
    assert handlers.BREACHES._value.get() == 1
    uow.begin()
    handlers.conservation_sweep(uow, clock, SETTINGS)
    uow.flush()
    uow.publish()
    breaches = uow.events("ConservationBreached")
    assert len(breaches) == 1 and "custody" in breaches[0]["detail"]
    transfers(uow, clock, {"id": "mis-back", "kind": "TRANSFER_KIND_POSTED",
                           "debit_account_id": "custody", "credit_account_id": f"bank/{BANK}",
                           "amount_fen": 500}, who=REGULATOR)
    assert conserved(uow, clock) and handlers.BREACHES._value.get() == 0
