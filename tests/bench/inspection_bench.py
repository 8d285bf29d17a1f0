"""Inspection in `make bench`, against baselines measured in the same run:

  draw 100k / hashing the ids once - the verifiable draw (domain/draw.py) over 100,000
      institutions in five strata and 1,000 inspectors with 5,000 conflicts: the pool's
      commitment (canonical JSON, SHA-256), then every ticket, the strata's smallest tickets,
      the top-up and every team; against SHA-256 over the same 101,000 ids once. Goal: under
      1 s;
  verify 100k / hashing the ids once - re-running the published record (what VerifyDraw and
      services/inspection/verify_draw.py do). Goal: under 1 s;
  the worker's other calls during a draw - GetPlan's p50 and worst latency while CommitDraw
      and RevealDraw run over 2,000 filed institutions in the worker (it yields to the
      eventlet hub in chunks), against GetPlan on the idle worker.
"""
from __future__ import annotations

import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

from services.inspection.domain import draw as drawing
from tests.support import uscc

INSTITUTIONS = 100_000
INSPECTORS = 1_000
CONFLICTS_EACH = 5
ROUNDS = 3
WORKER_INSTITUTIONS = 2_000
WORKER_INSPECTORS = 100
GRADES = ("A", "B", "C", "D", "UNGRADED")
RATIOS = {"A": 100, "B": 200, "C": 1000, "D": 3000, "UNGRADED": 1000}


def inputs():
    ids = [uscc(i) for i in range(INSTITUTIONS)]
    strata = {g: [] for g in GRADES}
    for i, institution_id in enumerate(ids):
        strata[GRADES[i % 5]].append(institution_id)
    inspectors = [f"INSP-{j:04d}" for j in range(INSPECTORS)]
    conflicts = [(inspectors[j], ids[(j * 97 + k * 1013) % INSTITUTIONS], "DECLARED_RELATION")
                 for j in range(INSPECTORS) for k in range(CONFLICTS_EACH)]
    return ids, strata, inspectors, conflicts


def one_draw(strata, inspectors, conflicts) -> tuple[float, float, dict]:
    started = time.perf_counter()
    pool = drawing.build_pool(
        draw_id="bench", plan_id="bench", round_=1, seed_source="福彩3D 2026年第001期开奖号码",
        strata={g: (RATIOS[g], ids) for g, ids in strata.items()},
        minimum_count=INSTITUTIONS * 5 // 100, team_size=2, inspectors=inspectors,
        conflicts=conflicts, excluded_institutions=[], excluded_inspectors=[])
    committed = drawing.pool_hash(pool)
    result = drawing.run(pool, "3 8 5", pause=lambda _s: None)
    drawn = time.perf_counter() - started
    record = drawing.record(pool, committed, "3 8 5", result, [])
    started = time.perf_counter()
    problems = drawing.verify(record, pause=lambda _s: None)
    verified = time.perf_counter() - started
    assert problems == [], problems
    return drawn, verified, result


def baseline(ids, inspectors) -> float:
    started = time.perf_counter()
    for ident in ids + inspectors:
        hashlib.sha256(ident.encode()).digest()
    return time.perf_counter() - started


def domain_rows(report) -> None:
    ids, strata, inspectors, conflicts = inputs()
    draws, verifies, bases = [], [], []
    for _ in range(ROUNDS):  # alternate, so the machine's drift falls on both
        bases.append(baseline(ids, inspectors))
        drawn, verified, result = one_draw(strata, inspectors, conflicts)
        draws.append(drawn)
        verifies.append(verified)
    d, v, b = (statistics.median(x) for x in (draws, verifies, bases))
    report("")
    report(f"inspection: draw over {INSTITUTIONS:,} institutions and {INSPECTORS:,} inspectors "
           f"({INSPECTORS * CONFLICTS_EACH:,} conflicts, {len(result['drawn']):,} drawn with "
           f"their teams) {d:.3f} s, verification {v:.3f} s, hashing the "
           f"{INSTITUTIONS + INSPECTORS:,} ids once {b:.3f} s (medians of {ROUNDS})")
    report(f"draw 100k / hashing the ids once: {d / b:.2f}x   goal under 1 s: "
           f"{'met' if d < 1 else 'NOT MET'} ({min(draws):.3f}-{max(draws):.3f} s)")
    report(f"verify 100k / hashing the ids once: {v / b:.2f}x   goal under 1 s: "
           f"{'met' if v < 1 else 'NOT MET'} ({min(verifies):.3f}-{max(verifies):.3f} s)")


def worker_rows(report) -> None:
    """GetPlan's latency while the worker draws over 10,000 institutions, against idle."""
    from google.protobuf import json_format
    from vocreg.inspection.v1 import inspection_pb2, inspection_pb2_grpc

    from tests.e2e.grpc_client import bearer
    from tests.platform import Platform

    plat = Platform(Path(tempfile.mkdtemp(prefix="vocreg-bench-inspection-")),
                    services=("inspection",)).start()
    try:
        plat.db("inspection").institutions.insert_many([
            {"_id": uscc(i), "status": "INSTITUTION_STATUS_ACTIVE", "status_sequence": 1,
             "grade": GRADES[i % 5], "monthly_issued": {}} for i in range(WORKER_INSTITUTIONS)])
        stub = inspection_pb2_grpc.InspectionServiceStub(plat.channel)
        regulator = bearer("regulator")

        def call(method, request, timeout=120):
            message = json_format.ParseDict(request, getattr(inspection_pb2,
                                                             f"{method}Request")())
            answer = getattr(stub, method)(message, metadata=regulator, timeout=timeout)
            return json_format.MessageToDict(answer, preserving_proto_field_name=True)

        for j in range(WORKER_INSPECTORS):
            call("RegisterInspector", {
                "request_id": f"b-{j}", "inspector_id": f"B-{j}", "name": "检查员",
                "employer_id": uscc(900_000 + j), "employer_name": "中心", "region": "410500"})
        today = time.strftime("%Y-%m-%d", time.localtime())
        year = int(today[:4])
        plan_id = call("CreatePlan", {
            "request_id": "bench-plan", "year": year, "title": "基准", "content": "基准",
            "kinds": ["INSPECTION_KIND_DAILY"],
            "rounds": [{"round": 1, "half": 1, "window_from": f"{year}-01-01",
                        "window_to": f"{year}-06-30"},
                       {"round": 2, "half": 2, "window_from": f"{year}-07-01",
                        "window_to": f"{year}-12-31"}]})["plan"]["plan_id"]

        def get_plan():
            started = time.perf_counter()
            call("GetPlan", {"plan_id": plan_id}, timeout=30)
            return (time.perf_counter() - started) * 1000

        idle = [get_plan() for _ in range(200)]
        busy: list[float] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                busy.append(get_plan())

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            started = time.perf_counter()
            draw = call("CommitDraw", {"request_id": "bench-draw", "plan_id": plan_id,
                                       "round": 1, "seed_source": "福彩3D 基准期开奖号码",
                                       "seed_available_on": today})["draw"]
            commit_s = time.perf_counter() - started
            started = time.perf_counter()
            revealed = call("RevealDraw", {"draw_id": draw["summary"]["draw_id"],
                                           "seed_value": "3 8 5"})["draw"]
            reveal_s = time.perf_counter() - started
        finally:
            stop.set()
            prober.join()
        idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
        report(f"inspection worker, {WORKER_INSTITUTIONS:,} filed institutions: CommitDraw "
               f"{commit_s:.2f} s, RevealDraw {reveal_s:.2f} s ({len(revealed['drawn']):,} "
               f"cases opened)")
        report(f"GetPlan during the draw / idle (p50): {busy_p50 / idle_p50:.2f}x "
               f"({busy_p50:.1f} ms against {idle_p50:.1f} ms; worst during {max(busy):.0f} ms, "
               f"{len(busy)} calls answered meanwhile)")
    finally:
        plat.stop()


def run(report) -> None:
    domain_rows(report)
    worker_rows(report)


if __name__ == "__main__":
    from tests import database

    database.server(on_disk=True)
    try:
        run(print)
    finally:
        database.stop_server()
