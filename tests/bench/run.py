"""`make bench`: the platform's speed as ratios against baselines measured in the same run
(absolute times drift on a shared machine; the ratios are what to watch).

Rows (issue 18), each printed with its figure, its baseline and their ratio, the median of
BENCH_ROUNDS rounds (default 3) with the range:
  - the edge's rows (tests/bench/edge_bench.py): edge -> worker against nameko -> worker
    (sequential p50), edge ListRegister throughput against a bare nameko echo at 1, 8 and 32
    concurrent callers;
  - certificates (tests/bench/certificates_bench.py): issuing 10,000 against inserting them,
    verification against the edge's bare round trip;
  - grading (tests/bench/grading_bench.py): ComputeGrades over 10,000 institutions x 58
    indicators, its scoring against the same arithmetic in plain numpy (goal <= 3x), the whole
    call (goal < 5 s), and another call's latency while it runs;
  - courses (tests/bench/courses_bench.py): the reuse check of a new 3,000-character course
    against 10,000 stored courses, against hashing the new course alone;
  - the decision log (tests/bench/merkle_bench.py): 10,000 appends and 10,000 inclusion proofs
    against hashing the same leaves (BENCH_ONLY=merkle runs only these: no database).
  - inspection (tests/bench/inspection_bench.py): a draw over 100,000 institutions and its
    verification against hashing the same ids once; the worker's other calls during a draw.
  - escrow (tests/bench/escrow_bench.py): 10,000 ledger transfers in batches through gRPC
    against inserting the same entry documents directly (goal at most 2x).
  - the ministry report (tests/bench/reporting_bench.py): events logged and projected against
    one insert per event; an edition generated against the pure fold; the worker's other
    calls during a generation.
The database is the local server as `make run` runs it (secantusdb, its own process, the
store on disk, each write journaled), started here and stopped at the end.
The results are written as JSON (BENCH_OUT, default .bench/bench-<UTC time>.json) so two runs
can be compared.
"""
from __future__ import annotations

import json
import logging
import os
import platform as host
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# The benchmark's nameko clients import eventlet; we chose it on purpose (nameko 2.14).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)

from tests import database  # noqa: E402
from tests.bench import edge_bench  # noqa: E402
from tests.platform import ROOT, Platform, free_port  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def summarise(rounds: list[list[dict]]) -> list[dict]:
    """Per row: the medians of figure, baseline and ratio over the rounds, and the ratio's range."""
    summary = []
    for i, first in enumerate(rounds[0]):
        same = [r[i] for r in rounds]
        ratios = [r["ratio"] for r in same]
        summary.append({**first, "figure": statistics.median(r["figure"] for r in same),
                        "baseline": statistics.median(r["baseline"] for r in same),
                        "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                        "ratio_max": max(ratios), "rounds": len(same),
                        "met": goal_met(first["goal"], statistics.median(ratios))})
    return summary


def goal_met(goal: str, ratio: float):
    if goal.startswith("<="):
        return ratio <= float(goal[2:])
    if goal.startswith(">="):
        return ratio >= float(goal[2:])
    return None


def print_rows(summary: list[dict]) -> None:
    print(f"{'row':<58}{'figure':>10}{'baseline':>10}  {'ratio (range)':<20}{'goal':<8}")
    for r in summary:
        met = {True: "met", False: "NOT MET", None: ""}[r["met"]]
        print(f"{r['row']:<58}{r['figure']:>10.2f}{r['baseline']:>10.2f}  "
              f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})".ljust(
                  58 + 10 + 10 + 2 + 20) + f"{r['goal']:<8} {met}")


def print_figures(rounds: list[dict]) -> None:
    print(f"{'path':<28}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}   (median of {len(rounds)} rounds)")
    for label in rounds[0]:
        figures = [r[label] for r in rounds]
        print(f"{label:<28}{statistics.median(f['calls_per_s'] for f in figures):>10.0f}"
              f"{statistics.median(f['p50_ms'] for f in figures):>10.2f}"
              f"{statistics.median(f['p99_ms'] for f in figures):>10.2f}")


def machine() -> dict:
    return {"cores": os.cpu_count(), "python": host.python_version(), "host": host.node(),
            "load_average": os.getloadavg()}


def write_results(results: dict) -> Path:
    out = Path(os.environ.get("BENCH_OUT") or ROOT / ".bench" /
               f"bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return out


def edge_rows(results: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-"))
    plat = Platform(tmp).start()
    echo_port = free_port()
    grpc_echo = subprocess.Popen([sys.executable, "-m", "tests.bench.echo_service",
                                  str(echo_port)], cwd=ROOT)
    nameko_echo = subprocess.Popen(
        [sys.executable, "-m", "services.common.nameko_cli", "run", "--broker", plat.amqp_uri,
         "tests.bench.echo_service:EchoService"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rounds = []
        for i in range(ROUNDS):
            print(f"edge round {i + 1}/{ROUNDS} ...", flush=True)
            rounds.append(edge_bench.run_round(plat, echo_port))
    finally:
        for proc in (grpc_echo, nameko_echo):
            proc.terminate()
            proc.wait(timeout=10)
        plat.stop()
    print()
    print_figures(rounds)
    print()
    summary = summarise([edge_bench.rows(r) for r in rounds])
    print_rows(summary)
    results["edge"] = {"rounds": rounds, "rows": summary}


def main() -> int:
    # The nameko clients' library chatter (e.g. py-amqp on closing channels) is not a figure.
    logging.basicConfig(level=logging.ERROR)
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "rounds": ROUNDS}
    from tests.bench import merkle_bench

    results["merkle"] = merkle_bench.run(ROUNDS, summarise, print_rows)
    if os.environ.get("BENCH_ONLY") == "merkle":
        print(f"\nresults: {write_results(results)}")
        return 0
    server = database.server(on_disk=True)
    print(f"database: secantusdb on {server.uri}, store on disk, writes journaled")
    try:
        edge_rows(results)
        if os.environ.get("BENCH_ONLY") != "edge":
            from tests.bench import certificates_bench, courses_bench
            certificates_bench.run(print)
            from tests.bench import inspection_bench
            inspection_bench.run(print)
            results["courses"] = courses_bench.run(print)
            from tests.bench import grading_bench
            grading_bench.run(print)
            from tests.bench import escrow_bench
            escrow_bench.run(print)
            from tests.bench import reporting_bench
            reporting_bench.run(print)
    finally:
        database.stop_server()
    results["machine"]["load_average_after"] = os.getloadavg()
    print(f"\nresults: {write_results(results)} (load average before "
          f"{results['machine']['load_average'][0]:.2f}, after "
          f"{results['machine']['load_average_after'][0]:.2f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
