"""The escrow service's handlers: one function per RPC, event and timer, `(command, uow, clock,
settings)`. No nameko here.

Money moves in three steps on the contract (services/escrow/models.py EscrowContract.ops):
the movement is written down first with the ids of its transfers, then the transfers go to
the ledger (repository.append: all or none, ids keyed), then the movement is marked done with
its event. A crash in between is finished by the sweep from what was written down, with the
same transfer ids, so money never moves twice and an event is never lost. One movement at a
time per contract."""
from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timezone

import eventlet
from prometheus_client import Counter, Gauge

from services.common import paging
from services.common.auth import require_own_institution
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.vocabulary import normalize_id, parse_date
from services.common.workdays import today_in_shanghai
from services.escrow.domain import ledger as L
from services.escrow.domain import rules
from services.escrow.models import EscrowContract, EscrowInstitution, EscrowScheme, RefundComplaint
from services.escrow.views import (
    KIND_OF_ENUM,
    account_view,
    complaint_view,
    contract_view,
    scheme_view,
    timestamp,
    transfer_result_view,
    transfer_view,
)

log = logging.getLogger(__name__)

BREACHES = Gauge("vocreg_escrow_conservation_breaches",
                 "Ledgers whose last conservation check failed (custody != owed + pending, an "
                 "entry not summing to zero, or a stored balance not the sum of its entries).")
BREACHES_FOUND = Counter("vocreg_escrow_conservation_breaches_found_total",
                         "Conservation checks that found a breach, per check.")
MOVED = Counter("vocreg_escrow_money_fen_total", "Fen moved by the platform's flows, by kind.",
                ["kind"])
REFUSED = Counter("vocreg_escrow_transfers_refused_total",
                  "Transfer batches refused, by the first refusal's reason.", ["reason"])

PENDING_OP, DONE_OP = "PENDING", "DONE"
# Yield to the worker's other calls every this many entries of a replay.
REPLAY_CHUNK = 2_000
MAX_IDS = 10_000


# --- helpers --------------------------------------------------------------------------------
def _today(clock) -> date:
    return today_in_shanghai(clock.now())


def _institution_of(request: dict, caller, errors: list | None = None) -> str:
    """The institution a request is about: an institution's own (empty means its own)."""
    institution_id = normalize_id(request.get("institution_id"))
    if caller.role == "institution":
        if not institution_id:
            return caller.institution_id
        require_own_institution(caller, institution_id, "ledger")
    if not institution_id:
        if errors is None:
            raise InvalidArgument(["institution_id: required"])
        errors.append("institution_id: required")
    return institution_id


def _require_custodian_of(uow, caller, ledger: str) -> None:
    """A custodian bank acts only on the ledgers of institutions whose schemes name it."""
    if caller.role != "custodian":
        return
    if not uow.repo.accounts_exist([L.bank(ledger, caller.party_id)]):
        raise PermissionDenied("another institution's ledger: this custodian holds no custody "
                               "for it", reason="NOT_THIS_LEDGERS_CUSTODIAN")


def _require_ledger_reader(uow, caller, ledger: str) -> None:
    if caller.role == "institution":
        require_own_institution(caller, ledger, "ledger")
    _require_custodian_of(uow, caller, ledger)


def _refusal_error(exc: L.Refused):
    """A refused batch as the one error that says it best; every refusal in its details."""
    refusals = exc.refusals
    REFUSED.labels(refusals[0].reason).inc()
    for kind, make in (("INVALID", None), ("NOT_FOUND", NotFound), ("EXISTS", AlreadyExists)):
        chosen = [r for r in refusals if r.kind == kind]
        if not chosen:
            continue
        if make is None:
            return InvalidArgument([r.message for r in chosen], reason=chosen[0].reason)
        return make("; ".join(r.message for r in chosen[:5]), reason=chosen[0].reason)
    first = refusals[0]
    metadata = {"would_reach_fen": str(first.would_reach)} if first.would_reach is not None \
        else None
    return FailedPrecondition("; ".join(r.message for r in refusals[:5]), reason=first.reason,
                              violations=[(r.reason, f"transfer/{r.index}", r.message)
                                          for r in refusals], metadata=metadata)


def _hash(*parts) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]


def _money(uow, contract) -> dict:
    """A contract's money as the ledger has it: paid, released, refunded, owed, pending."""
    ledger = contract.institution_id
    account = L.contract(ledger, contract.contract_id)
    found = uow.repo.balances([account])
    balance = found[account][1] if account in found else L.Balance()
    released = refunded = 0
    for doc in uow.repo.refund_entries({"ledger": ledger, "contract_id": contract.contract_id},
                                       {"legs": 1}):
        for leg in doc["legs"]:
            if leg["a"] == L.released(ledger):
                released += leg.get("c", 0) - leg.get("d", 0)
            elif leg["a"] == L.refunds(ledger):
                refunded += leg.get("c", 0) - leg.get("d", 0)
    return {"paid_fen": balance.c, "released_fen": released, "refunded_fen": refunded,
            "owed_fen": balance.c - balance.d - balance.dp, "pending_fen": balance.dp}


def _contract_answer(uow, contract, caller) -> dict:
    return contract_view(contract, _money(uow, contract), caller)


# --- money movements on a contract -------------------------------------------------------------
def _begin(uow, clock, contract, op_id: str, kind: str, specs: list[L.TransferSpec],
           details: dict) -> dict:
    """Write the movement down (with its transfers) before any of it reaches the ledger."""
    held = [op for op in contract.ops or [] if op.get("state") == PENDING_OP]
    if held:
        raise Conflict(f"another money movement on contract {contract.contract_id} is in "
                       "progress; retry in a moment")
    op = {"op_id": op_id, "kind": kind, "state": PENDING_OP, "started_at": clock.now(),
          "owner": uow.instance_id, "specs": [s.as_dict() for s in specs], "details": details}
    contract.ops = [*(contract.ops or []), op]
    uow.flush(contract)
    return op


def _apply(uow, clock, contract, op, actor: str) -> list[str]:
    """The movement's transfers to the ledger; refused: the movement is struck out again."""
    specs = [L.TransferSpec.of(s) for s in op.get("specs") or []]
    try:
        return uow.repo.append(contract.institution_id, specs, clock, actor)
    except L.Refused as exc:
        contract.ops = [o for o in contract.ops if o.get("op_id") != op["op_id"]]
        uow.flush(contract)
        raise _refusal_error(exc) from None


def _done(contract, op) -> None:
    for o in contract.ops:
        if o.get("op_id") == op["op_id"]:
            o["state"] = DONE_OP
            o.pop("specs", None)
            o.pop("owner", None)
    contract.ops = list(contract.ops)[-20:]  # a short history; the ledger keeps everything


def _finish(uow, clock, contract, op, actor) -> dict:
    """Mark a movement applied and record what it caused (events, counters, the complaint)."""
    kind, details = op["kind"], op.get("details") or {}
    result: dict = {}
    if kind == "payment":
        uow.emit(contract, "PaymentRecorded", details["event"], actor)
        MOVED.labels("payment").inc(details["event"]["amount_fen"])
    elif kind == "attendance":
        contract.lessons_taken = (contract.lessons_taken or 0) + details["lessons"]
        if not contract.first_lesson_on:
            contract.first_lesson_on = details["attended_on"]
        uow.emit(contract, "LessonsReleased", details["event"], actor)
        MOVED.labels("release").inc(details["event"]["amount_fen"])
    elif kind in ("close", "refund"):
        contract.state = rules.CLOSED
        contract.closed_on = details["closed_on"]
        contract.close_reason = details["reason"]
        uow.emit(contract, "ContractClosed", details["event"], actor)
        MOVED.labels("refund").inc(details["event"]["refunded_fen"])
        if kind == "refund":
            result["complaint"] = _resolve(uow, clock, details, actor)
    _done(contract, op)
    return result


def _resolve(uow, clock, details: dict, actor: str):
    complaint = uow.repo.complaint(details["complaint_id"])
    if complaint is None or complaint.state != rules.COMPLAINT_OPEN:
        return complaint
    complaint.state = rules.COMPLAINT_REFUNDED
    complaint.refunded_fen = details["refund_fen"]
    complaint.decision_reasons = details["reasons"]
    complaint.decision_ref = details.get("decision_ref", "")
    complaint.resolved_on = details["closed_on"]
    complaint.decided_at = clock.now()
    complaint.transfer_id = details["transfer_id"]
    uow.emit(complaint, "ComplaintResolved", {
        "complaint_id": complaint.complaint_id, "institution_id": complaint.institution_id,
        "district_code": complaint.district_code or "", "outcome": rules.OUTCOME_REFUNDED,
        "refunded_fen": complaint.refunded_fen, "resolved_on": complaint.resolved_on,
        "transfer_id": complaint.transfer_id}, actor)
    return complaint


def _move(uow, clock, contract, op_id, kind, specs, details, actor) -> dict:
    """The three steps; the last write (the movement done, its events, the request's answer)
    is the unit of work's, when the handler returns."""
    op = _begin(uow, clock, contract, op_id, kind, specs, details)
    _apply(uow, clock, contract, op, actor)
    return _finish(uow, clock, contract, op, actor)


def _resumed(uow, clock, contract, op_id: str, actor: str) -> dict | None:
    """The same request again (its request_id makes the same op_id) after its first run was
    cut short: its movement, finished now if it was left half done. None the first time."""
    if contract is None:
        return None
    op = next((o for o in contract.ops or [] if o.get("op_id") == op_id), None)
    if op is None:
        return None
    if op.get("state") == PENDING_OP:
        if op.get("owner") != uow.instance_id and uow.owner_alive(op.get("owner")):
            raise Conflict("the same request is being processed; retry in a moment")
        op["owner"] = uow.instance_id
        contract.ops = list(contract.ops)
        uow.flush(contract)  # conditional: of two retries taking it over, one wins
        _apply(uow, clock, contract, op, actor)
        _finish(uow, clock, contract, op, actor)
    return op


def _settle_open_fees(uow, clock, contract, prefix: str) -> list[L.TransferSpec]:
    """Void the contract's pending lesson fees (expire those whose classes ended)."""
    now = clock.now()
    specs = []
    for fee in uow.repo.open_lesson_fees(contract.institution_id, contract.contract_id):
        timeout = fee.get("timeout_at")
        kind = L.EXPIRE_PENDING if timeout is not None and timeout <= now else L.VOID_PENDING
        specs.append(L.TransferSpec(id=f"sys.{prefix}.{_hash(fee['transfer_id'])}", kind=kind,
                                    pending_id=fee["transfer_id"],
                                    contract_id=contract.contract_id))
    return specs


def _contract_balance(uow, contract) -> L.Balance:
    account = L.contract(contract.institution_id, contract.contract_id)
    found = uow.repo.balances([account])
    return found[account][1] if account in found else L.Balance()


# --- schemes ---------------------------------------------------------------------------------
def file_scheme(cmd, uow, clock, settings):
    institution_id = cmd.caller.institution_id
    today = _today(clock)
    filing = rules.parse_scheme(cmd.request, today)
    view = uow.repo.institution_view(institution_id)
    refusal = rules.fees_refusal(view.status if view else None, view.reason if view else None)
    if refusal:
        raise FailedPrecondition(f"cannot file a prepaid scheme: {refusal}",
                                 reason="FILING_NOT_ACTIVE", subject=f"institution/{institution_id}")
    if uow.repo.scheme_by_code(institution_id, filing.scheme_code) is not None:
        raise AlreadyExists(f"scheme {filing.scheme_code} is filed already",
                            reason="SCHEME_CODE_TAKEN")
    scheme = uow.add(EscrowScheme(
        scheme_id=uow.new_id(), institution_id=institution_id, scheme_code=filing.scheme_code,
        name=filing.name, courses=list(filing.courses),
        price_per_hour_fen=filing.price_per_hour_fen, class_hours=filing.class_hours,
        valid_from=filing.valid_from.isoformat(), valid_until=filing.valid_until.isoformat(),
        refund_terms=filing.refund_terms.as_dict(), custodian_id=filing.custodian_id,
        filed_on=today.isoformat(), max_hours_per_charge=settings.max_hours_per_charge,
        max_months_per_charge=settings.max_months_per_charge),
        on_duplicate=lambda: AlreadyExists(f"scheme {filing.scheme_code} is filed already",
                                           reason="SCHEME_CODE_TAKEN"))
    uow.repo.open_accounts([(L.custody(institution_id), L.CUSTODY, ""),
                            (L.released(institution_id), L.RELEASED, ""),
                            (L.refunds(institution_id), L.REFUNDS, ""),
                            (L.bank(institution_id, filing.custodian_id), L.BANK, "")],
                           clock.now())
    uow.emit(scheme, "SchemeFiled", {"scheme_id": scheme.scheme_id,
                                     "institution_id": institution_id}, cmd.caller)
    return {"scheme": scheme_view(scheme)}


def get_scheme(cmd, uow, clock, settings):
    scheme_id = (cmd.request.get("scheme_id") or "").strip()
    scheme = uow.repo.scheme(scheme_id) if scheme_id else None
    if scheme is None:
        raise NotFound(f"scheme {scheme_id!r} not found")
    return {"scheme": scheme_view(scheme)}


def list_schemes(cmd, uow, clock, settings):
    institution_id = normalize_id(cmd.request.get("institution_id")) or None
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.schemes_page(institution_id, page.size, page.after)
    return {"schemes": [scheme_view(s) for s in rows], "page": page.response(last)}


# --- payments, attendance, closing -----------------------------------------------------------------
def record_payment(cmd, uow, clock, settings):
    """The custodian bank reports a payment into custody: one posted transfer custody <-
    contract, and one pending lesson fee (contract -> released) per class hour, waiting until
    the charge's classes end."""
    request, caller = cmd.request, cmd.caller
    op_id = uow.new_id()
    today = _today(clock)
    institution_id = normalize_id(request.get("institution_id"))
    charge = rules.parse_charge(request, today, settings.max_hours_per_charge,
                                settings.max_months_per_charge, institution_id)
    reference_key = f"{institution_id}/{charge.bank_reference}"
    earlier = uow.repo.contract_with_reference(reference_key)
    if earlier is not None:
        contract = uow.repo.contract(earlier.key)
        if _resumed(uow, clock, contract, op_id, caller.audit_name()):
            record = next(c for c in contract.charges
                          if c["bank_reference"] == charge.bank_reference)
            return {"contract": _contract_answer(uow, contract, caller), "charge": record}
        raise AlreadyExists(f"bank reference {charge.bank_reference} is recorded already: one "
                            "payment per reference", reason="BANK_REFERENCE_RECORDED")
    if charge.classes_until < today:
        raise InvalidArgument([f"classes_until: {charge.classes_until} is past: the charge's "
                               "classes must still be to come"])
    scheme = uow.repo.scheme(charge.scheme_id)
    if scheme is None or scheme.institution_id != institution_id:
        raise NotFound(f"scheme {charge.scheme_id} of institution {institution_id} not found")
    if scheme.custodian_id != caller.party_id:
        raise PermissionDenied("another institution's custody: the scheme names another "
                               "custodian bank", reason="NOT_THIS_LEDGERS_CUSTODIAN")
    view = uow.repo.institution_view(institution_id)
    refusal = rules.fees_refusal(view.status if view else None, view.reason if view else None)
    if refusal:
        raise FailedPrecondition(f"cannot take prepaid fees: {refusal}",
                                 reason="FILING_NOT_ACTIVE", subject=f"institution/{institution_id}")
    key = f"{institution_id}/{charge.contract_id}"
    contract = uow.repo.contract(key)
    if contract is None:
        problems = []
        if not charge.trainee_name:
            problems.append("trainee_name: required for a contract's first payment")
        if charge.signed_on is None:
            problems.append("signed_on: required for a contract's first payment")
        if problems:
            raise InvalidArgument(problems)
        contract = uow.add(EscrowContract(
            key=key, institution_id=institution_id, contract_id=charge.contract_id,
            scheme_id=scheme.scheme_id, custodian_id=scheme.custodian_id,
            trainee_id=charge.trainee_id, trainee_name=charge.trainee_name,
            signed_on=charge.signed_on.isoformat(), state=rules.OPEN,
            price_per_hour_fen=scheme.price_per_hour_fen, hours_bought=0, charges=[],
            bank_references=[], ops=[]),
            on_duplicate=lambda: Conflict("the contract is being opened by another call; retry"))
    else:
        problems = []
        if contract.state != rules.OPEN:
            raise FailedPrecondition(f"contract {charge.contract_id} is closed",
                                     reason="CONTRACT_CLOSED", subject=f"contract/{key}")
        if contract.scheme_id != scheme.scheme_id:
            problems.append(f"scheme_id: contract {charge.contract_id} is under scheme "
                            f"{contract.scheme_id}")
        if contract.trainee_id != charge.trainee_id:
            problems.append(f"trainee_id: contract {charge.contract_id} is another trainee's")
        if charge.signed_on and charge.signed_on.isoformat() != contract.signed_on:
            problems.append(f"signed_on: contract {charge.contract_id} was signed on "
                            f"{contract.signed_on}")
        if problems:
            raise FailedPrecondition("; ".join(problems), reason="CONTRACT_MISMATCH",
                                     subject=f"contract/{key}")
    outside = rules.charge_outside_scheme(charge, scheme, contract.hours_bought or 0)
    if outside:
        raise FailedPrecondition("a charge outside the scheme: " + "; ".join(outside),
                                 reason="CHARGE_OUTSIDE_SCHEME", subject=f"scheme/{scheme.scheme_id}",
                                 violations=[("CHARGE_OUTSIDE_SCHEME", f"scheme/{scheme.scheme_id}",
                                              p) for p in outside])
    account = L.contract(institution_id, charge.contract_id)
    bank_account = L.bank(institution_id, scheme.custodian_id)
    uow.repo.open_accounts([(L.custody(institution_id), L.CUSTODY, ""),
                            (L.released(institution_id), L.RELEASED, ""),
                            (L.refunds(institution_id), L.REFUNDS, ""),
                            (bank_account, L.BANK, ""), (account, L.CONTRACT, bank_account)],
                           clock.now())
    now = clock.now()
    effective = now if charge.paid_on >= today else rules.start_of_day(charge.paid_on)
    tag = _hash(reference_key)
    payment = L.TransferSpec(id=f"sys.pay.{tag}", kind=L.POSTED, debit=L.custody(institution_id),
                             credit=account, amount=charge.amount_fen,
                             code=rules.CODE_PAYMENT, reference=charge.bank_reference,
                             effective_at=effective, contract_id=charge.contract_id)
    timeout = rules.end_of_day(charge.classes_until)
    fees = [L.TransferSpec(id=f"sys.fee.{tag}.{n}", kind=L.PENDING, debit=account,
                           credit=L.released(institution_id), amount=scheme.price_per_hour_fen,
                           timeout_at=timeout, code=rules.CODE_LESSON_FEE,
                           reference=charge.bank_reference, effective_at=effective,
                           contract_id=charge.contract_id)
            for n in range(1, charge.class_hours + 1)]
    charge_record = {"bank_reference": charge.bank_reference, "class_hours": charge.class_hours,
                     "amount_fen": charge.amount_fen, "paid_on": charge.paid_on.isoformat(),
                     "classes_until": charge.classes_until.isoformat(),
                     "transfer_id": payment.id, "lesson_fee_ids": [f.id for f in fees]}
    contract.charges = [*(contract.charges or []), charge_record]
    contract.bank_references = [*(contract.bank_references or []), reference_key]
    contract.hours_bought = (contract.hours_bought or 0) + charge.class_hours
    event = {"contract_id": charge.contract_id, "institution_id": institution_id,
             "scheme_id": scheme.scheme_id, "amount_fen": charge.amount_fen,
             "bank_reference": charge.bank_reference, "paid_on": charge.paid_on.isoformat()}
    _move(uow, clock, contract, op_id, "payment", [payment, *fees], {"event": event},
          caller.audit_name())
    return {"contract": _contract_answer(uow, contract, caller), "charge": charge_record}


def _own_contract(uow, cmd, key_from_request: bool = True, track: bool = True):
    request, caller = cmd.request, cmd.caller
    errors: list[str] = []
    institution_id = _institution_of(request, caller, errors)
    contract_id = rules.check_id(request.get("contract_id"), "contract_id", errors)
    if errors:
        raise InvalidArgument(errors)
    key = f"{institution_id}/{contract_id}"
    contract = uow.repo.contract(key) if track else uow.repo.contract_view(key)
    if contract is None:
        raise NotFound(f"contract {contract_id} of institution {institution_id} not found")
    if caller.role == "trainee" and contract.trainee_id != caller.party_id:
        raise PermissionDenied("the contract is another trainee's", reason="NOT_OWN_PARTY")
    if caller.role == "custodian" and contract.custodian_id != caller.party_id:
        raise PermissionDenied("another institution's custody: the contract names another "
                               "custodian bank", reason="NOT_THIS_LEDGERS_CUSTODIAN")
    return contract


def record_attendance(cmd, uow, clock, settings):
    """Lessons taken: that many of the contract's pending lesson fees (oldest first) are
    posted, and paid out of custody to the institution through the bank."""
    request = cmd.request
    op_id = uow.new_id()
    errors: list[str] = []
    lessons = rules.check_int(request.get("lessons"), "lessons", errors, 1,
                              rules.MAX_LESSONS_PER_ATTENDANCE)
    attended_on = parse_date(request.get("attended_on"), "attended_on", errors)
    today = _today(clock)
    if attended_on and attended_on > today:
        errors.append(f"attended_on: must not be in the future (today is {today})")
    rules.check_id(request.get("contract_id"), "contract_id", errors)
    if errors:
        raise InvalidArgument(errors)
    contract = _own_contract(uow, cmd)
    earlier = _resumed(uow, clock, contract, op_id, cmd.caller.audit_name())
    if earlier is not None:
        event = earlier["details"]["event"]
        return {"contract": _contract_answer(uow, contract, cmd.caller),
                "lessons_released": event["lessons"], "released_fen": event["amount_fen"],
                "transfer_ids": event["transfer_ids"]}
    if contract.state != rules.OPEN:
        raise FailedPrecondition(f"contract {contract.contract_id} is closed",
                                 reason="CONTRACT_CLOSED", subject=f"contract/{contract.key}")
    if attended_on < date.fromisoformat(contract.signed_on):
        raise InvalidArgument([f"attended_on: before the contract was signed "
                               f"({contract.signed_on})"])
    now = clock.now()
    open_fees = [f for f in uow.repo.open_lesson_fees(contract.institution_id,
                                                      contract.contract_id)
                 if f.get("timeout_at") is None or f["timeout_at"] > now]
    if len(open_fees) < lessons:
        raise FailedPrecondition(f"{lessons} lessons reported, {len(open_fees)} held for the "
                                 "contract (bought, not taken, classes not over)",
                                 reason="NOT_ENOUGH_LESSONS_HELD",
                                 subject=f"contract/{contract.key}")
    taken = open_fees[:lessons]
    specs = [L.TransferSpec(id=f"sys.rel.{_hash(f['transfer_id'])}", kind=L.POST_PENDING,
                            pending_id=f["transfer_id"], code=rules.CODE_LESSON_FEE,
                            contract_id=contract.contract_id,
                            effective_at=now if attended_on >= today else
                            rules.start_of_day(attended_on))
            for f in taken]
    amount = sum(int(f["amount"]) for f in taken)
    event = {"contract_id": contract.contract_id, "institution_id": contract.institution_id,
             "lessons": lessons, "amount_fen": amount, "transfer_id": specs[0].id,
             "transfer_ids": [s.id for s in specs], "attended_on": attended_on.isoformat()}
    _move(uow, clock, contract, op_id, "attendance", specs,
          {"event": event, "lessons": lessons, "attended_on": attended_on.isoformat()},
          cmd.caller.audit_name())
    return {"contract": _contract_answer(uow, contract, cmd.caller), "lessons_released": lessons,
            "released_fen": amount, "transfer_ids": [s.id for s in specs]}


def close_contract(cmd, uow, clock, settings):
    """The contract ends: pending lesson fees return, and what is owed is refunded."""
    op_id = uow.new_id()
    reason = cmd.request.get("reason") or ""
    if isinstance(reason, int):
        reason = {1: rules.CLIENT_CLOSE_REASONS[0], 2: rules.CLIENT_CLOSE_REASONS[1],
                  3: rules.CLIENT_CLOSE_REASONS[2]}.get(reason, "")
    errors: list[str] = []
    if reason not in rules.CLIENT_CLOSE_REASONS:
        errors.append("reason: COMPLETED, TERMINATED or INSTITUTION_STOPPED")
    _institution_of(cmd.request, cmd.caller, errors)
    rules.check_id(cmd.request.get("contract_id"), "contract_id", errors)
    if errors:
        raise InvalidArgument(errors)
    contract = _own_contract(uow, cmd)
    earlier = _resumed(uow, clock, contract, op_id, cmd.caller.audit_name())
    if earlier is not None:
        refunded = earlier["details"]["event"]["refunded_fen"]
        return {"contract": _contract_answer(uow, contract, cmd.caller),
                "refunded_fen": refunded, "transfer_id": earlier["details"].get("transfer_id", "")}
    if contract.state != rules.OPEN:
        raise FailedPrecondition(f"contract {contract.contract_id} is closed already",
                                 reason="CONTRACT_CLOSED", subject=f"contract/{contract.key}")
    op_tag = _hash(contract.key, "close")
    specs = _settle_open_fees(uow, clock, contract, f"close.{op_tag}")
    balance = _contract_balance(uow, contract)
    owed = balance.c - balance.d  # pending fees return first
    ledger = contract.institution_id
    refund_id = f"sys.close.{op_tag}"
    if owed > 0:
        specs.append(L.TransferSpec(id=refund_id, kind=L.POSTED,
                                    debit=L.contract(ledger, contract.contract_id),
                                    credit=L.refunds(ledger), amount=owed,
                                    code=rules.CODE_CLOSE_REFUND, effective_at=clock.now(),
                                    contract_id=contract.contract_id))
    closed_on = _today(clock).isoformat()
    released = _money(uow, contract)["released_fen"]
    event = {"contract_id": contract.contract_id, "institution_id": ledger,
             "released_fen": released, "refunded_fen": max(owed, 0)}
    _move(uow, clock, contract, op_id, "close", specs,
          {"event": event, "closed_on": closed_on, "reason": reason,
           "transfer_id": refund_id if owed > 0 else ""}, cmd.caller.audit_name())
    return {"contract": _contract_answer(uow, contract, cmd.caller),
            "refunded_fen": max(owed, 0), "transfer_id": refund_id if owed > 0 else ""}


def get_contract(cmd, uow, clock, settings):
    contract = _own_contract(uow, cmd, track=False)
    return {"contract": _contract_answer(uow, contract, cmd.caller)}


# --- refund complaints ------------------------------------------------------------------------
def _quote(uow, clock, settings, contract) -> rules.Quote:
    scheme = uow.repo.scheme(contract.scheme_id)
    balance = _contract_balance(uow, contract)
    return rules.quote_refund(
        paid_fen=balance.c, lessons_consumed=contract.lessons_taken or 0,
        price=contract.price_per_hour_fen,
        terms=rules.RefundTerms.of(scheme.refund_terms if scheme else None),
        signed_on=date.fromisoformat(contract.signed_on), today=_today(clock),
        refundable_fen=max(0, balance.c - balance.d),
        cooling_off_days=settings.cooling_off_days)


def quote_refund(cmd, uow, clock, settings):
    contract = _own_contract(uow, cmd, track=False)
    quote = _quote(uow, clock, settings, contract)
    return {"quote": quote.as_dict(contract.institution_id, contract.contract_id)}


def file_refund_complaint(cmd, uow, clock, settings):
    request, caller = cmd.request, cmd.caller
    errors: list[str] = []
    institution_id = normalize_id(request.get("institution_id"))
    if not institution_id:
        errors.append("institution_id: required")
    rules.check_id(request.get("contract_id"), "contract_id", errors)
    name = (request.get("complainant_name") or "").strip()
    if not name:
        errors.append("complainant_name: required")
    phone = (request.get("complainant_phone") or "").strip()
    if phone and not all(ch.isdigit() or ch in "+- " for ch in phone):
        errors.append("complainant_phone: digits, spaces, + and - only")
    reason = (request.get("reason") or "").strip()
    if not reason:
        errors.append("reason: required")
    if errors:
        raise InvalidArgument(errors)
    contract = _own_contract(uow, cmd, track=False)
    key = contract.key
    open_ = uow.repo.count_complaints({"contract_key": key, "state": rules.COMPLAINT_OPEN})
    if open_:
        raise FailedPrecondition(f"contract {contract.contract_id} has an open complaint "
                                 "already", reason="COMPLAINT_OPEN", subject=f"contract/{key}")
    view = uow.repo.institution_view(institution_id)
    quote = _quote(uow, clock, settings, contract)
    now = clock.now()
    complaint = uow.add(RefundComplaint(
        complaint_id=uow.new_id(), institution_id=institution_id,
        contract_id=contract.contract_id, contract_key=key, trainee_id=contract.trainee_id,
        district_code=(view.district_code if view else "") or "",
        complainant_name=name, complainant_phone=phone, reason=reason,
        on_behalf=caller.role == "regulator", filed_on=_today(clock).isoformat(), filed_at=now,
        state=rules.COMPLAINT_OPEN,
        quote_at_filing=quote.as_dict(institution_id, contract.contract_id)))
    uow.emit(complaint, "RefundComplaintFiled", {
        "complaint_id": complaint.complaint_id, "institution_id": institution_id,
        "contract_id": contract.contract_id, "filed_on": complaint.filed_on,
        "district_code": complaint.district_code}, caller)
    return {"complaint": complaint_view(complaint, caller)}


def decide_complaint(cmd, uow, clock, settings):
    """A refund is paid from custody at once (the contract's pending fees return first, what
    custody holds beyond the refund is released to the institution as the deductions the
    decision allows, and the contract closes); a rejection moves nothing."""
    op_id = uow.new_id()
    complaint_id = (cmd.request.get("complaint_id") or "").strip()
    complaint = uow.repo.complaint(complaint_id) if complaint_id else None
    if complaint is None:
        # the decision's own problems first, so one answer names them all
        rules.parse_decision(cmd.request, 0)
        raise NotFound(f"complaint {complaint_id!r} not found")
    outcome, amount, reasons, decision_ref = rules.parse_decision(cmd.request, 0)
    actor = cmd.caller.audit_name()
    if outcome == rules.OUTCOME_REFUNDED and _resumed(
            uow, clock, uow.repo.contract(complaint.contract_key), op_id, actor) is not None:
        return {"complaint": complaint_view(uow.repo.complaint(complaint_id), cmd.caller)}
    if complaint.state != rules.COMPLAINT_OPEN:
        raise FailedPrecondition(f"complaint {complaint_id} is decided already "
                                 f"({complaint.state.removeprefix('COMPLAINT_STATE_').lower()})",
                                 reason="COMPLAINT_DECIDED", subject=f"complaint/{complaint_id}")
    today = _today(clock).isoformat()
    if outcome == rules.OUTCOME_REJECTED:
        complaint.state = rules.COMPLAINT_REJECTED
        complaint.decision_reasons = reasons
        complaint.decision_ref = decision_ref
        complaint.resolved_on = today
        complaint.decided_at = clock.now()
        uow.emit(complaint, "ComplaintResolved", {
            "complaint_id": complaint.complaint_id, "institution_id": complaint.institution_id,
            "district_code": complaint.district_code or "", "outcome": rules.OUTCOME_REJECTED,
            "refunded_fen": 0, "resolved_on": today}, actor)
        return {"complaint": complaint_view(complaint, cmd.caller)}
    contract = uow.repo.contract(complaint.contract_key)
    if contract is None or contract.state != rules.OPEN:
        raise FailedPrecondition(f"contract {complaint.contract_id} is closed: custody holds "
                                 "nothing more for it; reject, or decide 0 with reasons",
                                 reason="CONTRACT_CLOSED",
                                 subject=f"contract/{complaint.contract_key}")
    balance = _contract_balance(uow, contract)
    refundable = balance.c - balance.d
    if amount > refundable:
        raise FailedPrecondition(f"refund_fen {amount} is more than custody holds for the "
                                 f"contract ({refundable} fen)", reason="REFUND_EXCEEDS_CUSTODY",
                                 subject=f"contract/{contract.key}",
                                 metadata={"refundable_fen": str(refundable)})
    ledger = contract.institution_id
    tag = _hash(complaint_id)
    specs = _settle_open_fees(uow, clock, contract, f"cpl.{tag}")
    now = clock.now()
    refund = L.TransferSpec(id=f"sys.refund.{tag}", kind=L.POSTED,
                            debit=L.contract(ledger, contract.contract_id),
                            credit=L.refunds(ledger), amount=amount,
                            code=rules.CODE_COMPLAINT_REFUND, reference=decision_ref,
                            effective_at=now, contract_id=contract.contract_id,
                            complaint_id=complaint_id,
                            district_code=complaint.district_code or "")
    specs.append(refund)
    rest = refundable - amount
    if rest > 0:
        specs.append(L.TransferSpec(id=f"sys.deduct.{tag}", kind=L.POSTED,
                                    debit=L.contract(ledger, contract.contract_id),
                                    credit=L.released(ledger), amount=rest,
                                    code=rules.CODE_DEDUCTIONS, reference=decision_ref,
                                    effective_at=now, contract_id=contract.contract_id,
                                    complaint_id=complaint_id))
    released = _money(uow, contract)["released_fen"] + rest
    event = {"contract_id": contract.contract_id, "institution_id": ledger,
             "released_fen": released, "refunded_fen": amount}
    details = {"event": event, "closed_on": today, "reason": rules.CLOSED_BY_COMPLAINT,
               "complaint_id": complaint_id, "refund_fen": amount, "reasons": reasons,
               "decision_ref": decision_ref, "transfer_id": refund.id}
    result = _move(uow, clock, contract, op_id, "refund", specs, details, actor)
    return {"complaint": complaint_view(result.get("complaint") or complaint, cmd.caller)}


def get_complaint(cmd, uow, clock, settings):
    complaint_id = (cmd.request.get("complaint_id") or "").strip()
    complaint = uow.repo.complaint_view(complaint_id) if complaint_id else None
    if complaint is None:
        raise NotFound(f"complaint {complaint_id!r} not found")
    _require_complaint_reader(cmd.caller, complaint)
    return {"complaint": complaint_view(complaint, cmd.caller)}


def _require_complaint_reader(caller, complaint) -> None:
    if caller.role == "institution":
        require_own_institution(caller, complaint.institution_id, "complaint")
    if caller.role == "trainee" and complaint.trainee_id != caller.party_id:
        raise PermissionDenied("the complaint is about another trainee's contract",
                               reason="NOT_OWN_PARTY")


def list_complaints(cmd, uow, clock, settings):
    request, caller = cmd.request, cmd.caller
    filters: dict = {}
    institution_id = normalize_id(request.get("institution_id"))
    if caller.role == "institution":
        institution_id = institution_id or caller.institution_id
        require_own_institution(caller, institution_id, "complaint")
    if institution_id:
        filters["institution_id"] = institution_id
    if caller.role == "trainee":
        filters["trainee_id"] = caller.party_id
    state = request.get("state") or ""
    if isinstance(state, int):
        state = {1: rules.COMPLAINT_OPEN, 2: rules.COMPLAINT_REFUNDED,
                 3: rules.COMPLAINT_REJECTED}.get(state, "")
    if state and state != "COMPLAINT_STATE_UNSPECIFIED":
        filters["state"] = state
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.complaints_page(filters, page.size, page.after)
    return {"complaints": [complaint_view(c, caller) for c in rows],
            "page": page.response(last)}


# --- the figures ----------------------------------------------------------------------------------
def get_refund_statistics(cmd, uow, clock, settings):
    """Received and resolved complaints are counted from the complaints, the amount refunded is
    summed from the ledger's entries; each restricted to what was recorded by `as_of`."""
    request = cmd.request
    period = rules.parse_period(request, clock.now())
    institution_id = normalize_id(request.get("institution_id"))
    district = (request.get("district_code") or "").strip()
    if district and not (district.isdigit() and len(district) == 6):
        raise InvalidArgument(["district_code: 6 digits (GB/T 2260)"])
    scope: dict = {}
    if institution_id:
        scope["institution_id"] = institution_id
    if district:
        scope["district_code"] = district
    start, end, as_of = period.start_at, period.end_at, period.as_of
    received = {**scope, "filed_at": {"$gte": start, "$lt": end, "$lte": as_of}}
    resolved = {**scope, "decided_at": {"$gte": start, "$lt": end, "$lte": as_of}}
    refund_match: dict = {"code": rules.CODE_COMPLAINT_REFUND,
                          "effective_at": {"$gte": start, "$lt": end},
                          "recorded_at": {"$lte": as_of}}
    if institution_id:
        refund_match["ledger"] = institution_id
    if district:
        refund_match["district_code"] = district
    refunded = 0
    transfer_ids = []
    for doc in uow.repo.refund_entries(refund_match, {"legs": 1, "ledger": 1}):
        for leg in doc["legs"]:
            if leg["a"] == L.refunds(doc["ledger"]):
                refunded += leg.get("c", 0) - leg.get("d", 0)
        transfer_ids.append(doc["_id"])
    answer = {"from": period.start.isoformat(), "to": period.end.isoformat(),
              "institution_id": institution_id, "district_code": district,
              "as_of": timestamp(as_of), "final": period.final,
              "complaints_received": uow.repo.count_complaints(received),
              "complaints_resolved": uow.repo.count_complaints(resolved),
              "refunded_fen": refunded, "refunded_yuan": rules.yuan(refunded),
              **rules.methods(period, institution_id, district)}
    if request.get("include_ids"):
        answer["received_ids"] = uow.repo.complaint_ids(received, MAX_IDS + 1)
        answer["resolved_ids"] = uow.repo.complaint_ids(resolved, MAX_IDS + 1)
        answer["refund_transfer_ids"] = sorted(transfer_ids)[:MAX_IDS + 1]
        truncated = False
        for name in ("received_ids", "resolved_ids", "refund_transfer_ids"):
            if len(answer[name]) > MAX_IDS:
                answer[name] = answer[name][:MAX_IDS]
                truncated = True
        answer["ids_truncated"] = truncated
    return {k: v for k, v in answer.items() if v not in ("", None, [], False)
            or k in ("complaints_received", "complaints_resolved", "refunded_fen")}


def get_custody_summary(cmd, uow, clock, settings):
    ledger = _institution_of(cmd.request, cmd.caller)
    _require_ledger_reader(uow, cmd.caller, ledger)
    kinds = uow.repo.ledger_account_kinds(ledger)
    if not kinds:
        raise NotFound(f"institution {ledger} has no custody ledger (no scheme filed)")
    found = uow.repo.balances(list(kinds))
    current = L.Recomputed({a: b for a, (_, b, _) in found.items()}, 0, [])
    figures = L.conservation(current, kinds)
    return {"summary": {
        "institution_id": ledger, "custody_fen": figures.custody, "owed_fen": figures.owed,
        "pending_fen": figures.pending, "released_fen": figures.released,
        "refunded_fen": figures.refunded,
        "open_contracts": uow.repo.count_open_contracts(ledger),
        "conserved": figures.conserved, "entries": uow.repo.head(ledger)}}


# --- the ledger API ---------------------------------------------------------------------------------
RESERVED_CODES = frozenset({rules.CODE_PAYMENT, rules.CODE_LESSON_FEE, rules.CODE_COMPLAINT_REFUND,
                            rules.CODE_DEDUCTIONS, rules.CODE_CLOSE_REFUND})


def _parse_transfers(request: dict, ledger: str, now: datetime) -> list[L.TransferSpec]:
    errors: list[str] = []
    rows = request.get("transfers") or []
    if not rows:
        errors.append("transfers: at least one transfer")
    specs = []
    for i, row in enumerate(rows):
        path = f"transfers[{i}]"
        tid = (row.get("id") or "").strip()
        if not L.TRANSFER_ID.match(tid):
            errors.append(f"{path}.id: required, 1-64 of A-Z a-z 0-9 . _ : -")
        elif tid.startswith(L.SYSTEM_PREFIX):
            errors.append(f"{path}.id: ids starting {L.SYSTEM_PREFIX!r} are the platform's")
        kind = KIND_OF_ENUM.get(row.get("kind") or 0)
        if kind not in (L.POSTED, L.PENDING, L.POST_PENDING, L.VOID_PENDING):
            errors.append(f"{path}.kind: POSTED, PENDING, POST_PENDING or VOID_PENDING")
        amount = int(row.get("amount_fen") or 0)
        debit = (row.get("debit_account_id") or "").strip()
        credit = (row.get("credit_account_id") or "").strip()
        pending_id = (row.get("pending_id") or "").strip()
        timeout = int(row.get("timeout_seconds") or 0)
        if kind in (L.POSTED, L.PENDING):
            for name, value in (("debit_account_id", debit), ("credit_account_id", credit)):
                if not value:
                    errors.append(f"{path}.{name}: required")
                elif L.kind_of_local(value) is None:
                    errors.append(f"{path}.{name}: not an account id (custody, released, "
                                  "refunds, contract/<number>, bank/<custodian>)")
            if not 1 <= amount <= L.MAX_AMOUNT_FEN:
                errors.append(f"{path}.amount_fen: must be 1-{L.MAX_AMOUNT_FEN} fen "
                              f"(got {amount})")
            if pending_id:
                errors.append(f"{path}.pending_id: only for POST_PENDING and VOID_PENDING")
        elif kind in (L.POST_PENDING, L.VOID_PENDING):
            if debit or credit:
                errors.append(f"{path}: a {kind} takes its pending transfer's accounts; leave "
                              "debit_account_id and credit_account_id empty")
            if not L.TRANSFER_ID.match(pending_id):
                errors.append(f"{path}.pending_id: required, the pending transfer's id")
            if kind == L.VOID_PENDING and amount:
                errors.append(f"{path}.amount_fen: a void moves nothing: 0")
            if kind == L.POST_PENDING and not 0 <= amount <= L.MAX_AMOUNT_FEN:
                errors.append(f"{path}.amount_fen: 0 (all of it) to the pending amount "
                              f"(got {amount})")
        if kind != L.PENDING and timeout:
            errors.append(f"{path}.timeout_seconds: only for PENDING")
        if not 0 <= timeout <= L.MAX_TIMEOUT_SECONDS:
            errors.append(f"{path}.timeout_seconds: 0-{L.MAX_TIMEOUT_SECONDS} (got {timeout})")
        code = (row.get("code") or "").strip() or "TRANSFER"
        if not L.CODE.match(code):
            errors.append(f"{path}.code: 1-32 of A-Z 0-9 _")
        elif code in RESERVED_CODES:
            errors.append(f"{path}.code: {code} is the platform's own")
        effective = None
        text = (row.get("effective_at") or "").strip()
        if text:
            try:
                effective = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                errors.append(f"{path}.effective_at: an RFC 3339 time with offset")
            else:
                if effective.tzinfo is None:
                    errors.append(f"{path}.effective_at: must carry its offset")
                    effective = None
                elif effective > now:
                    errors.append(f"{path}.effective_at: must not be in the future")
                else:
                    effective = effective.astimezone(timezone.utc).replace(
                        microsecond=effective.microsecond // 1000 * 1000)
        if errors:
            continue
        contract_id = ""
        for value in (debit, credit):
            if value.startswith("contract/"):
                contract_id = value.split("/", 1)[1]
        specs.append(L.TransferSpec(
            id=tid, kind=kind, debit=L.account_id(ledger, debit) if debit else "",
            credit=L.account_id(ledger, credit) if credit else "", amount=amount,
            pending_id=pending_id, timeout_seconds=timeout, code=code,
            reference=(row.get("reference") or "").strip(), effective_at=effective,
            contract_id=contract_id))
    if errors:
        raise InvalidArgument(errors)
    return specs


def create_transfers(cmd, uow, clock, settings):
    """TigerBeetle's transfers on one ledger: checked whole, then written in order (or none)."""
    ledger = normalize_id(cmd.request.get("institution_id"))
    if not ledger:
        raise InvalidArgument(["institution_id: required (the ledger)"])
    _require_custodian_of(uow, cmd.caller, ledger)
    specs = _parse_transfers(cmd.request, ledger, clock.now())
    if not uow.repo.accounts_exist([L.custody(ledger)]):
        raise NotFound(f"institution {ledger} has no custody ledger (no scheme filed)")
    try:
        stored, docs = uow.repo.append_with_docs(ledger, specs, clock, cmd.caller.audit_name())
    except L.Refused as exc:
        raise _refusal_error(exc) from None
    missing = [s for s in stored if s not in docs]
    if missing:  # transfers recorded before: answered as stored
        docs.update({d["_id"]: d for d in uow.repo.entries_by_ids_light(missing)})
    return {"transfers": [transfer_result_view(docs[s]) for s in stored]}


def lookup_transfers(cmd, uow, clock, settings):
    ledger = _institution_of(cmd.request, cmd.caller)
    _require_ledger_reader(uow, cmd.caller, ledger)
    ids = [L.entry_id(ledger, i.strip()) for i in cmd.request.get("ids") or [] if i.strip()]
    docs = {d["_id"]: d for d in uow.repo.entries_by_ids(ids)}
    settled = uow.repo.settlements([i for i, d in docs.items() if d["kind"] == L.PENDING])
    now = clock.now()
    answer = []
    for i in ids:
        doc = docs.get(i)
        if doc is None:
            continue
        answer.append(transfer_view(doc, _pending_state(doc, settled, now)))
    return {"transfers": answer}


def _pending_state(doc: dict, settled: dict, now: datetime) -> str:
    if doc["kind"] != L.PENDING:
        return ""
    settlement = settled.get(doc["_id"])
    if settlement is not None:
        return L.STATE_BY_SETTLEMENT[settlement["kind"]]
    timeout = doc.get("timeout_at")
    return L.STATE_EXPIRED if timeout is not None and timeout <= now else L.STATE_PENDING


def lookup_accounts(cmd, uow, clock, settings):
    ledger = _institution_of(cmd.request, cmd.caller)
    _require_ledger_reader(uow, cmd.caller, ledger)
    ids = [L.account_id(ledger, i.strip()) for i in cmd.request.get("ids") or [] if i.strip()]
    found = uow.repo.balances(ids)
    return {"accounts": [account_view(found[a][0], found[a][1], found[a][2])
                         for a in ids if a in found]}


def list_ledger_entries(cmd, uow, clock, settings):
    ledger = _institution_of(cmd.request, cmd.caller)
    _require_ledger_reader(uow, cmd.caller, ledger)
    account = (cmd.request.get("account_id") or "").strip()
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.entries_page(ledger, L.account_id(ledger, account) if account else None,
                                       page.size, page.after)
    settled = uow.repo.settlements([d["_id"] for d in rows if d["kind"] == L.PENDING])
    now = clock.now()
    return {"transfers": [transfer_view(d, _pending_state(d, settled, now)) for d in rows],
            "page": page.response(last)}


# --- conservation -------------------------------------------------------------------------------------
def check_ledger(uow, ledger: str) -> L.Conservation:
    """Replay the ledger's whole journal (yielding to other calls as it goes)."""
    # In this order, while writers go on: every cache is at or below the head, and every
    # account an entry up to the head touches exists already.
    caches = uow.repo.ledger_account_caches(ledger)
    head = uow.repo.head(ledger)
    kinds = uow.repo.ledger_account_kinds(ledger)

    def journal():
        for n, doc in enumerate(uow.repo.ledger_entries(ledger, head), 1):
            if n % REPLAY_CHUNK == 0:
                eventlet.sleep(0)
            yield doc

    return L.conservation(L.recompute(journal(), kinds, caches), kinds)


def _conservation_result(ledger: str, c: L.Conservation, entries: int) -> dict:
    return {"institution_id": ledger, "conserved": c.conserved, "custody_fen": c.custody,
            "owed_fen": c.owed, "pending_fen": c.pending, "entries": entries,
            "problems": list(c.problems[:50])}


def _check_and_record(uow, clock, ledgers) -> list[dict]:
    results = []
    for ledger in ledgers:
        figures = check_ledger(uow, ledger)
        results.append(_conservation_result(ledger, figures, uow.repo.head(ledger)))
        _record_check(uow, clock, ledger, figures)
    BREACHES.set(uow.repo.count_breached())
    return results


def _record_check(uow, clock, ledger: str, figures: L.Conservation) -> None:
    """Keep the result on the institution; a new breach is an event (an alert), logged at
    ERROR and counted, never silence."""
    for _ in range(5):
        institution = uow.repo.institution(ledger)
        if institution is None:
            institution = uow.add(EscrowInstitution(institution_id=ledger))
        was = institution.conserved
        institution.conserved = figures.conserved
        institution.checked_at = clock.now()
        detail = "; ".join(figures.problems)[:1000]
        if not figures.conserved:
            BREACHES_FOUND.inc()
            log.error("conservation breach in ledger %s: %s", ledger, detail)
            if was is not False or institution.breach != detail:
                uow.emit(institution, "ConservationBreached", {
                    "institution_id": ledger, "custody_fen": figures.custody,
                    "owed_fen": figures.owed, "pending_fen": figures.pending,
                    "detail": detail}, "system")
        institution.breach = detail
        try:
            uow.flush(institution)
            return
        except (Conflict, AlreadyExists):
            uow.forget([institution])
    log.warning("ledger %s: the check's result could not be kept (busy); next round", ledger)


def check_conservation(cmd, uow, clock, settings):
    ledger = normalize_id(cmd.request.get("institution_id"))
    ledgers = [ledger] if ledger else uow.repo.ledgers()
    if ledger and not uow.repo.account_docs([L.custody(ledger)]):
        raise NotFound(f"institution {ledger} has no custody ledger")
    results = _check_and_record(uow, clock, ledgers)
    return {"results": results, "breaches": sum(1 for r in results if not r["conserved"])}


def conservation_sweep(uow, clock, settings):
    results = _check_and_record(uow, clock, uow.repo.ledgers())
    return {"ledgers": len(results), "breaches": sum(1 for r in results if not r["conserved"])}


# --- filing's facts -----------------------------------------------------------------------------------
def filing_status_changed(event, uow, clock, settings):
    """Keep filing's status of the institution (newest wins in any delivery order). Suspended,
    terminated or expired: no new scheme and no new payment; what custody holds is still
    released and refunded."""
    event_type = type(event).DESCRIPTOR.name
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        log.error("%s %s without institution_id dropped", event_type, event.meta.event_id)
        return None
    occurred_at = event.meta.occurred_at.ToJsonString()
    for _ in range(5):
        institution = uow.repo.institution(institution_id)
        applied = None if institution is None or not institution.event_id else (
            institution.sequence or 0, institution.changed_at or "")
        status = rules.status_update(event_type, event.meta.sequence, occurred_at, applied)
        if institution is None:
            institution = uow.add(EscrowInstitution(institution_id=institution_id))
        district = getattr(event, "district_code", "")
        if district:
            institution.district_code = district
        if status is not None:
            institution.status = status
            institution.reason = getattr(event, "reason", "") or ""
            institution.changed_at = occurred_at
            institution.sequence = event.meta.sequence
            institution.event_id = event.meta.event_id
        try:
            uow.flush(institution)
            return status
        except (Conflict, AlreadyExists):
            uow.forget([institution])
    raise Conflict(f"status of {institution_id} kept changing; the event will be redelivered")


# --- the clock ---------------------------------------------------------------------------------------------
def sweep(uow, clock, settings):
    """Finish money movements a crash left half done (their worker gone), and expire pending
    transfers whose timeout passed, each exactly once."""
    finished = 0
    now = clock.now()
    for contract in uow.repo.contracts_with_open_ops():
        for op in [o for o in contract.ops if o.get("state") == PENDING_OP]:
            started = op["started_at"]
            if started.tzinfo is None:
                started = started.replace(tzinfo=timezone.utc)
            age = (now - started).total_seconds()
            # Its worker gone, or a worker alive but stuck far past any call's time.
            alive = uow.owner_alive(op.get("owner"))
            if age < settings.stale_op_seconds or (alive and age < 10 * settings.stale_op_seconds):
                continue
            finished += _finish_abandoned(uow, clock, contract, op)
    return {"finished": finished, "expired": expire_due(uow, clock)}


def _finish_abandoned(uow, clock, contract, op) -> int:
    specs = [L.TransferSpec.of(s) for s in op.get("specs") or []]
    try:
        uow.repo.append(contract.institution_id, specs, clock, "system")
    except L.Refused as exc:
        log.error("movement %s on contract %s cannot be finished: %s", op["op_id"],
                  contract.key, exc)
        contract.ops = [o for o in contract.ops if o.get("op_id") != op["op_id"]]
        _flush_quietly(uow, contract)
        return 0
    try:
        _finish(uow, clock, contract, op, "system")
        uow.flush()
    except Conflict:
        uow.forget([contract])
        return 0
    return 1


def _flush_quietly(uow, aggregate) -> None:
    try:
        uow.flush(aggregate)
    except Conflict:
        uow.forget([aggregate])


def expire_due(uow, clock) -> int:
    """Pending transfers past their timeout: an EXPIRE_PENDING entry each (once: its id is
    derived from the pending one's, and a pending transfer is settled once)."""
    now = clock.now()
    due = uow.repo.due_timeouts(now)
    by_ledger: dict[str, list[str]] = {}
    for doc in due:
        by_ledger.setdefault(doc["ledger"], []).append(doc["_id"])
    expired = 0
    for ledger, stored_ids in by_ledger.items():
        docs = {d["_id"]: d for d in uow.repo.entries_by_ids(stored_ids)}
        settled = uow.repo.settlements(list(docs))
        gone = [i for i in stored_ids if i not in docs or i in settled]
        uow.repo.drop_timeouts(gone)
        specs = [L.TransferSpec(id=f"sys.exp.{_hash(docs[i]['transfer_id'])}",
                                kind=L.EXPIRE_PENDING, pending_id=docs[i]["transfer_id"])
                 for i in stored_ids if i in docs and i not in settled]
        if not specs:
            continue
        try:
            uow.repo.append(ledger, specs, clock, "system")
            expired += len(specs)
        except L.Refused as exc:  # settled meanwhile: the next round sees it
            log.info("ledger %s: expiry deferred: %s", ledger, exc)
        eventlet.sleep(0)
    return expired
