"""Issue 13's scenarios through gRPC over the real broker: grpcio -> edge -> RabbitMQ -> the
escrow worker and the REAL filing worker (its InstitutionFiled and InstitutionSuspended
events decide who takes prepaid fees).

One clocked platform serves the module; every test files its own institutions (numbers 5xx)
and moves the workers' clock to its own dates, so tests do not depend on their order.
Rules: seed 000 (prepaid cards filed, prepaid money in custody, refund complaints and the
amounts refunded for any period)."""
from __future__ import annotations

import concurrent.futures
from collections import defaultdict
from datetime import datetime, timezone

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from vocreg.escrow.v1 import escrow_pb2, escrow_pb2_grpc

from services.common.workdays import SHANGHAI
from tests.e2e.grpc_client import Client, Filing, status_of
from tests.platform import EventTap, Platform, eventually
from tests.support import PASSED_EVALUATION, application_request, token, uscc

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
ESCROW = "vocreg.escrow.v1.EscrowService"
BANK = "BOC-AY"
PRICE = 10_000  # fen per class hour


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("escrow"), services=("filing", "escrow"),
                       clock=True, FILING_DISTRICT_QUOTA=100, SWEEP_INTERVAL=1,
                       ESCROW_CONSERVATION_INTERVAL=600).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0, "worker-escrow": 0}, \
        f"unclean shutdown {codes}:\n{started.logs()}"


class Escrow(Client):
    def __init__(self, channel, role=None, institution_n=None, party_id=None):
        metadata = () if role is None else (
            ("authorization", f"Bearer {token(role, institution_n, party_id=party_id)}"),)
        super().__init__(escrow_pb2_grpc.EscrowServiceStub, escrow_pb2, channel,
                         metadata=metadata)


def at(plat, year, month, day, hour=10):
    plat.set_clock(datetime(year, month, day, hour, tzinfo=SHANGHAI))


def file_institution(plat, n: int, on=(2026, 3, 2)) -> None:
    """File institution n through FilingService; escrow learns it from InstitutionFiled."""
    at(plat, *on)
    app = Filing(plat.channel, "institution", n).SubmitApplication(
        application_request(n))["application"]
    regulator = Filing(plat.channel, "regulator")
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    regulator.DecideApplication({"application_id": app["application_id"],
                                 "outcome": "DECISION_OUTCOME_FILE",
                                 "evaluation": PASSED_EVALUATION})
    eventually(lambda: plat.db("escrow")["institutions"].find_one(
        {"_id": uscc(n), "status": "ACTIVE"}), what="escrow learning the filing")


def institution(plat, n):
    return Escrow(plat.channel, "institution", n)


def bank(plat, party=BANK):
    return Escrow(plat.channel, "custodian", party_id=party)


def regulator(plat):
    return Escrow(plat.channel, "regulator")


def trainee(plat, contract):
    return Escrow(plat.channel, "trainee", party_id=f"t-{contract}")


def file_scheme(plat, n, **overrides) -> str:
    request = {"scheme_code": "JZS-2026", "name": "建造师考试培训", "courses": ["工程经济"],
               "price_per_hour_fen": PRICE, "class_hours": 200, "valid_from": "2026-01-01",
               "valid_until": "2026-12-31", "custodian_id": BANK,
               "refund_terms": {"materials_fee_fen": 5_000, "handling_fee_bp": 1_000,
                                "handling_fee_cap_fen": 8_000},
               "request_id": f"scheme-{n}", **overrides}
    return institution(plat, n).FileScheme(request)["scheme"]["scheme_id"]


def pay(plat, n, scheme_id, contract, hours=10, reference=None, **overrides) -> dict:
    reference = reference or f"{contract}-P1"
    request = {"institution_id": uscc(n), "scheme_id": scheme_id, "contract_id": contract,
               "trainee_id": f"t-{contract}", "trainee_name": "李小龙", "signed_on": "2026-03-02",
               "class_hours": hours, "amount_fen": hours * PRICE, "bank_reference": reference,
               "paid_on": "2026-03-02", "classes_until": "2026-05-31",
               "request_id": f"pay-{reference}", **overrides}
    return bank(plat).RecordPayment(request)


def entries(plat, n=None) -> int:
    query = {"ledger": uscc(n)} if n is not None else {}
    return plat.db("escrow")["ledger_entries"].count_documents(query)


def stored(plat) -> tuple:
    db = plat.db("escrow")
    return tuple(db[c].count_documents({}) for c in (
        "ledger_entries", "contracts", "complaints", "schemes"))


# --- the API is there ---------------------------------------------------------------------------
def test_reflection_lists_the_escrow_service_with_its_rpcs(plat):
    info = plat.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    listed, file_answer = list(info(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=ESCROW)]), timeout=5))
    assert ESCROW in {s.name for s in listed.list_services_response.service}
    from google.protobuf import descriptor_pb2
    methods = set()
    for blob in file_answer.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(blob)
        for service in fd.service:
            if f"{fd.package}.{service.name}" == ESCROW:
                methods = {m.name for m in service.method}
    assert {"FileScheme", "RecordPayment", "RecordAttendance", "CloseContract",
            "FileRefundComplaint", "QuoteRefund", "DecideComplaint", "GetRefundStatistics",
            "CreateTransfers", "CheckConservation", "GetCustodySummary"} <= methods


# --- a contract's life and the period's figures ------------------------------------------------------
def recompute_statistics(plat, start: str, end: str, as_of: datetime) -> dict:
    """The independent script: the period's figures straight from the stored ledger entries
    and complaints, without the service's code."""
    db = plat.db("escrow")
    lo = datetime.fromisoformat(start).replace(tzinfo=SHANGHAI)
    hi = datetime.fromisoformat(end).replace(tzinfo=SHANGHAI)
    from datetime import timedelta
    hi = hi + timedelta(days=1)
    received = resolved = refunded = 0
    for c in db["complaints"].find():
        filed = c["filed_at"].replace(tzinfo=timezone.utc)
        if lo <= filed < hi and filed <= as_of:
            received += 1
        decided = c.get("decided_at")
        if decided is not None:
            decided = decided.replace(tzinfo=timezone.utc)
            if lo <= decided < hi and decided <= as_of:
                resolved += 1
    for e in db["ledger_entries"].find({"code": "COMPLAINT_REFUND"}):
        effective = e["effective_at"].replace(tzinfo=timezone.utc)
        recorded = e["recorded_at"].replace(tzinfo=timezone.utc)
        if lo <= effective < hi and recorded <= as_of:
            for leg in e["legs"]:
                if leg["a"].endswith("/refunds"):
                    refunded += leg["c"] - leg["d"]
    return {"received": received, "resolved": resolved, "refunded": refunded}


def test_a_period_from_payments_to_refunds_and_its_figures(plat):
    file_institution(plat, 501)
    scheme = file_scheme(plat, 501)
    at(plat, 2026, 3, 2)
    first = pay(plat, 501, scheme, "HT-501-1", hours=20)
    assert first["contract"]["trainee_name"] == "李*龙"  # masked for the bank
    assert int(first["contract"]["pending_fen"]) == 20 * PRICE
    again = pay(plat, 501, scheme, "HT-501-1", hours=20)  # the bank retries: nothing moves
    assert again == first and entries(plat, 501) == 21
    pay(plat, 501, scheme, "HT-501-2", hours=10)
    pay(plat, 501, scheme, "HT-501-3", hours=10)

    at(plat, 2026, 3, 5)
    # within the cooling-off days, no lesson taken: the whole amount back
    quote = trainee(plat, "HT-501-3").QuoteRefund(
        {"institution_id": uscc(501), "contract_id": "HT-501-3"})["quote"]
    assert quote["cooling_off"] and int(quote["refund_fen"]) == 10 * PRICE
    taken = institution(plat, 501).RecordAttendance(
        {"contract_id": "HT-501-1", "lessons": 4, "attended_on": "2026-03-05",
         "request_id": "att-1"})
    assert int(taken["released_fen"]) == 4 * PRICE and len(taken["transfer_ids"]) == 4

    at(plat, 2026, 3, 20)
    quote = institution(plat, 501).QuoteRefund({"contract_id": "HT-501-1"})["quote"]
    lines = {line["code"]: int(line["amount_fen"]) for line in quote["lines"]}
    # 200,000 paid - 4 x 10,000 consumed - materials 5,000 - 10 % of 155,000 capped at 8,000
    assert lines == {"PAID": 200_000, "CONSUMED": -40_000, "MATERIALS_FEE": -5_000,
                     "HANDLING_FEE": -8_000, "REMAINDER": 147_000}
    c1 = trainee(plat, "HT-501-1").FileRefundComplaint({
        "institution_id": uscc(501), "contract_id": "HT-501-1", "complainant_name": "李小龙",
        "complainant_phone": "13912345678", "reason": "老师频繁更换", "request_id": "c1"})
    c2 = regulator(plat).FileRefundComplaint({
        "institution_id": uscc(501), "contract_id": "HT-501-2", "complainant_name": "王五",
        "reason": "12345热线转办", "request_id": "c2"})
    assert c1["complaint"]["complainant_name"] == "李*龙"
    assert c1["complaint"]["complainant_phone"] == "139****5678"
    assert c2["complaint"]["complainant_name"] == "王五" and c2["complaint"]["on_behalf"]
    assert c1["complaint"]["district_code"] == "410502"

    at(plat, 2026, 3, 25)
    decided = regulator(plat).DecideComplaint({
        "complaint_id": c1["complaint"]["complaint_id"],
        "outcome": "COMPLAINT_OUTCOME_REFUNDED", "refund_fen": 147_000,
        "reasons": ["按合同退费条款"], "decision_ref": "AY-TF-2026-1", "request_id": "d1"})
    assert decided["complaint"]["state"] == "COMPLAINT_STATE_REFUNDED"
    assert decided == regulator(plat).DecideComplaint({
        "complaint_id": c1["complaint"]["complaint_id"],
        "outcome": "COMPLAINT_OUTCOME_REFUNDED", "refund_fen": 147_000,
        "reasons": ["按合同退费条款"], "decision_ref": "AY-TF-2026-1", "request_id": "d1"})
    regulator(plat).DecideComplaint({
        "complaint_id": c2["complaint"]["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REJECTED",
        "reasons": ["未提供证据"], "request_id": "d2"})
    contract = regulator(plat).GetContract({"institution_id": uscc(501),
                                            "contract_id": "HT-501-1"})["contract"]
    assert contract["state"] == "CONTRACT_STATE_CLOSED"
    assert int(contract["refunded_fen"]) == 147_000
    assert int(contract["released_fen"]) == 53_000  # 4 lessons + the allowed deductions
    summary = institution(plat, 501).GetCustodySummary({})["summary"]
    assert summary["conserved"] and int(summary["custody_fen"]) == 200_000
    assert int(summary["refunded_fen"]) == 147_000 and int(summary["released_fen"]) == 53_000

    at(plat, 2026, 4, 2)
    as_of = datetime(2026, 4, 1, tzinfo=SHANGHAI)
    request = {"from": "2026-03-01", "to": "2026-03-31", "as_of": as_of.isoformat(),
               "include_ids": True}
    stats = Escrow(plat.channel).GetRefundStatistics(request)  # public
    assert stats["final"] and int(stats["refunded_fen"]) == 147_000
    assert stats["refunded_yuan"] == "1470.00"
    assert (int(stats["complaints_received"]), int(stats["complaints_resolved"])) == (2, 2)
    assert sorted(stats["received_ids"]) == sorted(
        [c1["complaint"]["complaint_id"], c2["complaint"]["complaint_id"]])
    assert stats["refunded_method"].startswith("sum of the refunds account")
    independent = recompute_statistics(plat, "2026-03-01", "2026-03-31", as_of)
    assert independent == {"received": int(stats["complaints_received"]),
                           "resolved": int(stats["complaints_resolved"]),
                           "refunded": int(stats["refunded_fen"])}
    by_district = Escrow(plat.channel).GetRefundStatistics(
        {"from": "2026-03-01", "to": "2026-03-31", "district_code": "410502",
         "as_of": as_of.isoformat()})
    assert int(by_district["refunded_fen"]) >= 147_000

    # Something recorded later about March changes nothing already answered as of April 1.
    c3 = trainee(plat, "HT-501-3").FileRefundComplaint({
        "institution_id": uscc(501), "contract_id": "HT-501-3", "complainant_name": "赵六",
        "reason": "退课", "request_id": "c3"})
    regulator(plat).DecideComplaint({
        "complaint_id": c3["complaint"]["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 60_000, "reasons": ["协商一致"], "request_id": "d3"})
    assert Escrow(plat.channel).GetRefundStatistics(request) == stats
    april = Escrow(plat.channel).GetRefundStatistics({"from": "2026-04-01", "to": "2026-04-30"})
    assert int(april["refunded_fen"]) == 60_000 and not april.get("final")


# --- filing's suspension ------------------------------------------------------------------------------
def test_a_suspended_filing_stops_new_schemes_and_payments_not_refunds(plat):
    file_institution(plat, 502)
    scheme = file_scheme(plat, 502)
    at(plat, 2026, 3, 2)
    pay(plat, 502, scheme, "HT-502-1", hours=10)
    Filing(plat.channel, "regulator").SuspendInstitution(
        {"institution_id": uscc(502), "reason": "责令整改", "decision_ref": "AY-ZG-1"})
    eventually(lambda: plat.db("escrow")["institutions"].find_one(
        {"_id": uscc(502), "status": "SUSPENDED"}), what="escrow learning the suspension")
    before = stored(plat)
    code, message = status_of(pay, plat, 502, scheme, "HT-502-2")
    assert code == Code.FAILED_PRECONDITION and "suspended" in message
    code, message = status_of(file_scheme, plat, 502, scheme_code="OTHER", request_id="s2")
    assert code == Code.FAILED_PRECONDITION and "suspended" in message
    assert stored(plat) == before
    # what custody holds is still released and refunded
    institution(plat, 502).RecordAttendance({"contract_id": "HT-502-1", "lessons": 2,
                                             "attended_on": "2026-03-02", "request_id": "a"})
    c = trainee(plat, "HT-502-1").FileRefundComplaint({
        "institution_id": uscc(502), "contract_id": "HT-502-1", "complainant_name": "孙七",
        "reason": "机构被责令整改", "request_id": "c"})
    done = regulator(plat).DecideComplaint({
        "complaint_id": c["complaint"]["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 80_000, "reasons": ["未上课时全额退还"], "request_id": "d"})
    assert int(done["complaint"]["refunded_fen"]) == 80_000


# --- under load ---------------------------------------------------------------------------------------
def test_a_thousand_concurrent_refunds_and_releases_on_one_custody(plat):
    """40 contracts of 10 lessons each; for each, 5 lessons released, 5 voided (their fees go
    back to the trainee) and 15 refunds of half a lesson tried: 1,000 transfers at once, from
    16 callers. Refunds beyond what a contract holds are refused with the balance they would
    reach; nothing goes below zero; every entry sums to zero; the same transfers again
    change nothing."""
    file_institution(plat, 503)
    scheme = file_scheme(plat, 503)
    at(plat, 2026, 3, 2)
    fees = {}
    for i in range(40):
        fees[i] = pay(plat, 503, scheme, f"L{i}", hours=10)["charge"]["lesson_fee_ids"]
    calls = []
    for i in range(40):
        for k in range(5):
            calls.append({"id": f"rel-{i}-{k}", "kind": "TRANSFER_KIND_POST_PENDING",
                          "pending_id": fees[i][k]})
            calls.append({"id": f"void-{i}-{k}", "kind": "TRANSFER_KIND_VOID_PENDING",
                          "pending_id": fees[i][5 + k]})
        for k in range(15):
            calls.append({"id": f"ref-{i}-{k}", "kind": "TRANSFER_KIND_POSTED",
                          "debit_account_id": f"contract/L{i}", "credit_account_id": "refunds",
                          "amount_fen": PRICE // 2, "code": "CORRECTION"})
    assert len(calls) == 1000
    custodian = bank(plat)

    def send(transfer):
        try:
            return custodian.CreateTransfers({"institution_id": uscc(503),
                                              "transfers": [transfer]}, timeout=60)
        except grpc.RpcError as exc:
            return exc.code()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, calls))
    refused = [a for a in answers if not isinstance(a, dict)]
    assert set(refused) <= {Code.FAILED_PRECONDITION}, set(refused)
    accepted = {c["id"] for c, a in zip(calls, answers, strict=True) if isinstance(a, dict)}
    # releases and voids never fail: their fees are held; refunds fit what each contract holds
    assert all(f"rel-{i}-{k}" in accepted and f"void-{i}-{k}" in accepted
               for i in range(40) for k in range(5))
    refunds_per_contract = defaultdict(int)
    for transfer_id in accepted:
        if transfer_id.startswith("ref-"):
            refunds_per_contract[transfer_id.split("-")[1]] += 1
    assert all(n <= 10 for n in refunds_per_contract.values())  # 50,000 fen each at most
    accounts = regulator(plat).LookupAccounts({"institution_id": uscc(503), "ids": [
        f"contract/L{i}" for i in range(40)] + ["custody", "released", "refunds"]})["accounts"]
    by_id = {a["id"]: a for a in accounts}
    for i in range(40):
        a = by_id[f"contract/L{i}"]
        assert int(a.get("balance_fen", 0)) >= 0 and not int(a.get("debits_pending_fen", 0))
    refunded = sum(refunds_per_contract.values()) * PRICE // 2
    assert int(by_id["refunds"].get("balance_fen", 0)) == refunded
    assert int(by_id["released"]["balance_fen"]) == 40 * 5 * PRICE
    assert int(by_id["custody"].get("balance_fen", 0)) == 40 * 10 * PRICE - refunded - 40 * 5 * PRICE
    check = regulator(plat).CheckConservation({"institution_id": uscc(503)})
    assert check["results"][0]["conserved"], check
    legs = [leg for e in plat.db("escrow")["ledger_entries"].find({"ledger": uscc(503)})
            for leg in e["legs"]]
    assert sum(leg["d"] for leg in legs) == sum(leg["c"] for leg in legs)
    assert sum(leg["dp"] for leg in legs) == sum(leg["cp"] for leg in legs)
    count = entries(plat, 503)
    resent = [c for c in calls if c["id"] in accepted]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        again = list(pool.map(send, resent))
    assert again == [a for a in answers if isinstance(a, dict)]
    assert entries(plat, 503) == count


# --- the ledger's rules, refused precisely, nothing stored ------------------------------------------------
def test_bad_ledger_requests_are_answered_precisely_and_store_nothing(plat):
    file_institution(plat, 504)
    file_institution(plat, 505)
    scheme = file_scheme(plat, 504)
    file_scheme(plat, 505, custodian_id="CCB-AY")
    at(plat, 2026, 3, 2)
    fees = pay(plat, 504, scheme, "HT-504-1", hours=5)["charge"]["lesson_fee_ids"]
    custodian = bank(plat)
    ledger = uscc(504)

    def transfer(**fields):
        return {"institution_id": ledger, "transfers": [fields]}

    custodian.CreateTransfers(transfer(id="v1", kind="TRANSFER_KIND_VOID_PENDING",
                                       pending_id=fees[0]))
    custodian.CreateTransfers(transfer(id="pend-1", kind="TRANSFER_KIND_PENDING",
                                       debit_account_id="contract/HT-504-1",
                                       credit_account_id="refunds", amount_fen=1_000,
                                       timeout_seconds=3600))
    before = stored(plat)
    cases = [
        (transfer(id="neg", kind="TRANSFER_KIND_POSTED", debit_account_id="custody",
                  credit_account_id="contract/HT-504-1", amount_fen=-5),
         Code.INVALID_ARGUMENT, "transfers[0].amount_fen: must be 1-"),
        (transfer(id="zero", kind="TRANSFER_KIND_POSTED", debit_account_id="custody",
                  credit_account_id="contract/HT-504-1"),
         Code.INVALID_ARGUMENT, "amount_fen"),
        (transfer(id="ghost", kind="TRANSFER_KIND_POSTED", debit_account_id="contract/NOPE",
                  credit_account_id="refunds", amount_fen=100),
         Code.NOT_FOUND, "account contract/NOPE does not exist"),
        (transfer(id="bad-acct", kind="TRANSFER_KIND_POSTED", debit_account_id="wallet",
                  credit_account_id="refunds", amount_fen=100),
         Code.INVALID_ARGUMENT, "not an account id"),
        (transfer(id="p-void", kind="TRANSFER_KIND_POST_PENDING", pending_id=fees[0]),
         Code.FAILED_PRECONDITION, "is already voided"),
        (transfer(id="v1", kind="TRANSFER_KIND_VOID_PENDING", pending_id=fees[1]),
         Code.ALREADY_EXISTS, "exists with other content"),
        (transfer(id="too-much", kind="TRANSFER_KIND_POSTED",
                  debit_account_id="contract/HT-504-1", credit_account_id="refunds",
                  amount_fen=10 * PRICE),
         Code.FAILED_PRECONDITION, "would reach a balance of"),
        (transfer(id="sys.mine", kind="TRANSFER_KIND_POSTED", debit_account_id="custody",
                  credit_account_id="contract/HT-504-1", amount_fen=1),
         Code.INVALID_ARGUMENT, "the platform's"),
        (transfer(id="p-over", kind="TRANSFER_KIND_POST_PENDING", pending_id="pend-1",
                  amount_fen=2_000),
         Code.FAILED_PRECONDITION, "posts 2000 fen of a pending transfer of 1000 fen"),
        (transfer(id="nope", kind="TRANSFER_KIND_VOID_PENDING", pending_id="missing"),
         Code.NOT_FOUND, "pending transfer missing does not exist"),
        ({"institution_id": uscc(505), "transfers": [
            {"id": "x", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "custody",
             "credit_account_id": "refunds", "amount_fen": 1}]},
         Code.PERMISSION_DENIED, "another institution's ledger"),
    ]
    for request, code, text in cases:
        got, message = status_of(custodian.CreateTransfers, request)
        assert (got, text in message) == (code, True), (request, got, message)
    # the balance a refused transfer would reach, in the details
    try:
        custodian.CreateTransfers(cases[6][0])
    except grpc.RpcError as exc:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status
        status = rpc_status.from_call(exc)
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)
        assert info.reason == "EXCEEDS_CREDITS"
        # credits 50,000 - debits 100,000 - pending debits (4 lessons + 1,000)
        assert int(info.metadata["would_reach_fen"]) == 5 * PRICE - 10 * PRICE - (4 * PRICE + 1_000)
    # wrong roles and another institution's records
    for call, request, code in [
        (institution(plat, 504).CreateTransfers, transfer(id="i", kind="TRANSFER_KIND_POSTED"),
         Code.PERMISSION_DENIED),
        (trainee(plat, "HT-504-1").DecideComplaint, {"complaint_id": "x"},
         Code.PERMISSION_DENIED),
        (Escrow(plat.channel).RecordPayment, {"request_id": "r"}, Code.UNAUTHENTICATED),
        (institution(plat, 505).LookupAccounts, {"institution_id": ledger, "ids": ["custody"]},
         Code.PERMISSION_DENIED),
        (trainee(plat, "someone-else").QuoteRefund,
         {"institution_id": ledger, "contract_id": "HT-504-1"}, Code.PERMISSION_DENIED),
        (bank(plat, "CCB-AY").RecordPayment, dict(
            institution_id=ledger, scheme_id=scheme, contract_id="Z", trainee_id="t",
            trainee_name="甲", signed_on="2026-03-02", class_hours=1, amount_fen=PRICE,
            bank_reference="Z1", paid_on="2026-03-02", classes_until="2026-04-01",
            request_id="z"), Code.PERMISSION_DENIED),
    ]:
        got, message = status_of(call, request)
        assert got == code, (request, got, message)
    assert stored(plat) == before


def test_bad_payments_complaints_and_decisions_are_refused_and_store_nothing(plat):
    file_institution(plat, 506)
    scheme = file_scheme(plat, 506)
    at(plat, 2026, 3, 2)
    pay(plat, 506, scheme, "HT-506-1", hours=5)
    before = stored(plat)
    for overrides, code, text in [
        ({"class_hours": 61, "amount_fen": 61 * PRICE}, Code.INVALID_ARGUMENT,
         "class_hours: one charge covers 1-60 class hours"),
        ({"classes_until": "2026-06-03"}, Code.INVALID_ARGUMENT,
         "at most 3 months of classes (until 2026-06-02"),
        ({"amount_fen": 5 * PRICE + 1}, Code.FAILED_PRECONDITION, "a charge outside the scheme"),
        ({"paid_on": "2026-03-09"}, Code.INVALID_ARGUMENT, "paid_on: must not be in the future"),
        ({"scheme_id": "nope"}, Code.NOT_FOUND, "scheme nope"),
        ({"amount_fen": -PRICE}, Code.INVALID_ARGUMENT, "amount_fen: must be a positive"),
        ({"bank_reference": "HT-506-1-P1", "request_id": "another"}, Code.ALREADY_EXISTS,
         "is recorded already"),
        ({"trainee_id": "t-other", "bank_reference": "P2", "request_id": "p2"},
         Code.FAILED_PRECONDITION, "another trainee's"),
    ]:
        fresh = {"bank_reference": f"BAD-{code.name}-{len(text)}",
                 "request_id": f"bad-{code.name}-{len(text)}", **overrides}
        scheme_id = fresh.pop("scheme_id", scheme)
        got, message = status_of(pay, plat, 506, scheme_id, "HT-506-1", hours=5, **fresh)
        assert (got, text in message) == (code, True), (overrides, got, message)
    got, message = status_of(pay, plat, 506, scheme, "HT-506-1", hours=5, request_id="pay-HT-506-1-P1",
                             class_hours=4, amount_fen=4 * PRICE)
    assert got == Code.ALREADY_EXISTS and "request_id" in message
    got, _ = status_of(bank(plat).RecordPayment, {"request_id": "empty"})
    assert got == Code.INVALID_ARGUMENT
    got, _ = status_of(institution(plat, 506).RecordAttendance, {
        "contract_id": "HT-506-1", "lessons": 6, "attended_on": "2026-03-02", "request_id": "x"})
    assert got == Code.FAILED_PRECONDITION
    got, _ = status_of(institution(plat, 506).GetContract, {"contract_id": "NOPE"})
    assert got == Code.NOT_FOUND
    got, _ = status_of(regulator(plat).DecideComplaint, {
        "complaint_id": "nope", "outcome": "COMPLAINT_OUTCOME_REJECTED", "reasons": ["x"],
        "request_id": "dx"})
    assert got == Code.NOT_FOUND
    got, message = status_of(regulator(plat).DecideComplaint, {
        "complaint_id": "nope", "outcome": "COMPLAINT_OUTCOME_REFUNDED", "request_id": "dy"})
    assert got == Code.INVALID_ARGUMENT and "refund_fen" in message and "reasons" in message
    got, _ = status_of(Escrow(plat.channel).GetRefundStatistics, {"from": "2026-03-01"})
    assert got == Code.INVALID_ARGUMENT
    got, message = status_of(Escrow(plat.channel).GetRefundStatistics, {
        "from": "2026-03-01", "to": "2026-03-31", "as_of": "2030-01-01T00:00:00+08:00"})
    assert got == Code.INVALID_ARGUMENT and "future" in message
    assert stored(plat) == before


# --- time: expiry, and the conservation alert -----------------------------------------------------------
def test_a_pending_transfer_expires_at_its_timeout_exactly_once(plat):
    file_institution(plat, 507)
    scheme = file_scheme(plat, 507)
    at(plat, 2026, 3, 2)
    fees = pay(plat, 507, scheme, "HT-507-1", hours=2,
               classes_until="2026-03-31")["charge"]["lesson_fee_ids"]
    at(plat, 2026, 4, 1, hour=1)  # the classes ended: the sweep expires both fees
    reader = regulator(plat)

    def states():
        found = reader.LookupTransfers({"institution_id": uscc(507), "ids": fees})["transfers"]
        return [t.get("pending_state") for t in found]

    eventually(lambda: plat.db("escrow")["ledger_entries"].count_documents(
        {"ledger": uscc(507), "kind": "EXPIRE_PENDING"}) == 2, timeout=20, what="expiry")
    assert states() == ["PENDING_STATE_EXPIRED"] * 2
    contract = reader.GetContract({"institution_id": uscc(507),
                                   "contract_id": "HT-507-1"})["contract"]
    assert int(contract["owed_fen"]) == 2 * PRICE and not contract.get("pending_fen")
    code, message = status_of(bank(plat).CreateTransfers, {"institution_id": uscc(507),
                              "transfers": [{"id": "late", "kind": "TRANSFER_KIND_POST_PENDING",
                                             "pending_id": fees[0]}]})
    assert code == Code.FAILED_PRECONDITION and "already expired" in message
    import time
    time.sleep(2.5)  # more sweeps: still exactly one expiry each
    assert plat.db("escrow")["ledger_entries"].count_documents(
        {"ledger": uscc(507), "kind": "EXPIRE_PENDING"}) == 2


def test_a_booking_that_breaks_conservation_is_an_alert_never_silence(plat):
    file_institution(plat, 508)
    scheme = file_scheme(plat, 508)
    at(plat, 2026, 3, 2)
    pay(plat, 508, scheme, "HT-508-1", hours=3)
    with EventTap(plat.amqp_uri, "escrow") as tap:
        # the bank books money out of custody with no trainee's claim behind it
        regulator(plat).CreateTransfers({"institution_id": uscc(508), "transfers": [
            {"id": "misbooked", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": f"bank/{BANK}",
             "credit_account_id": "custody", "amount_fen": 1_000, "code": "CORRECTION"}]})
        check = regulator(plat).CheckConservation({"institution_id": uscc(508)})
        assert check["breaches"] == 1
        assert any("custody 29000 fen != owed 0 + pending 30000 fen" in p
                   for p in check["results"][0]["problems"])
        tap.wait_for(lambda got: any(k == "ConservationBreached" and
                                     b["institution_id"] == uscc(508) for k, b in got),
                     what="ConservationBreached")
    metrics = plat.metrics("worker-escrow")
    line = next(x for x in metrics.splitlines()
                if x.startswith("vocreg_escrow_conservation_breaches "))
    assert float(line.split()[1]) >= 1
    assert not institution(plat, 508).GetCustodySummary({})["summary"].get("conserved")
    # the correction is a new entry, never an edit: conservation is back
    regulator(plat).CreateTransfers({"institution_id": uscc(508), "transfers": [
        {"id": "misbooked-reversed", "kind": "TRANSFER_KIND_POSTED", "debit_account_id": "custody",
         "credit_account_id": f"bank/{BANK}", "amount_fen": 1_000, "code": "CORRECTION"}]})
    assert not regulator(plat).CheckConservation({"institution_id": uscc(508)}).get("breaches")
