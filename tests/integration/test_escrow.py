"""The escrow service on the real broker and the session's database server: filing's events
decide who takes prepaid fees, money moves through the ledger, events go out, and the ledger
stays conserved under concurrent refunds and releases."""
from __future__ import annotations

import datetime

import eventlet
import pytest
from nameko.events import event_handler
from nameko.exceptions import RemoteError
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook, entrypoint_waiter

from services.escrow.models import EscrowContract, EscrowScheme, LedgerEntry, RefundComplaint
from services.escrow.service import EscrowService
from tests.support import token, uscc

INST = uscc(31)
OTHER = uscc(32)
BANK = "ICBC-BJ"


class EscrowEvents:
    name = "escrow_event_log"
    seen: list = []

    @event_handler("escrow", "PaymentRecorded")
    def paid(self, body):
        EscrowEvents.seen.append(("PaymentRecorded", body))

    @event_handler("escrow", "LessonsReleased")
    def released(self, body):
        EscrowEvents.seen.append(("LessonsReleased", body))

    @event_handler("escrow", "ComplaintResolved")
    def resolved(self, body):
        EscrowEvents.seen.append(("ComplaintResolved", body))

    @event_handler("escrow", "ContractClosed")
    def closed(self, body):
        EscrowEvents.seen.append(("ContractClosed", body))


@pytest.fixture
def escrow(start_service, clock):
    clock.set(2026, 3, 2)
    return start_service(EscrowService)


@pytest.fixture
def event_log(start_service):
    EscrowEvents.seen = []
    return start_service(EscrowEvents, replace_clock=False)


def filing_event(rabbit_config, escrow, event_type, n, event_id, sequence, **fields):
    handler = {"InstitutionFiled": "on_institution_filed",
               "InstitutionSuspended": "on_institution_suspended",
               "InstitutionReinstated": "on_institution_reinstated",
               "FilingTerminated": "on_filing_terminated"}[event_type]
    with entrypoint_waiter(escrow, handler):
        event_dispatcher(rabbit_config)("filing", event_type, {
            "meta": {"event_id": event_id, "occurred_at": "2026-03-01T01:00:00Z",
                     "source": "filing", "sequence": sequence},
            "institution_id": uscc(n), **fields})


def scheme_request(**overrides) -> dict:
    data = {"scheme_code": "CONSTRUCTOR-2026", "name": "一级建造师考试培训",
            "courses": ["建设工程经济", "建设工程法规"], "price_per_hour_fen": 10_000,
            "class_hours": 120, "valid_from": "2026-01-01", "valid_until": "2026-12-31",
            "refund_terms": {"materials_fee_fen": 20_000, "handling_fee_bp": 500},
            "custodian_id": BANK, "request_id": "scheme-1"}
    data.update(overrides)
    return data


def payment(scheme_id, contract="HT-001", hours=10, reference="B-0001", **overrides) -> dict:
    data = {"institution_id": INST, "scheme_id": scheme_id, "contract_id": contract,
            "trainee_id": f"trainee-{contract}", "trainee_name": "张三丰",
            "signed_on": "2026-03-02", "class_hours": hours, "amount_fen": hours * 10_000,
            "bank_reference": reference, "paid_on": "2026-03-02",
            "classes_until": "2026-05-31", "request_id": f"pay-{reference}"}
    data.update(overrides)
    return data


def remote_error(call, *args) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        call(*args)
    return caught.value


@pytest.fixture
def filed(escrow, rabbit_config):
    filing_event(rabbit_config, escrow, "InstitutionFiled", 31, "f-31", 1,
                 district_code="110108")
    return escrow


def test_a_contract_from_payment_to_refund(filed, rpc_as, event_log, clock):
    inst = rpc_as(token("institution", 31)).escrow
    bank = rpc_as(token("custodian", party_id=BANK)).escrow
    regulator = rpc_as(token("regulator")).escrow
    scheme = inst.FileScheme(scheme_request())["scheme"]
    paid = bank.RecordPayment(payment(scheme["scheme_id"]))
    assert paid["contract"]["paid_fen"] == 100_000
    assert paid["contract"]["pending_fen"] == 100_000
    assert paid["contract"]["trainee_name"] == "张*丰"
    assert len(paid["charge"]["lesson_fee_ids"]) == 10
    # a retried payment moves nothing twice
    assert bank.RecordPayment(payment(scheme["scheme_id"])) == paid
    err = remote_error(bank.RecordPayment, payment(scheme["scheme_id"], request_id="other"))
    assert err.exc_type == "AlreadyExists" and "B-0001" in err.value

    clock.set(2026, 3, 12)
    taken = inst.RecordAttendance({"contract_id": "HT-001", "lessons": 3,
                                   "attended_on": "2026-03-12", "request_id": "att-1"})
    assert taken["released_fen"] == 30_000 and taken["contract"].get("owed_fen", 0) == 0
    assert taken["contract"]["pending_fen"] == 70_000

    quote = inst.QuoteRefund({"contract_id": "HT-001"})["quote"]
    # 100,000 - 3 x 10,000 - materials 20,000 - 5 % of 50,000
    assert quote["refund_fen"] == 47_500 and not quote.get("cooling_off")

    trainee = rpc_as(token("trainee", party_id="trainee-HT-001")).escrow
    complaint = trainee.FileRefundComplaint({
        "institution_id": INST, "contract_id": "HT-001", "complainant_name": "张三丰",
        "complainant_phone": "13812345678", "reason": "课程与宣传不符",
        "request_id": "c-1"})["complaint"]
    assert complaint["complainant_phone"] == "138****5678"
    decided = regulator.DecideComplaint({
        "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 47_500, "reasons": ["按合同退费条款计算"], "request_id": "d-1"})
    assert decided["complaint"]["state"] == "COMPLAINT_STATE_REFUNDED"
    summary = regulator.GetCustodySummary({"institution_id": INST})["summary"]
    assert summary["custody_fen"] == 0 and summary["conserved"]
    assert summary["released_fen"] == 52_500 and summary["refunded_fen"] == 47_500
    stats = rpc_as().escrow.GetRefundStatistics({"from": "2026-03-01", "to": "2026-03-31",
                                                 "include_ids": True})
    assert stats["complaints_received"] == 1 and stats["complaints_resolved"] == 1
    assert stats["refunded_fen"] == 47_500 and stats["refunded_yuan"] == "475.00"
    assert regulator.CheckConservation({})["breaches"] == 0

    def seen(kind):
        return [b for k, b in EscrowEvents.seen if k == kind]
    eventlet.sleep(0.5)
    assert len(seen("PaymentRecorded")) == 1 and len(seen("LessonsReleased")) == 1
    assert int(seen("ComplaintResolved")[0]["refunded_fen"]) == 47_500
    assert int(seen("ContractClosed")[0]["refunded_fen"]) == 47_500


def test_suspension_stops_new_schemes_and_payments_not_refunds(filed, rpc_as, rabbit_config,
                                                                 clock):
    inst = rpc_as(token("institution", 31)).escrow
    bank = rpc_as(token("custodian", party_id=BANK)).escrow
    regulator = rpc_as(token("regulator")).escrow
    scheme = inst.FileScheme(scheme_request())["scheme"]
    bank.RecordPayment(payment(scheme["scheme_id"]))
    filing_event(rabbit_config, filed, "InstitutionSuspended", 31, "s-31", 2,
                 reason="责令整改")
    err = remote_error(inst.FileScheme, scheme_request(scheme_code="X", request_id="s2"))
    assert err.exc_type == "FailedPrecondition" and "suspended" in err.value
    err = remote_error(bank.RecordPayment, payment(scheme["scheme_id"], contract="HT-002",
                                                   reference="B-2"))
    assert err.exc_type == "FailedPrecondition" and "suspended" in err.value
    assert EscrowContract.objects(contract_id="HT-002").count() == 0
    # what custody holds is still released and refunded
    inst.RecordAttendance({"contract_id": "HT-001", "lessons": 1, "attended_on": "2026-03-02",
                           "request_id": "att-s"})
    trainee = rpc_as(token("trainee", party_id="trainee-HT-001")).escrow
    complaint = trainee.FileRefundComplaint({
        "institution_id": INST, "contract_id": "HT-001", "complainant_name": "张三丰",
        "reason": "机构停业整顿", "request_id": "c-s"})["complaint"]
    decided = regulator.DecideComplaint({
        "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 90_000, "reasons": ["机构停业，全额退还未上课时费用"], "request_id": "d-s"})
    assert int(decided["complaint"]["refunded_fen"]) == 90_000
    # reinstated: payments again (events out of order change nothing)
    filing_event(rabbit_config, filed, "InstitutionReinstated", 31, "r-31", 3)
    filing_event(rabbit_config, filed, "InstitutionSuspended", 31, "s-31-old", 2,
                 reason="late")
    bank.RecordPayment(payment(scheme["scheme_id"], contract="HT-003", reference="B-3"))
    filing_event(rabbit_config, filed, "FilingTerminated", 31, "t-31", 4, reason="吊销")
    err = remote_error(bank.RecordPayment, payment(scheme["scheme_id"], contract="HT-004",
                                                   reference="B-4"))
    assert err.exc_type == "FailedPrecondition" and "terminated" in err.value


def run_concurrently(rpc_as, token_value, calls, callers=12):
    """Each call (method name, request) on one of `callers` proxies (a proxy is one caller:
    never shared between greenthreads); each call's answer or its error type, in order."""
    queue = eventlet.Queue()
    for i, call in enumerate(calls):
        queue.put((i, call))
    answers = [None] * len(calls)

    def caller():
        proxy = rpc_as(token_value).escrow
        while not queue.empty():
            i, (method, request) = queue.get()
            try:
                answers[i] = getattr(proxy, method)(request)
            except RemoteError as exc:
                answers[i] = exc.exc_type

    threads = [eventlet.spawn(caller) for _ in range(callers)]
    for thread in threads:
        thread.wait()
    return answers


def test_concurrent_releases_and_refunds_leave_no_negative_balance(filed, rpc_as, clock):
    """Releases (posting lesson fees) and refunds (contract -> refunds) race on one
    institution's custody through the ledger API: what would overdraw a contract is refused
    with the balance it would reach, nothing goes below zero, every entry sums to zero, and
    the same transfers sent again change nothing."""
    inst = rpc_as(token("institution", 31)).escrow
    bank = rpc_as(token("custodian", party_id=BANK)).escrow
    regulator = rpc_as(token("regulator")).escrow
    scheme = inst.FileScheme(scheme_request())["scheme"]
    contracts = [f"HT-{i:03d}" for i in range(6)]
    fees = {}
    for i, c in enumerate(contracts):
        paid = bank.RecordPayment(payment(scheme["scheme_id"], contract=c, hours=4,
                                          reference=f"R{i}"))
        fees[c] = paid["charge"]["lesson_fee_ids"]
    calls = []
    for n in range(60):
        c = contracts[n % 6]
        if n % 3 == 0:  # a release of one of the contract's lessons
            transfer = {"id": f"post-{n}", "kind": "TRANSFER_KIND_POST_PENDING",
                        "pending_id": fees[c][(n // 6) % 4]}
        else:  # a refund of 1.5 lessons' worth: some of these must be refused
            transfer = {"id": f"refund-{n}", "kind": "TRANSFER_KIND_POSTED",
                        "debit_account_id": f"contract/{c}", "credit_account_id": "refunds",
                        "amount_fen": 15_000, "code": "CORRECTION"}
        calls.append(("CreateTransfers", {"institution_id": INST, "transfers": [transfer]}))
    first = run_concurrently(rpc_as, token("custodian", party_id=BANK), calls)
    refused = [a for a in first if not isinstance(a, dict)]
    assert refused and set(refused) <= {"FailedPrecondition"}, set(refused)
    entries_before = LedgerEntry.objects(ledger=INST).count()
    accounts = regulator.LookupAccounts({"institution_id": INST,
                                         "ids": [f"contract/{c}" for c in contracts]})
    for account in accounts["accounts"]:
        assert int(account.get("balance_fen", 0)) - int(account.get("debits_pending_fen", 0)) >= 0
    check = regulator.CheckConservation({"institution_id": INST})
    assert check["breaches"] == 0, check
    # the accepted transfers again, concurrently: the same answers, nothing moves
    accepted = [call for call, answer in zip(calls, first, strict=True) if isinstance(answer, dict)]
    again = run_concurrently(rpc_as, token("custodian", party_id=BANK), accepted)
    assert again == [a for a in first if isinstance(a, dict)]
    assert LedgerEntry.objects(ledger=INST).count() == entries_before


def test_the_sweep_finishes_a_movement_cut_short(filed, rpc_as, clock):
    inst = rpc_as(token("institution", 31)).escrow
    bank = rpc_as(token("custodian", party_id=BANK)).escrow
    scheme = inst.FileScheme(scheme_request())["scheme"]
    bank.RecordPayment(payment(scheme["scheme_id"]))
    # a movement written down but never applied (its worker died)
    contract = EscrowContract.objects.get(contract_id="HT-001")
    fee = contract.charges[0]["lesson_fee_ids"][0]
    contract.ops = [*contract.ops, {
        "op_id": "dead-1", "kind": "attendance", "state": "PENDING",
        "started_at": clock.now().replace(year=2026, month=3, day=1), "owner": "gone:1:x",
        "specs": [{"id": "sys.rel.dead", "kind": "POST_PENDING", "pending_id": fee,
                   "contract_id": "HT-001"}],
        "details": {"lessons": 1, "attended_on": "2026-03-02", "event": {
            "contract_id": "HT-001", "institution_id": INST, "lessons": 1, "amount_fen": 10_000,
            "transfer_id": "sys.rel.dead", "transfer_ids": ["sys.rel.dead"],
            "attended_on": "2026-03-02"}}}]
    contract.save()
    with entrypoint_hook(filed, "sweep") as sweep:
        assert sweep()["finished"] == 1
    with entrypoint_hook(filed, "sweep") as sweep:
        assert sweep()["finished"] == 0
    contract.reload()
    assert contract.lessons_taken == 1 and contract.ops[-1]["state"] == "DONE"
    assert LedgerEntry.objects(settles=f"{INST}/{fee}").count() == 1
    assert RefundComplaint.objects.count() == 0


def test_a_float_amount_is_refused_on_the_bus_and_stores_nothing(filed, rpc_as):
    """gRPC clients cannot even send one; a service on the bus could: the same refusal."""
    inst = rpc_as(token("institution", 31)).escrow
    bank = rpc_as(token("custodian", party_id=BANK)).escrow
    scheme = inst.FileScheme(scheme_request())["scheme"]
    for amount in (1.5, "12.5", -3):
        err = remote_error(bank.RecordPayment, payment(scheme["scheme_id"], amount_fen=amount))
        assert err.exc_type == "InvalidArgument" and "amount_fen" in err.value, err.value
        err = remote_error(bank.CreateTransfers, {"institution_id": INST, "transfers": [
            {"id": "t1", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "custody",
             "credit_account_id": "refunds", "amount_fen": amount}]})
        assert err.exc_type == "InvalidArgument" and "amount_fen" in err.value, err.value
    assert LedgerEntry.objects.count() == 0 and EscrowContract.objects.count() == 0


def all_pages(call, request: dict, items: str) -> list[str]:
    """Every page of a list, two at a time: the ids in the order they came."""
    ids, token_ = [], ""
    while True:
        answer = call({**request, "page": {"page_size": 2, "page_token": token_}})
        ids += [row[f"{items[:-1]}_id"] for row in answer.get(items, [])]
        token_ = answer.get("page", {}).get("next_page_token", "")
        if not token_:
            return ids


def test_filtered_lists_page_through_in_key_order_through_an_index(escrow, rpc_as):
    """Each filter ListSchemes and ListComplaints take, and its next pages, on the real
    server: every match once, in key order, none of another; each of those queries (the
    trainee's own included) read through an index."""
    for n in range(7):
        EscrowScheme(scheme_id=f"S-{n:02d}", institution_id=(INST, OTHER)[n % 2],
                     scheme_code=f"CODE-{n}", name="培训", price_per_hour_fen=10_000,
                     class_hours=10, valid_from="2026-01-01", valid_until="2026-12-31",
                     custodian_id=BANK, filed_on="2026-01-02").insert()
    states = ("COMPLAINT_STATE_OPEN", "COMPLAINT_STATE_REFUNDED", "COMPLAINT_STATE_REJECTED")
    complaints = []
    for n in range(12):
        complaint = RefundComplaint(
            complaint_id=f"CP-{n:02d}", institution_id=(INST, OTHER)[n % 2],
            contract_id=f"HT-{n}", contract_key=f"k/{n}", trainee_id=f"T-{n % 3}",
            filed_on="2026-03-02", filed_at=datetime.datetime(2026, 3, 2, 1, n),
            state=states[n % 3])
        complaint.insert()
        complaints.append(complaint)

    anyone, regulator = rpc_as().escrow, rpc_as(token("regulator")).escrow
    assert all_pages(anyone.ListSchemes, {}, "schemes") == [f"S-{n:02d}" for n in range(7)]
    assert all_pages(anyone.ListSchemes, {"institution_id": OTHER}, "schemes") == [
        "S-01", "S-03", "S-05"]

    def expected(**match):
        return [c.complaint_id for c in complaints
                if all(getattr(c, k) == v for k, v in match.items())]

    trainee = rpc_as(token("trainee", party_id="T-1")).escrow
    institution = rpc_as(token("institution", 31)).escrow
    for call, request, match in [
            (regulator, {}, {}),
            (regulator, {"institution_id": OTHER}, {"institution_id": OTHER}),
            (regulator, {"state": states[1]}, {"state": states[1]}),
            (regulator, {"institution_id": INST, "state": states[0]},
             {"institution_id": INST, "state": states[0]}),
            (institution, {}, {"institution_id": INST}),
            (institution, {"state": states[2]}, {"institution_id": INST, "state": states[2]}),
            (trainee, {}, {"trainee_id": "T-1"}),
            (trainee, {"state": states[1]}, {"trainee_id": "T-1", "state": states[1]}),
            (trainee, {"institution_id": OTHER}, {"trainee_id": "T-1", "institution_id": OTHER}),
            (trainee, {"institution_id": INST, "state": states[1]},
             {"trainee_id": "T-1", "institution_id": INST, "state": states[1]})]:
        assert expected(**match), match  # each filter matches something
        assert all_pages(call.ListComplaints, request, "complaints") == expected(**match), \
            request
        # the first page's query and the next one's (the key's range after the filter)
        for query in (dict(match), {**match, "_id": {"$gt": "CP-00"}}):
            plan = RefundComplaint._get_collection().find(query).sort("_id", 1).limit(3) \
                .explain()
            assert "COLLSCAN" not in str(plan["queryPlanner"]), (query, plan)
