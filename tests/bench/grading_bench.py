"""Grading in `make bench`: one ComputeGrades run over 10,000 institutions x 58 indicators
(issue 11), as ratios and limits measured in one run:

  scoring in the worker / plain numpy - the worker's scoring stage of ComputeGrades (its
      vectorised arithmetic, bands, direct D, UNGRADED and explanations, in chunks of 1,000
      with a turn for other calls between them; the worker reports its time in the answer,
      `scoring_ms`), against the same arithmetic written plainly in numpy here, over the same
      numbers read from the same database: goal at most 3x;
  ComputeGrades via gRPC - the whole call through the edge and the bus, loading the inputs
      from the database and storing the preview: goal under 5 s;
  another call while it runs - GetIndicatorSystem's latency through the edge while
      ComputeGrades runs, against the same call when the worker is idle.

The inputs are written straight into grading's database in the shape its handlers write
(the models' own documents): 10,000 filed institutions, one in ten with platform facts, each
with a submitted self-assessment and one in five reviewed.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

INSTITUTIONS = 10_000
ROUNDS = 3
GOAL_RATIO = 3.0
GOAL_SECONDS = 5.0


def institution_id(i: int) -> str:
    from tests.support import uscc

    return uscc(100_000 + i)


def seed(db, year: int, rng) -> None:
    from services.grading import domain
    from services.grading.models import (
        GradingInstitution,
        SelfAssessmentDoc,
        pack_entries,
        pack_values,
    )
    from tests.grading_support import evidence

    system = domain.default_system()
    leaves = system.leaves
    kinds = ("FACT_KIND_SANCTION", "FACT_KIND_CERTIFICATE_INVALIDATION",
             "FACT_KIND_REFUND_COMPLAINT", "FACT_KIND_FILING_VIOLATION")
    institutions, assessments = [], []
    now = datetime.now(timezone.utc)
    for i in range(INSTITUTIONS):
        facts = []
        if i % 10 == 0:
            facts = [{"event_id": uuid.uuid4().hex, "kind": kinds[k % len(kinds)],
                      "on": f"{year}-0{1 + k}-15", "basis": "001 ch.6 art.3(5)",
                      "service": "bench"} for k in range(1 + i % 3)]
        if i % 997 == 0:
            facts.append({"event_id": uuid.uuid4().hex, "kind": "FACT_KIND_SANCTION",
                          "on": f"{year}-06-01", "basis": "001 ch.6 art.4(5)"})
        filed = f"{year - 3}-05-01" if i % 50 else f"{year}-04-01"  # 2 % UNGRADED
        institutions.append(GradingInstitution(
            institution_id=institution_id(i), district_code=f"4105{i % 9:02d}",
            filed_on=filed, status="ACTIVE", facts=facts).to_mongo().to_dict())
        declared = []
        for leaf in leaves:
            if leaf.kind == domain.POINTS:
                declared.append(int(rng.integers(leaf.max_centi // 2, leaf.max_centi + 1)))
            elif leaf.kind == domain.RATE:
                declared.append(int(rng.integers(5000, 10001)))
            else:
                declared.append(int(rng.integers(0, 3)))
        reviewed = [-1] * len(leaves)
        if i % 5 == 0:
            for c in rng.choice(len(leaves), 3, replace=False):
                reviewed[int(c)] = declared[int(c)] // 2
        entries = [{"indicator_id": leaf.id, "points_centi": v, "evidence": [evidence(leaf.id)]}
                   for leaf, v in zip(leaves, declared, strict=True)]
        assessments.append(SelfAssessmentDoc(
            assessment_id=f"{year}:{institution_id(i)}", year=year,
            institution_id=institution_id(i), system_id="default",
            state="ASSESSMENT_STATE_SUBMITTED", declared=pack_values(declared),
            reviewed=pack_values(reviewed), entries=pack_entries(entries),
            submitted_at=now).to_mongo().to_dict())
    db["institutions"].insert_many(institutions, ordered=False)
    db["self_assessments"].insert_many(assessments, ordered=False)


def baseline_seconds(db, year: int) -> float:
    """The same arithmetic in plain numpy over the same numbers (read here from the same
    database): values and sources, the facts over the platform leaves, each rule, totals,
    bands, direct D and UNGRADED, the top four and the what-if sets. Only the arithmetic is
    timed."""
    from services.grading import domain

    system = domain.default_system()
    rows = sorted(db["institutions"].find({}, {"filed_on": 1, "facts": 1}),
                  key=lambda r: r["_id"])
    found = {a["institution_id"]: a for a in db["self_assessments"].find(
        {"year": year}, {"institution_id": 1, "declared": 1, "reviewed": 1})}
    leaves = len(system.leaves)
    declared = np.frombuffer(b"".join(found[r["_id"]]["declared"] for r in rows),
                             dtype="<i4").astype(np.int64).reshape(-1, leaves)
    reviewed = np.frombuffer(b"".join(found[r["_id"]]["reviewed"] for r in rows),
                             dtype="<i4").astype(np.int64).reshape(-1, leaves)
    kinds = [leaf.platform_source for leaf in system.leaves]
    counts = np.zeros(declared.shape, dtype=np.int64)
    has_facts = np.zeros(declared.shape, dtype=bool)
    direct = np.zeros(len(rows), dtype=bool)
    for i, r in enumerate(rows):
        for fact in r.get("facts") or ():
            for c, kind in enumerate(kinds):
                if kind == fact["kind"]:
                    counts[i, c] += 1
                    has_facts[i, c] = True
            if fact.get("basis", "").startswith("001 ch.6 art.4(5)"):
                direct[i] = True
    ungraded = np.array([r["filed_on"] > f"{year}-01-01" for r in rows])
    mx = np.array([leaf.max_centi for leaf in system.leaves], dtype=np.int64)
    kind = np.array([domain.RULE_KINDS[leaf.kind] for leaf in system.leaves])
    per = np.array([leaf.per_occurrence_centi for leaf in system.leaves], dtype=np.int64)
    floor = np.array([leaf.floor_centi for leaf in system.leaves], dtype=np.int64)
    a, b, c = 9000, 7000, 4000

    started = time.perf_counter()
    values = np.where(reviewed >= 0, reviewed, np.maximum(declared, 0))
    values = np.where(has_facts, counts, values)
    scores = np.where(kind == 1, np.minimum(values, mx),
                      np.where(kind == 2, np.maximum(floor, mx - per * values),
                               (mx * values + 5000) // 10000))
    totals = scores.sum(axis=1)
    lost = mx - scores
    band = 1 + (totals < a) + (totals < b) + (totals < c)
    grade = np.where(ungraded, 5, np.where(direct, 4, band))
    top = np.argsort(-lost, axis=1, kind="stable")[:, :4]
    order = np.argsort(-lost, axis=1, kind="stable")
    gap = np.array([0, 0, a, b, c])[np.minimum(band, 4)] - totals
    reach = np.cumsum(np.take_along_axis(lost, order, axis=1), axis=1) >= gap[:, None]
    count = np.argmax(reach, axis=1) + 1
    spent = time.perf_counter() - started
    assert grade.shape == top.shape[:1] == count.shape
    return spent


def run(report) -> None:
    from grpc_health.v1 import health_pb2  # noqa: F401 (the platform's channel is ready)
    from vocreg.grading.v1 import grading_pb2, grading_pb2_grpc

    from tests.e2e.grpc_client import Client
    from tests.platform import Platform
    from tests.support import token

    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-grading-"))
    plat = Platform(tmp, services=("grading",)).start()
    try:
        year = datetime.now(timezone.utc).year - 1
        db = plat.db("grading")
        started = time.perf_counter()
        seed(db, year, np.random.default_rng(11))
        seeded = time.perf_counter() - started
        regulator = Client(grading_pb2_grpc.GradingServiceStub, grading_pb2, plat.channel,
                           metadata=(("authorization", f"Bearer {token('regulator')}"),))
        public = Client(grading_pb2_grpc.GradingServiceStub, grading_pb2, plat.channel)
        regulator.OpenGradingYear({"year": year, "system_id": "default",
                                   "self_assessment_working_days": 10})

        def probe_latencies(stop: threading.Event, into: list) -> None:
            while not stop.is_set():
                began = time.perf_counter()
                public.GetIndicatorSystem({"system_id": "default"}, timeout=30)
                into.append((time.perf_counter() - began) * 1000)

        idle: list = []
        for _ in range(30):
            began = time.perf_counter()
            public.GetIndicatorSystem({"system_id": "default"})
            idle.append((time.perf_counter() - began) * 1000)

        walls, scoring, loads, stores, busy = [], [], [], [], []
        for round_ in range(ROUNDS):
            stop = threading.Event()
            prober = threading.Thread(target=probe_latencies, args=(stop, busy))
            prober.start()
            began = time.perf_counter()
            answer = regulator.ComputeGrades({"year": year, "request_id": f"bench-{round_}"},
                                             timeout=120)
            walls.append(time.perf_counter() - began)
            stop.set()
            prober.join()
            assert answer["institutions"] == INSTITUTIONS, answer
            scoring.append(answer["scoring_ms"] / 1000)
            loads.append(answer["load_ms"] / 1000)
            stores.append(answer["store_ms"] / 1000)
        baseline = statistics.median(baseline_seconds(db, year) for _ in range(ROUNDS))
        wall, score = statistics.median(walls), statistics.median(scoring)
        counts = {c["grade"].removeprefix("GRADE_"): c["count"] for c in answer["counts"]}

        report("")
        report(f"grading: ComputeGrades over {INSTITUTIONS:,} institutions x 58 indicators "
               f"(median of {ROUNDS}; seeded in {seeded:.1f} s; grades {counts})")
        ratio = score / baseline
        report(f"scoring in the worker {score * 1000:.1f} ms / plain numpy {baseline * 1000:.1f}"
               f" ms: {ratio:.2f}x (goal <= {GOAL_RATIO:g}x) "
               f"{'met' if ratio <= GOAL_RATIO else 'NOT MET'}")
        report(f"ComputeGrades via gRPC {wall:.2f} s (goal < {GOAL_SECONDS:g} s) "
               f"{'met' if wall < GOAL_SECONDS else 'NOT MET'}: loading the inputs "
               f"{statistics.median(loads):.2f} s, scoring {score:.3f} s, storing the preview "
               f"{statistics.median(stores):.2f} s")
        report(f"GetIndicatorSystem via edge while ComputeGrades runs: p50 "
               f"{statistics.median(busy):.1f} ms, max {max(busy):.1f} ms ({len(busy)} calls); "
               f"idle p50 {statistics.median(idle):.1f} ms")
        report(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    finally:
        plat.stop()


if __name__ == "__main__":
    from tests import database

    database.server(on_disk=True)
    try:
        run(print)
    finally:
        database.stop_server()
