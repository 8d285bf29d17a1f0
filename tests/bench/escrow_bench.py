"""Escrow in `make bench`, as a ratio measured in one run (absolute times drift here):

  10,000 transfers via gRPC / direct insert - CreateTransfers in 10 batches of 1,000 through
      the edge, the bus and the worker (checks, balances, limits, ids, the journal's sequence,
      the accounts' cached balances), against inserting the same 10,000 entry documents
      straight into a fresh database on the same server, in the same batches, with the same
      indexes (goal: at most 2x).

The institution is made active by writing filing's status straight into escrow's database
(the benchmark measures the ledger, not filing); its scheme and ten contracts are made through
the API (FileScheme, RecordPayment)."""
from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

INSTITUTION_N = 901
BANK = "BENCH-BANK"
TRANSFERS = 10_000
BATCH = 1_000
CONTRACTS = 10
ROUNDS = 3
GOAL = 2.0


def direct_insert_seconds(docs: list[dict]) -> float:
    """The same entry documents into a fresh database on the same server, with the ledger's
    indexes, in the same batches."""
    import mongoengine

    from services.common.mongo import connect, disconnect, ensure_indexes
    from services.escrow.models import ALIAS, LedgerEntry
    from tests import database

    connect(ALIAS, database.server().database_uri(f"bench_{uuid.uuid4().hex[:8]}"))
    ensure_indexes(ALIAS)
    try:
        collection = LedgerEntry._get_collection()
        started = time.perf_counter()
        for start in range(0, len(docs), BATCH):
            collection.insert_many([dict(d) for d in docs[start:start + BATCH]], ordered=True)
        return time.perf_counter() - started
    finally:
        db = mongoengine.connection.get_db(ALIAS)
        db.client.drop_database(db.name)
        disconnect(ALIAS)


def run(report) -> None:
    from google.protobuf import json_format
    from vocreg.escrow.v1 import escrow_pb2, escrow_pb2_grpc

    from tests.platform import Platform
    from tests.support import token, uscc

    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-escrow-"))
    plat = Platform(tmp, services=("escrow",)).start()
    try:
        ledger = uscc(INSTITUTION_N)
        plat.db("escrow")["institutions"].insert_one(
            {"_id": ledger, "status": "ACTIVE", "district_code": "410502", "version": 0})
        stub = escrow_pb2_grpc.EscrowServiceStub(plat.channel)
        institution = (("authorization", f"Bearer {token('institution', INSTITUTION_N)}"),)
        custodian = (("authorization", f"Bearer {token('custodian', party_id=BANK)}"),)
        today = datetime.now(timezone.utc).date()
        scheme = stub.FileScheme(json_format.ParseDict({
            "scheme_code": "BENCH", "name": "基准", "courses": ["基准课程"],
            "price_per_hour_fen": 100, "class_hours": 2_000,
            "valid_from": today.isoformat(), "valid_until": f"{today.year + 1}-12-31",
            "custodian_id": BANK, "request_id": "bench-scheme"},
            escrow_pb2.FileSchemeRequest()), metadata=institution, timeout=30).scheme
        for c in range(CONTRACTS):
            stub.RecordPayment(json_format.ParseDict({
                "institution_id": ledger, "scheme_id": scheme.scheme_id,
                "contract_id": f"B{c}", "trainee_id": f"t{c}", "trainee_name": "张三",
                "signed_on": today.isoformat(), "class_hours": 1, "amount_fen": 100,
                "bank_reference": f"bench-{c}", "paid_on": today.isoformat(),
                "classes_until": today.isoformat(), "request_id": f"bench-pay-{c}"},
                escrow_pb2.RecordPaymentRequest()), metadata=custodian, timeout=30)

        via, direct = [], []
        for round_ in range(ROUNDS):
            batches = []
            for start in range(0, TRANSFERS, BATCH):
                batches.append(json_format.ParseDict({"institution_id": ledger, "transfers": [
                    {"id": f"r{round_}-{n}", "kind": "TRANSFER_KIND_POSTED",
                     "debit_account_id": "custody", "credit_account_id": f"contract/B{n % 10}",
                     "amount_fen": 1 + n % 97, "code": "BENCH"}
                    for n in range(start, start + BATCH)]}, escrow_pb2.CreateTransfersRequest()))
            started = time.perf_counter()
            for request in batches:
                answer = stub.CreateTransfers(request, metadata=custodian, timeout=120)
                assert len(answer.transfers) == BATCH
            via.append(time.perf_counter() - started)
            docs = list(plat.db("escrow")["ledger_entries"].find(
                {"ledger": ledger, "transfer_id": {"$regex": f"^r{round_}-"}}).sort("seq", 1))
            assert len(docs) == TRANSFERS
            direct.append(direct_insert_seconds(docs))
        figure, baseline = statistics.median(via), statistics.median(direct)
        ratio = figure / baseline
        report("")
        report(f"escrow: {TRANSFERS:,} transfers in batches of {BATCH:,} via gRPC "
               f"{figure:.2f} s (median of {ROUNDS}: "
               f"{', '.join(f'{v:.2f}' for v in via)}), the same entry documents inserted "
               f"directly {baseline:.2f} s ({', '.join(f'{d:.2f}' for d in direct)})")
        report(f"10,000 transfers via gRPC / direct insert: {ratio:.2f}x (goal <= {GOAL}x: "
               f"{'met' if ratio <= GOAL else 'NOT MET'})")
    finally:
        plat.stop()


if __name__ == "__main__":
    from tests import database

    database.server(on_disk=True)
    try:
        run(print)
    finally:
        database.stop_server()
