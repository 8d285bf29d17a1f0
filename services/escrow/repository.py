"""The escrow service's queries, and the ledger's writer.

The ledger is append-only: `append` reads the state a batch of transfers needs (the journal's
head, the accounts' balances, the pending transfers they settle, the ids already used), plans
the batch's entries with the pure rules (domain/ledger.py `plan`, which refuses the whole batch
if one transfer breaks a rule) and inserts them in one ordered insert with the next sequences
of the ledger. The unique (ledger, seq) index makes the insert the serialisation point: a
concurrent writer that took a sequence first makes ours fail, and the batch is planned again on
the new state (transfers already written answer as stored). No multi-document transaction.

Within one worker process the writers of a ledger take turns (a green lock per ledger), and
the process keeps the ledger's head and the balances it last wrote: when its insert at the
next sequence succeeds, nobody else wrote in between (they would have taken that sequence),
so what it holds is exact; when the insert fails, or the journal's head is not the one it
wrote last, it forgets them and reads the database again. Two workers of the service still
meet only at the unique index."""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime

from eventlet.semaphore import Semaphore
from pymongo import DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.errors import Conflict
from services.common.repository import keyset_page
from services.common.uow import Repository
from services.escrow.domain import ledger as L
from services.escrow.models import (
    EscrowContract,
    EscrowInstitution,
    EscrowScheme,
    LedgerAccount,
    LedgerEntry,
    PendingTimeout,
    RefundComplaint,
)

log = logging.getLogger(__name__)

# A writer that keeps losing the race for the next sequence tries again this many times, each
# after a short random pause (they grow), before answering ABORTED.
APPEND_ATTEMPTS = 400


def entries():
    return LedgerEntry._get_collection()


def accounts_collection():
    return LedgerAccount._get_collection()


class EscrowRepository(Repository):
    # --- aggregates ---------------------------------------------------------------------------
    def institution(self, institution_id: str) -> EscrowInstitution | None:
        return self.tracked(EscrowInstitution, institution_id) or self.track(
            EscrowInstitution.objects(pk=institution_id).first())

    def institution_view(self, institution_id: str) -> EscrowInstitution | None:
        return EscrowInstitution.objects(pk=institution_id).first()

    def scheme(self, scheme_id: str) -> EscrowScheme | None:
        return self.tracked(EscrowScheme, scheme_id) or EscrowScheme.objects(pk=scheme_id).first()

    def scheme_by_code(self, institution_id: str, code: str) -> EscrowScheme | None:
        return EscrowScheme.objects(institution_id=institution_id, scheme_code=code).first()

    def schemes_page(self, institution_id: str | None, size: int, after: str | None):
        query = EscrowScheme.objects(institution_id=institution_id) if institution_id \
            else EscrowScheme.objects()
        return keyset_page(query, "scheme_id", size, after)

    def contract(self, key: str) -> EscrowContract | None:
        return self.tracked(EscrowContract, key) or self.track(
            EscrowContract.objects(pk=key).first())

    def contract_view(self, key: str) -> EscrowContract | None:
        return self.tracked(EscrowContract, key) or EscrowContract.objects(pk=key).first()

    def contract_with_reference(self, reference_key: str) -> EscrowContract | None:
        return EscrowContract.objects(bank_references=reference_key).first()

    def contracts_with_open_ops(self, limit: int = 200) -> list[EscrowContract]:
        return self.track_all(EscrowContract.objects(ops__state="PENDING").limit(limit))

    def count_open_contracts(self, institution_id: str) -> int:
        return EscrowContract.objects(institution_id=institution_id,
                                      state="CONTRACT_STATE_OPEN").count()

    def complaint(self, complaint_id: str) -> RefundComplaint | None:
        return self.tracked(RefundComplaint, complaint_id) or self.track(
            RefundComplaint.objects(pk=complaint_id).first())

    def complaint_view(self, complaint_id: str) -> RefundComplaint | None:
        return RefundComplaint.objects(pk=complaint_id).first()

    def complaints_page(self, filters: dict, size: int, after: str | None):
        return keyset_page(RefundComplaint.objects(**filters), "complaint_id", size, after)

    # --- ledger: accounts -------------------------------------------------------------------------
    def open_accounts(self, specs: list[tuple[str, str, str]], now: datetime) -> None:
        """Create the accounts (stored id, kind, bank for contracts) that do not exist yet."""
        if not specs:
            return
        ops = [UpdateOne({"_id": a}, {"$setOnInsert": {
            "ledger": a.split("/", 1)[0], "kind": kind, "bank": bank, "created_at": now,
            "cache": {}, "cache_seq": 0}}, upsert=True) for a, kind, bank in specs]
        try:
            accounts_collection().bulk_write(ops, ordered=False)
        except BulkWriteError as exc:  # a concurrent open of the same account: the same result
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    def accounts_exist(self, ids) -> bool:
        """All these accounts exist (accounts are never deleted: what was found once is
        remembered by the process)."""
        where = self.db().name
        unknown = [a for a in ids if (where, a) not in _KNOWN_ACCOUNTS]
        if unknown:
            found = self.account_docs(unknown)
            _KNOWN_ACCOUNTS.update((where, a) for a in found)
            if len(found) < len(unknown):
                return False
        return True

    def account_docs(self, ids) -> dict[str, dict]:
        return {d["_id"]: d for d in accounts_collection().find({"_id": {"$in": list(ids)}})}

    def ledger_account_kinds(self, ledger: str) -> dict[str, str]:
        return {d["_id"]: d["kind"] for d in accounts_collection().find(
            {"ledger": ledger}, {"kind": 1})}

    def ledger_account_caches(self, ledger: str) -> dict[str, tuple[int, dict]]:
        return {d["_id"]: (int(d.get("cache_seq") or 0), d.get("cache") or {})
                for d in accounts_collection().find({"ledger": ledger},
                                                   {"cache": 1, "cache_seq": 1})}

    def ledgers(self) -> list[str]:
        return sorted(accounts_collection().distinct("ledger"))

    def balances(self, ids) -> dict[str, tuple[dict, L.Balance, int]]:
        """Each existing account: (its document, its balance now, the sequence it is at)."""
        docs = self.account_docs(ids)
        if not docs:
            return {}
        by_ledger: dict[str, list[str]] = {}
        for a, doc in docs.items():
            by_ledger.setdefault(doc["ledger"], []).append(a)
        result = {}
        for ledger, ids_of in by_ledger.items():
            cached = {a: (int(docs[a].get("cache_seq") or 0),
                          L.Balance.of(docs[a].get("cache"))) for a in ids_of}
            since = min(seq for seq, _ in cached.values())
            current = {a: b for a, (_, b) in cached.items()}
            at = {a: seq for a, (seq, _) in cached.items()}
            for entry in entries().find({"ledger": ledger, "seq": {"$gt": since},
                                         "accounts": {"$in": ids_of}},
                                        {"legs": 1, "seq": 1}).sort("seq", 1):
                for leg in entry["legs"]:
                    a = leg["a"]
                    if a in current and entry["seq"] > cached[a][0]:
                        current[a] = current[a].plus(L.Leg.of(leg))
                        at[a] = entry["seq"]
            for a in ids_of:
                result[a] = (docs[a], current[a], at[a])
        return result

    # --- ledger: entries --------------------------------------------------------------------------
    def still_at(self, ledger: str, held: _HeldLedger) -> bool:
        """The journal's last entry is still the one this process wrote last (a range read on
        the (ledger, seq) index: cheaper than looking the head up afresh)."""
        if held.head is None:
            return False
        found = list(entries().find({"ledger": ledger, "seq": {"$gte": held.head}},
                                    {"_id": 1}).limit(2))
        if held.head == 0:
            return not found
        return len(found) == 1 and found[0]["_id"] == held.last_id

    def head(self, ledger: str) -> int:
        doc = entries().find_one({"ledger": ledger}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return int(doc["seq"]) if doc else 0

    def entry(self, stored_id: str) -> dict | None:
        return entries().find_one({"_id": stored_id})

    def entries_by_ids(self, stored_ids) -> list[dict]:
        return list(entries().find({"_id": {"$in": list(stored_ids)}}))

    def entries_by_ids_light(self, stored_ids) -> list[dict]:
        """What a created transfer answers with: its id, sequence and recording time."""
        ids = list(stored_ids)
        found = []
        for start in range(0, len(ids), 1000):
            found.extend(entries().find({"_id": {"$in": ids[start:start + 1000]}},
                                        {"transfer_id": 1, "seq": 1, "recorded_at": 1}))
        return found

    def count_breached(self) -> int:
        return EscrowInstitution.objects(conserved=False).count()

    def settlements(self, pending_ids) -> dict[str, dict]:
        """Stored pending id -> the entry that settled it."""
        return {d["settles"]: d for d in entries().find({"settles": {"$in": list(pending_ids)}})}

    def ledger_entries(self, ledger: str, head: int):
        """The journal up to `head`, in order (the conservation check replays it)."""
        return entries().find({"ledger": ledger, "seq": {"$lte": head}},
                              {"legs": 1, "seq": 1, "balances": 1}).sort("seq", 1)

    def entries_page(self, ledger: str, account: str | None, size: int, after: int | None):
        query = {"ledger": ledger}
        if account:
            query["accounts"] = account
        if after is not None:
            query["seq"] = {"$gt": after}
        rows = list(entries().find(query).sort("seq", 1).limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        return rows, (rows[-1]["seq"] if more and rows else None)

    def open_lesson_fees(self, ledger: str, contract_id: str) -> list[dict]:
        """The contract's pending lesson fees not settled yet, oldest timeout first."""
        pending = list(entries().find({"ledger": ledger, "contract_id": contract_id,
                                       "kind": L.PENDING}))
        settled = self.settlements([p["_id"] for p in pending])
        open_ = [p for p in pending if p["_id"] not in settled]
        return sorted(open_, key=lambda p: (p.get("timeout_at") or datetime.max, p["seq"]))

    def due_timeouts(self, now: datetime, limit: int = 500) -> list[dict]:
        return list(PendingTimeout._get_collection().find({"timeout_at": {"$lte": now}})
                    .sort("timeout_at", 1).limit(limit))

    def drop_timeouts(self, stored_ids) -> None:
        if stored_ids:
            PendingTimeout._get_collection().delete_many({"_id": {"$in": list(stored_ids)}})

    def refund_entries(self, match: dict, projection=None) -> list[dict]:
        return list(entries().find(match, projection))

    def count_complaints(self, match: dict) -> int:
        return RefundComplaint._get_collection().count_documents(match)

    def complaint_ids(self, match: dict, limit: int) -> list[str]:
        return [d["_id"] for d in RefundComplaint._get_collection().find(match, {"_id": 1})
                .sort("_id", 1).limit(limit)]

    # --- ledger: writing --------------------------------------------------------------------------
    def ledger_state(self, ledger: str, specs: list[L.TransferSpec],
                     held: _HeldLedger | None = None) -> L.LedgerState:
        """What planning `specs` needs, read at (or after) the journal's head; from what this
        process holds of the ledger where it can (`held`), the rest from the database."""
        held = held or _HeldLedger()
        head = held.head if self.still_at(ledger, held) else None
        if head is None:  # another writer, or another database: read everything again
            held.forget()
            head = self.head(ledger)
        stored_ids = [L.entry_id(ledger, s.id) for s in specs]
        existing = {}
        for start in range(0, len(stored_ids), 5000):
            existing.update({d["_id"]: d.get("digest") for d in entries().find(
                {"_id": {"$in": stored_ids[start:start + 5000]}}, {"digest": 1})})
        pending_ids = {L.entry_id(ledger, s.pending_id) for s in specs if s.kind in L.SETTLING}
        pendings: dict[str, L.PendingState] = {}
        wanted = {a for s in specs for a in (s.debit, s.credit) if a}
        if pending_ids:
            settled = self.settlements(pending_ids)
            for doc in entries().find({"_id": {"$in": list(pending_ids)}, "kind": L.PENDING}):
                debit = next(leg["a"] for leg in doc["legs"] if leg.get("dp"))
                credit = next(leg["a"] for leg in doc["legs"] if leg.get("cp"))
                settlement = settled.get(doc["_id"])
                state = (L.STATE_BY_SETTLEMENT[settlement["kind"]] if settlement
                         else L.STATE_PENDING)
                pendings[doc["_id"]] = L.PendingState(
                    doc["_id"], debit, credit, int(doc["amount"]), doc.get("timeout_at"), state,
                    doc.get("contract_id", ""), doc.get("complaint_id", ""),
                    doc.get("district_code", ""))
                wanted.update((debit, credit))
        accounts = {a: held.accounts[a] for a in wanted if a in held.accounts}
        missing = wanted - set(accounts)
        if missing:
            docs = self.account_docs(missing)
            missing |= {d["bank"] for d in docs.values() if d.get("bank")}
        if any(a.kind == L.CONTRACT for a in accounts.values()) or any(
                "/contract/" in a for a in missing):
            missing.add(L.custody(ledger))
        for a in list(missing):
            if a in held.accounts:
                accounts[a] = held.accounts[a]
                missing.discard(a)
        for a in [a.bank for a in accounts.values() if a.bank and a.bank not in accounts]:
            if a in held.accounts:
                accounts[a] = held.accounts[a]
            else:
                missing.add(a)
        if missing:
            for a, (doc, balance, _) in self.balances(missing).items():
                if doc["ledger"] == ledger:
                    accounts[a] = L.AccountState(a, doc["kind"], balance, doc.get("bank") or "")
        return L.LedgerState(ledger, head, accounts, pendings, existing)

    def append(self, ledger: str, specs: list[L.TransferSpec], clock, actor: str,
               path: str = "transfers") -> list[str]:
        """Write `specs` to the ledger (all of them, or L.Refused and none); each spec's stored
        entry id. Transfers recorded before with the same content are answered, not repeated."""
        return self.append_with_docs(ledger, specs, clock, actor, path)[0]

    def append_with_docs(self, ledger: str, specs: list[L.TransferSpec], clock, actor: str,
                         path: str = "transfers") -> tuple[list[str], dict[str, dict]]:
        """As `append`, with the entries this call wrote, by stored id.

        Group commit: the calls of this process waiting for the ledger are served together by
        whichever holds it, each batch planned after the one before (each still all or none),
        all their entries in one insert: under load a ledger costs a few database round trips
        per group instead of per call."""
        held = _held(self.db().name, ledger)
        job = _Job(specs, actor, path)
        held.queue.append(job)
        with held.lock:
            if not job.done:
                self._serve(ledger, held, clock)
        if job.error is not None:
            raise job.error
        return job.answers, job.docs

    def _serve(self, ledger: str, held: _HeldLedger, clock) -> None:
        jobs, size = [], 0
        while held.queue and len(jobs) < GROUP_MAX_CALLS and size < GROUP_MAX_TRANSFERS:
            job = held.queue.pop(0)
            if not job.done:
                jobs.append(job)
                size += len(job.specs)
        try:
            self._write_group(ledger, held, jobs, clock)
        except Exception as exc:
            for job in jobs:
                if not job.done:
                    job.finish(error=exc)
            raise

    def _write_group(self, ledger: str, held: _HeldLedger, jobs: list[_Job], clock) -> None:
        for attempt in range(APPEND_ATTEMPTS):
            state = self.ledger_state(ledger, [s for job in jobs for s in job.specs], held)
            now = clock.now()
            docs, planned = [], []
            for job in jobs:
                try:
                    job_docs, answers = L.plan(state, job.specs, now, job.actor, job.path,
                                               advance=True)
                except L.Refused as exc:
                    planned.append((job, exc, [], None))
                    continue
                planned.append((job, None, answers, job_docs))
                docs.extend(job_docs)
            if docs:
                timeouts = [UpdateOne({"_id": d["_id"]}, {"$set": {
                    "ledger": ledger, "timeout_at": d["timeout_at"]}}, upsert=True)
                    for d in docs if d.get("timeout_at") is not None]
                if timeouts:  # before the entries: a leftover without its entry is dropped
                    PendingTimeout._get_collection().bulk_write(timeouts, ordered=False)
                try:
                    entries().insert_many(docs, ordered=True)
                except (BulkWriteError, DuplicateKeyError) as exc:
                    held.forget()
                    written = _written_before_error(exc)
                    if written:
                        self._after_write(ledger, docs[:written])
                    log.debug("ledger %s: sequence taken (attempt %d); planning again",
                              ledger, attempt + 1)
                    _pause(attempt)
                    continue
                except Exception:
                    held.forget()  # not known what was written: read it again next time
                    raise
            held.keep(state, docs[-1]["_id"] if docs else held.last_id)
            if docs:
                self._after_write(ledger, docs)
            for job, error, answers, job_docs in planned:
                job.finish(error=error, answers=answers,
                           docs={d["_id"]: d for d in job_docs or ()})
            return
        raise Conflict(f"ledger {ledger} is busy: the transfers could not take a sequence; "
                       "retry with the same ids")

    def _after_write(self, ledger: str, docs: list[dict]) -> None:
        """Move the accounts' cached balances forward (only ever forward) and drop the expiry
        marks of what was settled. Both are shortcuts: a crash before this loses nothing."""
        latest: dict[str, tuple[int, dict]] = {}
        for doc in docs:
            for b in doc["balances"]:
                latest[b["a"]] = (doc["seq"], {k: b[k] for k in ("dp", "d", "cp", "c")})
        ops = [UpdateOne({"_id": a, "cache_seq": {"$lt": seq}},
                         {"$set": {"cache": values, "cache_seq": seq}})
               for a, (seq, values) in latest.items()]
        if ops:
            accounts_collection().bulk_write(ops, ordered=False)
        self.drop_timeouts([d["settles"] for d in docs if d.get("settles")])


@dataclass
class _HeldLedger:
    """What this process holds of one ledger between its writes: exact while `head` is the
    journal's head (see the module's docstring); forgotten at the first sign it is not."""

    lock: Semaphore = field(default_factory=Semaphore)
    queue: list = field(default_factory=list)
    head: int | None = None
    last_id: str | None = None
    accounts: dict[str, L.AccountState] = field(default_factory=dict)

    def forget(self) -> None:
        self.head = None
        self.last_id = None
        self.accounts = {}

    def keep(self, state: L.LedgerState, last_id: str | None) -> None:
        """The state after the entries just written (plan advanced it past them); `last_id`:
        the journal's last entry (None: unknown, so nothing is kept)."""
        if last_id is None and state.head:
            self.forget()
            return
        self.accounts.update({a: L.AccountState(s.id, s.kind, s.balance, s.bank)
                              for a, s in state.accounts.items()})
        self.head = state.head
        self.last_id = last_id
        if len(self.accounts) > MAX_HELD_ACCOUNTS:
            self.forget()


class _Job:
    """One call's batch waiting for its ledger (group commit)."""

    def __init__(self, specs, actor, path):
        self.specs, self.actor, self.path = specs, actor, path
        self.done = False
        self.error: Exception | None = None
        self.answers: list[str] = []
        self.docs: dict[str, dict] = {}

    def finish(self, error=None, answers=(), docs=None) -> None:
        self.done = True
        self.error = error
        self.answers = list(answers)
        self.docs = docs or {}


# One group commit serves at most this many calls and transfers.
GROUP_MAX_CALLS = 200
GROUP_MAX_TRANSFERS = 20_000
# A ledger's accounts this process keeps balances of, at most (beyond it, it reads again).
MAX_HELD_ACCOUNTS = 20_000
_HELD: dict[tuple[str, str], _HeldLedger] = {}
_KNOWN_ACCOUNTS: set[tuple[str, str]] = set()


def _held(database: str, ledger: str) -> _HeldLedger:
    key = (database, ledger)
    held = _HELD.get(key)
    if held is None:
        held = _HELD.setdefault(key, _HeldLedger())
    return held


def forget_held_ledgers() -> None:
    """Tests that change the database behind the process's back (a new database per test)."""
    _HELD.clear()
    _KNOWN_ACCOUNTS.clear()


def _written_before_error(exc) -> int:
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors") or []
        if errors:
            return int(errors[0].get("index", 0))
        return int(exc.details.get("nInserted", 0))
    return 0


def _pause(attempt: int) -> None:
    """A short random pause, growing with the attempts (time.sleep yields under eventlet)."""
    time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
