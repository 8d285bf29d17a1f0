"""Online courses in `make bench` (issue 14), as a ratio measured in one run:

  reuse check / hashing alone - the reuse check of a new 3,000-character course against
      10,000 stored courses (its signature, the LSH Ensemble query, the recent block and the
      exact verification of the candidates on their shingle sets), against the baseline of
      hashing the new course alone (normalising, shingling and its MinHash). The goal: the
      check's p50 under 50 ms.

The stored courses are random texts of 3,000 characters; a tenth of the queries copy half of
a stored course (so candidates are verified), the rest are new. The index is built as a
worker builds it (services/courses/signatures.py uses the same ContainmentIndex).
"""
from __future__ import annotations

import random
import statistics
import time

from services.courses.domain import reuse
from services.courses.settings import DEFAULT_REUSE_THRESHOLD

STORED = 10_000
LENGTH = 3_000
QUERIES = 200
GOAL_P50_MS = 50.0
_CHARS = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def text(seed: int, length: int = LENGTH) -> str:
    return "".join(random.Random(seed).choices(_CHARS, k=length))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def measure(stored: int = STORED, queries: int = QUERIES) -> dict:
    started = time.perf_counter()
    signatures = {i: reuse.signature(text(i)) for i in range(stored)}
    prepared = time.perf_counter() - started
    index = reuse.ContainmentIndex(DEFAULT_REUSE_THRESHOLD)
    started = time.perf_counter()
    index.build([(k, s.minhash, s.size) for k, s in signatures.items()])
    built = time.perf_counter() - started
    # a few courses stored since the build: the recent block is part of every check
    for k in range(stored, stored + 50):
        sig = reuse.signature(text(k))
        signatures[k] = sig
        index.add(k, sig.minhash, sig.size)
    new = [text(10_000_000 + q) if q % 10 else text(q)[:LENGTH // 2] + text(20_000_000 + q,
                                                                            LENGTH // 2)
           for q in range(queries)]
    hashing, checking, found = [], [], 0
    for course in new:
        t0 = time.perf_counter()
        reuse.signature(course)
        hashing.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        sig = reuse.signature(course)
        candidates = index.candidates(sig.minhash, sig.size)
        matches = reuse.verify(sig, {k: signatures[k] for k in candidates},
                               DEFAULT_REUSE_THRESHOLD)
        checking.append((time.perf_counter() - t0) * 1000)
        found += bool(matches)
    return {"stored": stored, "queries": queries, "prepare_s": prepared, "build_s": built,
            "hash_p50_ms": statistics.median(hashing),
            "check_p50_ms": statistics.median(checking),
            "check_p99_ms": percentile(checking, 0.99), "copies_found": found,
            "copies_made": sum(1 for q in range(queries) if q % 10 == 0)}


def run(report) -> dict:
    figures = measure()
    report("")
    report(f"courses: {figures['stored']:,} stored courses signed in {figures['prepare_s']:.1f} s, "
           f"indexed in {figures['build_s']:.2f} s; copies found {figures['copies_found']} of "
           f"{figures['copies_made']}")
    ratio = figures["check_p50_ms"] / figures["hash_p50_ms"]
    met = "met" if figures["check_p50_ms"] < GOAL_P50_MS else "NOT MET"
    report(f"reuse check vs {figures['stored']:,} courses p50 {figures['check_p50_ms']:.2f} ms "
           f"(p99 {figures['check_p99_ms']:.2f}) / hashing alone p50 "
           f"{figures['hash_p50_ms']:.2f} ms: {ratio:.2f}x  (goal p50 < {GOAL_P50_MS:.0f} ms: "
           f"{met})")
    return figures


if __name__ == "__main__":
    run(print)
