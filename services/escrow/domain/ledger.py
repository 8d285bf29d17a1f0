"""The custody ledger's rules, pure: TigerBeetle's double entry on documents.

One ledger per institution (its unified social credit code). Its accounts:

| account            | kind     | normal side | limit                          |
|--------------------|----------|-------------|--------------------------------|
| custody            | CUSTODY  | debit       | credits must not exceed debits |
| contract/<number>  | CONTRACT | credit      | debits must not exceed credits |
| released           | RELEASED | credit      | -                              |
| refunds            | REFUNDS  | credit      | -                              |
| bank/<custodian>   | BANK     | debit       | -                              |

Custody is the money the bank holds for the institution; a contract's balance is what is owed
to its trainee; released and refunds count what left custody to the institution and back to
trainees; the bank account counts what the bank paid out of custody. A payment is a transfer
custody <- contract (debit custody, credit the contract). Money leaving a contract for
released or refunds leaves custody too, through the bank: such a posting carries two more legs
in the same entry (debit the bank, credit custody), so custody = sum of contract balances
(owed + pending releases) after every entry, and bank = released + refunds.

Every entry is one document with all its legs; a leg is an account's change in four
counters (debits/credits, pending/posted), as TigerBeetle keeps them. Rules checked before
anything is written (`plan`): debits equal credits, posted and pending alike; posted counters
only grow (corrections are new entries); an account with a limit never passes it, counting
pending amounts; a pending transfer is settled once (posted fully or in part, voided, or
expired at its timeout); a transfer id is used once per ledger (the same content again is the
stored transfer, other content ALREADY_EXISTS). Each entry records when it took effect and
when it was recorded.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

CUSTODY, CONTRACT, RELEASED, REFUNDS, BANK = "CUSTODY", "CONTRACT", "RELEASED", "REFUNDS", "BANK"
KINDS = (CUSTODY, CONTRACT, RELEASED, REFUNDS, BANK)
DEBIT_NORMAL = frozenset({CUSTODY, BANK})
# TigerBeetle's account flags, by kind.
DEBITS_MUST_NOT_EXCEED_CREDITS = frozenset({CONTRACT})
CREDITS_MUST_NOT_EXCEED_DEBITS = frozenset({CUSTODY})
# Where money leaving a contract goes out of custody through the bank.
PAID_OUT_TO = frozenset({RELEASED, REFUNDS})

POSTED, PENDING, POST_PENDING, VOID_PENDING, EXPIRE_PENDING = (
    "POSTED", "PENDING", "POST_PENDING", "VOID_PENDING", "EXPIRE_PENDING")
SETTLING = frozenset({POST_PENDING, VOID_PENDING, EXPIRE_PENDING})
# What became of a pending transfer.
STATE_PENDING, STATE_POSTED, STATE_VOIDED, STATE_EXPIRED = "PENDING", "POSTED", "VOIDED", "EXPIRED"
STATE_BY_SETTLEMENT = {POST_PENDING: STATE_POSTED, VOID_PENDING: STATE_VOIDED,
                       EXPIRE_PENDING: STATE_EXPIRED}

# Ids the platform makes for its own transfers start with this; clients may not use it.
SYSTEM_PREFIX = "sys."
TRANSFER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CODE = re.compile(r"^[A-Z0-9_]{1,32}$")
# The most a pending transfer may wait (TigerBeetle's timeout is seconds, too).
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
# The most one transfer moves: 100 million yuan, far above any prepaid contract; a typo of
# extra zeros is refused instead of booked.
MAX_AMOUNT_FEN = 10_000_000_000


def account_id(ledger: str, local: str) -> str:
    """The stored id of a ledger's account: "<institution>/<local id>"."""
    return f"{ledger}/{local}"


def local_id(stored: str) -> str:
    return stored.split("/", 1)[1]


def custody(ledger: str) -> str:
    return account_id(ledger, "custody")


def released(ledger: str) -> str:
    return account_id(ledger, "released")


def refunds(ledger: str) -> str:
    return account_id(ledger, "refunds")


def bank(ledger: str, custodian: str) -> str:
    return account_id(ledger, f"bank/{custodian}")


def contract(ledger: str, contract_id: str) -> str:
    return account_id(ledger, f"contract/{contract_id}")


def kind_of_local(local: str) -> str | None:
    """The kind an account id names, or None if it names none."""
    if local in ("custody", "released", "refunds"):
        return local.upper()
    head, _, rest = local.partition("/")
    if head in ("contract", "bank") and TRANSFER_ID.match(rest or ""):
        return head.upper()
    return None


# --- balances -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Balance:
    """TigerBeetle's four counters, in fen."""

    dp: int = 0  # debits pending
    d: int = 0   # debits posted
    cp: int = 0  # credits pending
    c: int = 0   # credits posted

    def plus(self, leg: Leg) -> Balance:
        return Balance(self.dp + leg.dp, self.d + leg.d, self.cp + leg.cp, self.c + leg.c)

    def as_dict(self) -> dict:
        return {"dp": self.dp, "d": self.d, "cp": self.cp, "c": self.c}

    @classmethod
    def of(cls, data: dict | None) -> Balance:
        data = data or {}
        return cls(int(data.get("dp", 0)), int(data.get("d", 0)), int(data.get("cp", 0)),
                   int(data.get("c", 0)))


def balance_on_normal_side(kind: str, b: Balance) -> int:
    """Posted balance on the account's normal side (what the account 'holds')."""
    return b.d - b.c if kind in DEBIT_NORMAL else b.c - b.d


@dataclass(frozen=True)
class Leg:
    """One account's change in one entry."""

    a: str
    dp: int = 0
    d: int = 0
    cp: int = 0
    c: int = 0

    def as_dict(self) -> dict:
        return {"a": self.a, "dp": self.dp, "d": self.d, "cp": self.cp, "c": self.c}

    @classmethod
    def of(cls, data: dict) -> Leg:
        return cls(data["a"], int(data.get("dp", 0)), int(data.get("d", 0)),
                   int(data.get("cp", 0)), int(data.get("c", 0)))


def zero_sum_problem(legs) -> str | None:
    """The entry's legs must balance, posted and pending alike; posted counters only grow."""
    debits = sum(leg.d for leg in legs)
    credits = sum(leg.c for leg in legs)
    if debits != credits:
        return f"posted debits {debits} != credits {credits}"
    pending_debits = sum(leg.dp for leg in legs)
    pending_credits = sum(leg.cp for leg in legs)
    if pending_debits != pending_credits:
        return f"pending debits {pending_debits} != credits {pending_credits}"
    if any(leg.d < 0 or leg.c < 0 for leg in legs):
        return "a posted amount is negative: corrections are new entries, never edits"
    return None


def limit_problem(kind: str, b: Balance) -> tuple[str, int] | None:
    """(the limit broken, the balance the account would reach) or None."""
    if kind in DEBITS_MUST_NOT_EXCEED_CREDITS and b.dp + b.d > b.c:
        return "EXCEEDS_CREDITS", b.c - b.d - b.dp
    if kind in CREDITS_MUST_NOT_EXCEED_DEBITS and b.cp + b.c > b.d:
        return "EXCEEDS_DEBITS", b.d - b.c - b.cp
    return None


# --- what is asked ----------------------------------------------------------------------------
def _utc(moment: datetime | None) -> str:
    """A moment as the database keeps it (UTC, milliseconds): a spec read back from a stored
    record has the same digest as when it was made."""
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TransferSpec:
    """A transfer to record: a client's (CreateTransfers) or one a domain flow makes. Accounts
    are stored ids; `digest` is over what the client asked, so a retry matches itself."""

    id: str
    kind: str
    debit: str = ""
    credit: str = ""
    amount: int = 0
    pending_id: str = ""
    timeout_seconds: int = 0
    # A platform flow's absolute timeout (a lesson fee waits until its classes end).
    timeout_at: datetime | None = None
    code: str = ""
    reference: str = ""
    effective_at: datetime | None = None
    contract_id: str = ""
    complaint_id: str = ""
    district_code: str = ""

    def digest(self) -> str:
        content = [self.id, self.kind, self.debit, self.credit, self.amount, self.pending_id,
                   self.timeout_seconds,
                   _utc(self.timeout_at),
                   self.code, self.reference,
                   _utc(self.effective_at),
                   self.contract_id, self.complaint_id, self.district_code]
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


    def as_dict(self) -> dict:
        """As kept in a money movement's record until it is written (BSON-safe)."""
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, None)}

    @classmethod
    def of(cls, data: dict) -> TransferSpec:
        return cls(**data)


@dataclass
class AccountState:
    id: str
    kind: str
    balance: Balance = field(default_factory=Balance)
    # Contracts: the bank account their money leaves custody through.
    bank: str = ""


@dataclass
class PendingState:
    id: str  # stored entry id
    debit: str
    credit: str
    amount: int
    timeout_at: datetime | None
    state: str = STATE_PENDING
    contract_id: str = ""
    complaint_id: str = ""
    district_code: str = ""


@dataclass
class LedgerState:
    """What planning needs of a ledger at one point of its journal (`head`)."""

    ledger: str
    head: int
    accounts: dict[str, AccountState]
    pendings: dict[str, PendingState] = field(default_factory=dict)
    # Stored entry id -> digest of the transfers already recorded among those asked.
    existing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    index: int
    kind: str       # INVALID | NOT_FOUND | EXISTS | STATE
    reason: str     # stable code
    message: str
    would_reach: int | None = None


class Refused(Exception):
    """One or more transfers of a batch are refused: nothing of the batch is written."""

    def __init__(self, refusals: list[Refusal]):
        self.refusals = refusals
        super().__init__("; ".join(r.message for r in refusals[:5]))


def entry_id(ledger: str, transfer_id: str) -> str:
    return f"{ledger}/{transfer_id}"


def pending_timeout_passed(p: PendingState, now: datetime) -> bool:
    return p.timeout_at is not None and p.timeout_at <= now


# --- planning: the entries a batch makes, checked whole before any is written -----------------
def plan(state: LedgerState, specs: list[TransferSpec], now: datetime, actor: str,
         path: str = "transfers", advance: bool = False) -> tuple[list[dict], list[str | None]]:
    """(the entry documents to insert, in order, and for each spec the stored id it answers
    with: its new entry's, or that of the same transfer recorded before). Refused if any
    transfer breaks a rule; nothing is changed in `state` then. With `advance`, a batch that
    passes moves `state` past itself (batches planned one after another, written together)."""
    accounts = {k: replace(v) for k, v in state.accounts.items()}
    pendings = {k: replace(v) for k, v in state.pendings.items()}
    seen: dict[str, str] = {}
    entries: list[dict] = []
    answers: list[str | None] = []
    refusals: list[Refusal] = []
    seq = state.head
    for i, spec in enumerate(specs):
        stored = entry_id(state.ledger, spec.id)
        digest = spec.digest()
        earlier = state.existing.get(stored, seen.get(stored))
        if earlier is not None:
            if earlier != digest:
                refusals.append(Refusal(i, "EXISTS", "TRANSFER_EXISTS_WITH_DIFFERENT_CONTENT",
                                        f"{path}[{i}].id: transfer {spec.id} exists with other "
                                        "content; a new transfer needs a new id"))
            answers.append(stored)
            continue
        try:
            legs, pending = _legs(spec, accounts, pendings, now, i, path, state.ledger)
        except _Refuse as exc:
            refusals.append(exc.refusal)
            answers.append(None)
            continue
        problem = zero_sum_problem(legs)
        if problem:  # a bug in a flow, never a client's: refuse loudly rather than write it
            raise AssertionError(f"entry {spec.id} does not balance: {problem}")
        after = {}
        limit_refusal = None
        for leg in legs:
            account = accounts[leg.a]
            new = account.balance.plus(leg)
            broken = limit_problem(account.kind, new)
            if broken and limit_refusal is None:
                reason, reach = broken
                limit_refusal = Refusal(
                    i, "STATE", reason,
                    f"{path}[{i}]: account {local_id(leg.a)} would reach a balance of {reach} "
                    "fen; it may not go below zero", reach)
            after[leg.a] = new
        if limit_refusal is not None:
            refusals.append(limit_refusal)
            answers.append(None)
            continue
        for a, new in after.items():
            accounts[a].balance = new
        seq += 1
        if spec.kind == PENDING:
            pendings[stored] = pending
        elif spec.kind in SETTLING:
            pendings[entry_id(state.ledger, spec.pending_id)].state = STATE_BY_SETTLEMENT[spec.kind]
        entries.append(_entry(state.ledger, spec, stored, seq, legs, after, now, actor, digest,
                              pendings))
        seen[stored] = digest
        answers.append(stored)
    if refusals:
        raise Refused(refusals)
    if advance:
        # The state after the batch: the next batch planned on it follows this one.
        state.accounts.update(accounts)
        state.pendings = pendings
        state.existing.update(seen)
        state.head = seq
    return entries, answers


class _Refuse(Exception):
    def __init__(self, refusal: Refusal):
        self.refusal = refusal


def _legs(spec: TransferSpec, accounts, pendings, now, i, path, ledger):
    """The legs a transfer makes (and the pending state it opens), or _Refuse."""

    def refuse(kind, reason, message, field_name=""):
        where = f"{path}[{i}].{field_name}" if field_name else f"{path}[{i}]"
        raise _Refuse(Refusal(i, kind, reason, f"{where}: {message}"))

    if spec.kind in (POSTED, PENDING):
        for name, a in (("debit_account_id", spec.debit), ("credit_account_id", spec.credit)):
            if a not in accounts:
                refuse("NOT_FOUND", "ACCOUNT_NOT_FOUND",
                       f"account {local_id(a)} does not exist in this ledger", name)
        if spec.debit == spec.credit:
            refuse("INVALID", "ACCOUNTS_MUST_BE_DIFFERENT",
                   "debit and credit accounts must differ")
        amount = spec.amount
        if spec.kind == PENDING:
            legs = [Leg(spec.debit, dp=amount), Leg(spec.credit, cp=amount)]
            timeout_at = spec.timeout_at
            if timeout_at is None and spec.timeout_seconds:
                timeout_at = now + timedelta(seconds=spec.timeout_seconds)
            pending = PendingState(entry_id(ledger, spec.id), spec.debit, spec.credit, amount,
                                   timeout_at, STATE_PENDING, spec.contract_id, spec.complaint_id,
                                   spec.district_code)
            return legs, pending
        legs = [Leg(spec.debit, d=amount), Leg(spec.credit, c=amount)]
        return legs + _payout(spec.debit, spec.credit, amount, accounts, i), None

    # settling a pending transfer
    pending = pendings.get(entry_id(ledger, spec.pending_id))
    if pending is None:
        refuse("NOT_FOUND", "PENDING_TRANSFER_NOT_FOUND",
               f"pending transfer {spec.pending_id} does not exist in this ledger", "pending_id")
    if pending.state != STATE_PENDING:
        refuse("STATE", f"PENDING_TRANSFER_ALREADY_{pending.state}",
               f"pending transfer {spec.pending_id} is already {pending.state.lower()}",
               "pending_id")
    passed = pending_timeout_passed(pending, now)
    if spec.kind == EXPIRE_PENDING and not passed:
        refuse("STATE", "PENDING_TRANSFER_NOT_EXPIRED",
               f"pending transfer {spec.pending_id} has not reached its timeout", "pending_id")
    if spec.kind != EXPIRE_PENDING and passed:
        refuse("STATE", "PENDING_TRANSFER_EXPIRED",
               f"pending transfer {spec.pending_id} expired at "
               f"{pending.timeout_at.isoformat()}", "pending_id")
    release = [Leg(pending.debit, dp=-pending.amount), Leg(pending.credit, cp=-pending.amount)]
    if spec.kind != POST_PENDING:
        return release, None
    amount = spec.amount or pending.amount
    if amount > pending.amount:
        refuse("STATE", "EXCEEDS_PENDING_TRANSFER_AMOUNT",
               f"posts {amount} fen of a pending transfer of {pending.amount} fen", "amount_fen")
    legs = [Leg(pending.debit, dp=-pending.amount, d=amount),
            Leg(pending.credit, cp=-pending.amount, c=amount)]
    return legs + _payout(pending.debit, pending.credit, amount, accounts, i), None


def _payout(debit: str, credit: str, amount: int, accounts, i: int) -> list[Leg]:
    """Money leaving a contract for released or refunds leaves custody through the bank."""
    source, target = accounts[debit], accounts[credit]
    if source.kind != CONTRACT or target.kind not in PAID_OUT_TO or amount == 0:
        return []
    ledger = debit.split("/", 1)[0]
    if not source.bank or source.bank not in accounts:
        raise _Refuse(Refusal(i, "STATE", "NO_CUSTODIAN_BANK",
                              f"contract {local_id(debit)} names no custodian bank account"))
    return [Leg(source.bank, d=amount), Leg(custody(ledger), c=amount)]


def _entry(ledger, spec: TransferSpec, stored, seq, legs, after, now, actor, digest, pendings):
    # Merge legs per account (the payout may touch an account the transfer touched).
    merged: dict[str, Leg] = {}
    for leg in legs:
        held = merged.get(leg.a)
        merged[leg.a] = leg if held is None else Leg(leg.a, held.dp + leg.dp, held.d + leg.d,
                                                     held.cp + leg.cp, held.c + leg.c)
    doc = {
        "_id": stored, "ledger": ledger, "transfer_id": spec.id, "seq": seq, "kind": spec.kind,
        "legs": [leg.as_dict() for leg in merged.values()],
        "accounts": list(merged),
        "balances": [{"a": a, **b.as_dict()} for a, b in after.items()],
        "amount": spec.amount, "effective_at": spec.effective_at or now, "recorded_at": now,
        "digest": digest, "actor": actor,
    }
    if spec.kind == PENDING:
        pending = pendings[stored]
        doc["amount"] = pending.amount
        if pending.timeout_at is not None:
            doc["timeout_at"] = pending.timeout_at
    if spec.kind in SETTLING:
        pending = pendings[entry_id(ledger, spec.pending_id)]
        doc["pending_id"] = spec.pending_id
        doc["settles"] = entry_id(ledger, spec.pending_id)
        doc["amount"] = (spec.amount or pending.amount) if spec.kind == POST_PENDING else 0
        # A settlement inherits what its pending transfer was for (statistics, contracts).
        spec = replace(spec, contract_id=spec.contract_id or pending.contract_id,
                       complaint_id=spec.complaint_id or pending.complaint_id,
                       district_code=spec.district_code or pending.district_code)
    for name in ("code", "reference", "contract_id", "complaint_id", "district_code"):
        value = getattr(spec, name)
        if value:
            doc[name] = value
    return doc


# --- recomputing: every balance is derivable from the entries ----------------------------------
@dataclass
class Recomputed:
    balances: dict[str, Balance]
    entries: int
    problems: list[str]


def recompute(entries, account_kinds: dict[str, str], cached: dict[str, tuple[int, dict]]
              | None = None) -> Recomputed:
    """Replay a ledger's entries in journal order: every entry must balance, sequences run
    1, 2, 3..., and each entry's stored post-balances (and each account's cached balance at
    its sequence) must equal the sums of the legs before. Yields the balances."""
    balances: dict[str, Balance] = {}
    problems: list[str] = []
    expected_seq = 0
    cache_at: dict[int, list[tuple[str, Balance]]] = {}
    for a, (seq, values) in (cached or {}).items():
        cache_at.setdefault(seq, []).append((a, Balance.of(values)))
    for a, b in cache_at.pop(0, []):
        if b != Balance():
            problems.append(f"account {local_id(a)}: cached balance {b} before any entry")
    count = 0
    for doc in entries:
        count += 1
        expected_seq += 1
        if doc["seq"] != expected_seq:
            problems.append(f"sequence {doc['seq']} where {expected_seq} was due")
            expected_seq = doc["seq"]
        legs = [Leg.of(leg) for leg in doc.get("legs") or ()]
        problem = zero_sum_problem(legs)
        if problem:
            problems.append(f"entry {doc['_id']} (seq {doc['seq']}): {problem}")
        for leg in legs:
            if leg.a not in account_kinds:
                problems.append(f"entry {doc['_id']}: unknown account {leg.a}")
            balances[leg.a] = balances.get(leg.a, Balance()).plus(leg)
        for stored in doc.get("balances") or ():
            if Balance.of(stored) != balances.get(stored["a"], Balance()):
                problems.append(f"entry {doc['_id']} (seq {doc['seq']}): stored balance of "
                                f"{local_id(stored['a'])} differs from the sum of its legs")
        for a, b in cache_at.pop(doc["seq"], []):
            if b != balances.get(a, Balance()):
                problems.append(f"account {local_id(a)}: cached balance at seq {doc['seq']} "
                                "differs from the sum of its legs")
    for seq, _ in cache_at.items():
        problems.append(f"an account's cached balance is at seq {seq}, past the journal")
    return Recomputed(balances, count, problems)


@dataclass(frozen=True)
class Conservation:
    custody: int
    owed: int
    pending: int
    released: int
    refunded: int
    paid_out: int
    problems: tuple[str, ...]

    @property
    def conserved(self) -> bool:
        return not self.problems


def conservation(recomputed: Recomputed, account_kinds: dict[str, str]) -> Conservation:
    """custody = owed to trainees + pending releases; bank paid out = released + refunded;
    plus whatever replaying the journal found."""
    totals = {k: Balance() for k in KINDS}
    owed = pending = 0
    for a, b in recomputed.balances.items():
        kind = account_kinds.get(a)
        if kind is None:
            continue
        if kind == CONTRACT:
            owed += b.c - b.d - b.dp
            pending += b.dp
        totals[kind] = Balance(totals[kind].dp + b.dp, totals[kind].d + b.d,
                               totals[kind].cp + b.cp, totals[kind].c + b.c)
    custody_fen = balance_on_normal_side(CUSTODY, totals[CUSTODY])
    released_fen = balance_on_normal_side(RELEASED, totals[RELEASED])
    refunded_fen = balance_on_normal_side(REFUNDS, totals[REFUNDS])
    paid_out = balance_on_normal_side(BANK, totals[BANK])
    problems = list(recomputed.problems)
    if custody_fen != owed + pending:
        problems.append(f"custody {custody_fen} fen != owed {owed} + pending {pending} fen")
    if paid_out != released_fen + refunded_fen:
        problems.append(f"paid out by the bank {paid_out} fen != released {released_fen} + "
                        f"refunded {refunded_fen} fen")
    return Conservation(custody_fen, owed, pending, released_fen, refunded_fen, paid_out,
                        tuple(problems))
