"""The ministry report in `make bench`, as ratios measured in one run:

  log and project / one insert per event - N events of every kind published on the broker
      until the worker has logged each (its own write) and projected it into the daily
      figures, against inserting N documents one at a time into a database on the same server
      with pymongo (the least any consumer that keeps the events must do);
  GenerateEdition via gRPC / the pure fold - the edition of a cut-off over the N events (the
      log read back, the table, its hashes and its three files rendered) against the domain's
      `figures.table` over the same events in this process;
  the worker's other calls during a generation - GetReportDefinition p50 while editions are
      generated, against idle (the fold and the renderers yield to the hub).

    python -m tests.bench.reporting_bench
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

N = 1_000
KINDS = (
    ("inspection", "InspectionCompleted"), ("inspection", "FindingRecorded"),
    ("escrow", "ComplaintResolved"), ("certificates", "CertificatesInvalidated"),
    ("inspection", "CaseOutcomeRecorded"), ("courses", "CourseDelisted"),
)


def events(n: int = N) -> list[tuple]:
    """n events over July and August 2026, of every kind the report counts."""
    from tests import reporting_events as R

    found = []
    for i in range(n):
        day = f"2026-{7 + (i * 62 // n) // 31:02d}-{(i * 62 // n) % 31 + 1:02d}"
        kind = KINDS[i % len(KINDS)]
        if kind[1] == "InspectionCompleted":
            found.append(R.completed(f"b{i}", day, "TRAINING_INSTITUTION", f"T{i % 400}",
                                     "DAILY"))
        elif kind[1] == "FindingRecorded":
            found.append(R.finding(f"b{i}", day))
        elif kind[1] == "CaseOutcomeRecorded":
            found.append(R.outcome(f"b{i}", day, "SUBSIDY_RECOVERED", 1000 + i))
        elif kind[1] == "ComplaintResolved":
            found.append(R.event("escrow", "ComplaintResolved", f"esc-b{i}", day,
                                 complaint_id=f"c{i}", outcome="COMPLAINT_OUTCOME_REFUNDED",
                                 refunded_fen=str(100 * i), resolved_on=day))
        elif kind[1] == "CertificatesInvalidated":
            found.append(R.event("certificates", "CertificatesInvalidated", f"crt-b{i}", day,
                                 operation_id=f"op{i}", effective_on=day, total=3))
        else:
            found.append(R.event("courses", "CourseDelisted", f"crs-b{i}", day,
                                 course_id=f"course{i}", delisted_on=day))
    return found


def direct_inserts(bodies: list[dict]) -> float:
    from tests import database

    name = f"bench_report_{uuid.uuid4().hex[:8]}"
    collection = database.client()[name]["events"]
    try:
        started = time.perf_counter()
        for i, body in enumerate(bodies, start=1):
            collection.insert_one({"_id": i, "event_id": body["meta"]["event_id"], "body": body})
        return time.perf_counter() - started
    finally:
        database.client().drop_database(name)


def run(report) -> None:
    from kombu import Connection, Exchange
    from vocreg.reporting.v1 import reporting_pb2, reporting_pb2_grpc

    from services.common.entrypoints import parse_event
    from services.common.workdays import WorkdayCalendar
    from services.reporting.domain import figures
    from services.reporting.domain import schedule as sched
    from tests import reporting_events as R
    from tests.e2e.grpc_client import Client
    from tests.platform import Platform, eventually

    data = events()
    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-report-"))
    plat = Platform(tmp, services=("reporting",), clock=True).start()
    try:
        plat.set_clock(R.shanghai_noon("2026-09-01"))
        client = Client(reporting_pb2_grpc.ReportingServiceStub, reporting_pb2, plat.channel,
                        "regulator")
        started = time.perf_counter()
        with Connection(plat.amqp_uri) as conn:
            producer = conn.Producer()
            for source, event_type, body in data:
                exchange = Exchange(f"{source}.events", type="topic", durable=True)
                producer.publish(body, exchange=exchange, routing_key=event_type,
                                 serializer="json", delivery_mode=2, declare=[exchange])

        def projected():
            answer = client.GetDailyFigures({"from_day": "2026-07-01", "to_day": "2026-08-31"},
                                            timeout=60)
            return int(answer.get("projected_position", 0)) >= N
        eventually(projected, timeout=600, interval=1.0, what=f"{N} events projected")
        ingest = time.perf_counter() - started
        baseline = direct_inserts([body for _, _, body in data])

        logged = []
        for i, (source, event_type, body) in enumerate(data, start=1):
            from google.protobuf import json_format

            message = parse_event(source, event_type, body)
            logged.append(figures.Logged(i, message.meta.event_id, f"{source}.{event_type}",
                                         json_format.MessageToDict(
                                             message, preserving_proto_field_name=True)))
        periods = sched.periods(sched.YearSchedule.default(2026), WorkdayCalendar())
        fold = min(_timed(lambda p=p: figures.table(logged, p, N)) for p in periods[:4])

        idle = _latencies(client, 40)
        during: list[float] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                during.extend(_latencies(client, 1))
        prober = threading.Thread(target=probe)
        prober.start()
        generate = []
        for p in periods[:4]:
            generate.append(_timed(lambda p=p: client.GenerateEdition(
                {"cut_off": p.cut_off.isoformat()}, timeout=120)))
        stop.set()
        prober.join()
    finally:
        plat.stop()
    report("")
    report(f"reporting: {N} events logged and projected {ingest:.2f} s ({N / ingest:.0f}/s), "
           f"{N} single inserts {baseline:.2f} s")
    report(f"log and project / one insert per event: {ingest / baseline:.2f}x")
    report(f"GenerateEdition over {N} events via gRPC {statistics.median(generate):.3f} s "
           f"(median of {len(generate)}), the pure fold {fold:.3f} s: "
           f"{statistics.median(generate) / fold:.1f}x")
    report(f"GetReportDefinition p50 during generation {statistics.median(during) * 1000:.1f} ms "
           f"(worst {max(during) * 1000:.0f} ms, {len(during)} calls), idle "
           f"{statistics.median(idle) * 1000:.1f} ms")


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _latencies(client, n: int) -> list[float]:
    return [_timed(lambda: client.GetReportDefinition({})) for _ in range(n)]


if __name__ == "__main__":
    from tests import database

    database.server(on_disk=True)
    try:
        run(print)
    finally:
        database.stop_server()
