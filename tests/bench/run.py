"""`make bench`: the platform's speed as ratios against baselines measured in the same run
(absolute times drift on a shared machine; the ratios are what to watch).

Rows (issue 18, issue 9 item 6), each printed with its figure, its baseline and their ratio,
the median of BENCH_ROUNDS rounds (default 3) with the range, and its goal:
  - the edge's rows (tests/bench/edge_bench.py): edge -> worker against nameko -> worker
    (sequential p50), edge ListRegister throughput against a bare nameko echo at 1, 8 and 32
    concurrent callers;
  - certificates (tests/bench/certificates_bench.py), at each registry size of BENCH_SCALES
    (default 1000,10000,100000; e.g. BENCH_SCALES=1000,10000 for a quicker run): verification
    against the edge's bare round trip, the first page of ListCertificates, the worker's CPU
    per verification, worker and edge RSS; then issuing 10,000 against inserting them, and
    reads during a 10,000-row batch against the same reads on the idle worker;
  - grading (tests/bench/grading_bench.py): ComputeGrades over 10,000 institutions x 58
    indicators, its scoring against the same arithmetic in plain numpy (goal <= 3x), the whole
    call (goal < 5 s), and another call's latency while it runs;
  - courses (tests/bench/courses_bench.py): the reuse check of a new 3,000-character course
    against 10,000 stored courses, against hashing the new course alone;
  - inspection (tests/bench/inspection_bench.py): a draw over 100,000 institutions and its
    verification against hashing the same ids once; the worker's other calls during a draw;
  - escrow (tests/bench/escrow_bench.py): 10,000 ledger transfers in batches through gRPC
    against inserting the same entry documents directly (goal at most 2x);
  - the ministry report (tests/bench/reporting_bench.py): events logged and projected against
    one insert per event; an edition generated against the pure fold; the worker's other
    calls during a generation;
  - the decision log (tests/bench/merkle_bench.py): 10,000 appends and 10,000 inclusion proofs
    against hashing the same leaves (no database).
BENCH_ONLY=edge, certificates, inspection, courses, grading, escrow, reporting or merkle runs one part
(several: BENCH_ONLY=edge,certificates).
The database is the local server as `make run` runs it (secantusdb, its own process, the
store on disk, each write journaled), started here and stopped at the end.
The results are written as JSON (BENCH_OUT, default .bench/bench-<UTC time>.json) so two runs
can be compared; the machine's load average is printed and kept with them.
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
# The benchmark's anonymous callers are one address: the per-address limit of public calls
# (PUBLIC_RATE_LIMIT) is off, the path is what is measured.
BENCH_EDGE_ENV = {"PUBLIC_RATE_LIMIT": "0"}


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
                        "met": goal_met(first["goal"], statistics.median(ratios),
                                        statistics.median(r["figure"] for r in same))})
    return summary


def goal_met(goal: str, ratio: float, figure: float | None = None):
    """A goal on the ratio ("<= 1.2") or, with a unit, on the figure itself ("<= 20 ms")."""
    if not goal.startswith(("<=", ">=")):
        return None
    words = goal[2:].split()
    value = ratio if len(words) == 1 else figure
    if value is None:
        return None
    return value <= float(words[0]) if goal.startswith("<=") else value >= float(words[0])


def print_rows(summary: list[dict]) -> None:
    print(f"{'row':<64}{'figure':>10}{'baseline':>10}  {'ratio (range)':<20}{'goal':<11}")
    for r in summary:
        met = goal_met(r["goal"], r["ratio"], r["figure"])
        met = {True: "met", False: "NOT MET", None: ""}[met]
        unit = r.get("unit", "")
        print(f"{r['row']:<64}{r['figure']:>10.2f}{r['baseline']:>10.2f}  "
              f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})".ljust(
                  64 + 10 + 10 + 2 + 20) + f"{r['goal']:<11}{met:<8} {unit}")


def database_pid() -> int | None:
    process = database.server().process
    return process.pid if process is not None else None


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
    plat = Platform(tmp)
    plat.edge_env = BENCH_EDGE_ENV
    plat.start()
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
            pids = edge_bench.process_pids(plat, nameko_echo.pid, database_pid())
            rounds.append(edge_bench.run_round(plat, echo_port, pids))
    finally:
        for proc in (grpc_echo, nameko_echo):
            proc.terminate()
            proc.wait(timeout=10)
        plat.stop()
    print()
    print_figures(rounds)
    print()
    split = edge_bench.cpu_split(rounds)
    edge_bench.print_cpu_split(split)
    print()
    summary = summarise([edge_bench.rows(r) for r in rounds])
    print_rows(summary)
    results["edge"] = {"rounds": rounds, "rows": summary, "cpu_split": split}


def certificates_rows(results: dict) -> None:
    from tests.bench import certificates_bench

    measured = certificates_bench.run(ROUNDS)
    for row in measured["rows"]:
        row["met"] = goal_met(row["goal"], row["ratio"], row["figure"])
    print()
    print_rows(measured["rows"])
    during = measured["rows"][-1]
    print(f"during the batches: {during['failed_during_batch']} reads failed, "
          f"{during['not_serving_during_batch']} health answers not SERVING; "
          f"{measured['stored_at_end']:,} certificates stored at the end")
    results["certificates"] = measured


def main() -> int:
    # The nameko clients' library chatter (e.g. py-amqp on closing channels) is not a figure.
    logging.basicConfig(level=logging.ERROR)
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "rounds": ROUNDS}
    # Every part's platform inherits this process's environment: the per-address limit of
    # anonymous public calls is off for all of them (see BENCH_EDGE_ENV), not only the edge's.
    os.environ.update(BENCH_EDGE_ENV)
    # BENCH_ONLY: the parts to run, e.g. "edge,certificates"; all when unset.
    only = {p.strip() for p in os.environ.get("BENCH_ONLY", "").split(",") if p.strip()}
    if not only or "merkle" in only:
        from tests.bench import merkle_bench

        results["merkle"] = merkle_bench.run(ROUNDS, summarise, print_rows)
    if only == {"merkle"}:
        print(f"\nresults: {write_results(results)}")
        return 0
    server = database.server(on_disk=True)
    print(f"database: secantusdb on {server.uri}, store on disk, writes journaled")
    failed = []
    try:
        for name, part in PARTS.items():
            if not only or name in only:
                try:
                    part(results)
                except Exception as exc:  # one part's failure keeps the others' figures
                    logging.getLogger("bench").exception("%s failed", name)
                    failed.append(name)
                    results.setdefault("failed", {})[name] = repr(exc)
    finally:
        database.stop_server()
    results["machine"]["load_average_after"] = os.getloadavg()
    print(f"\nresults: {write_results(results)} (load average before "
          f"{results['machine']['load_average'][0]:.2f}, after "
          f"{results['machine']['load_average_after'][0]:.2f} on {os.cpu_count()} cores)")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


def _inspection(results: dict) -> None:
    from tests.bench import inspection_bench
    inspection_bench.run(print)


def _courses(results: dict) -> None:
    from tests.bench import courses_bench
    results["courses"] = courses_bench.run(print)


def _grading(results: dict) -> None:
    from tests.bench import grading_bench
    grading_bench.run(print)


def _escrow(results: dict) -> None:
    from tests.bench import escrow_bench
    escrow_bench.run(print)


def _reporting(results: dict) -> None:
    from tests.bench import reporting_bench
    reporting_bench.run(print)


PARTS = {"edge": edge_rows, "certificates": certificates_rows, "inspection": _inspection,
         "courses": _courses, "grading": _grading, "escrow": _escrow, "reporting": _reporting}


if __name__ == "__main__":
    sys.exit(main())
