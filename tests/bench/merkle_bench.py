"""The decision log's tree (services/common/merkle.py): 10,000 appends and 10,000 inclusion
proofs against hashing the same 10,000 leaves (SHA-256 of 0x00 || leaf, the least any log
must do per entry). Goal: each at most 3x the baseline. The leaves are real entries
(services/transparency/domain.py, about 400 bytes of canonical JSON).

    BENCH_ONLY=merkle make bench
"""
from __future__ import annotations

import random
import time

from services.common import merkle
from services.transparency import domain

N = 10_000
REPEAT = 5  # each timing is the best of this many (the machine is shared)


def leaves(n: int = N) -> list[bytes]:
    found = []
    for i in range(n):
        event = {"meta": {"event_id": f"{i:032x}", "occurred_at": "2026-06-20T02:00:00Z"},
                 "institution_id": f"52410502MJ{i:07d}X", "district_code": "410502",
                 "receipt": {"institution_name": f"安阳市第{i}职业技能培训评价中心",
                             "filing_code": f"S0000410{i:05d}", "filed_on": "2026-03-02",
                             "valid_until": "2029-03-01"}}
        entry = domain.decision_entry("filing", "InstitutionFiled", event)
        found.append(domain.canonical(entry).encode())
    return found


def best(run) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def run_round(data: list[bytes]) -> dict:
    leaf_hash = merkle.leaf_hash

    def hash_all():
        for leaf in data:
            leaf_hash(leaf)

    def append_all():
        tree = merkle.MerkleTree()
        for leaf in data:
            tree.append(leaf)

    tree = merkle.MerkleTree()
    for leaf in data:
        tree.append(leaf)
    indices = [random.randrange(N) for _ in range(N)]

    def prove_all():
        prove = tree.inclusion_proof
        for index in indices:
            prove(index, N)

    baseline = best(hash_all)
    return {"hash_ms": baseline * 1000, "append_ms": best(append_all) * 1000,
            "proof_ms": best(prove_all) * 1000}


def rows(figures: dict) -> list[dict]:
    return [
        {"row": f"log: {N:,} appends vs hashing the leaves (ms)", "figure": figures["append_ms"],
         "baseline": figures["hash_ms"], "ratio": figures["append_ms"] / figures["hash_ms"],
         "goal": "<=3"},
        {"row": f"log: {N:,} inclusion proofs vs hashing the leaves (ms)",
         "figure": figures["proof_ms"], "baseline": figures["hash_ms"],
         "ratio": figures["proof_ms"] / figures["hash_ms"], "goal": "<=3"},
    ]


def run(rounds: int, summarise, print_rows) -> dict:
    data = leaves()
    figures = []
    for i in range(rounds):
        print(f"log round {i + 1}/{rounds} ...", flush=True)
        figures.append(run_round(data))
    summary = summarise([rows(f) for f in figures])
    print()
    print_rows(summary)
    return {"rounds": figures, "rows": summary}
