"""Certificates in `make bench`, as ratios measured in one run (absolute times drift here):

  issue 10k via gRPC / direct insert - IssueCertificates with 10,000 rows through the edge,
      the bus and the worker (checks, filing questions, numbering, events), against inserting
      the same 10,000 documents straight into a database on the same server with mongoengine;
  verify via edge / edge bare round trip - the public VerifyCertificate through the edge,
      against the edge answering a health check by itself; and the database's own share,
      the same indexed lookup by number straight over pymongo.

Filing is a stand-in (BenchFiling below, run with `nameko run`): the benchmark measures the
registry, not filing's rules, and needs no filed institution.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from nameko.rpc import rpc

from services.certificates import domain

INSTITUTION_N = 1
OCCUPATION = "4-10-01-02"
ROWS = 10_000
ISSUE_ROUNDS = 3


class BenchFiling:
    """Answers the registry's two questions: filed, active, and in scope."""

    name = "filing"

    @rpc
    def GetInstitution(self, request):
        return {"institution": {"institution_id": request["institution_id"],
                                "name": "安阳市基准职业技能培训评价中心",
                                "filing_code": "S000041000001",
                                "status": "INSTITUTION_STATUS_ACTIVE"}}

    @rpc
    def CheckEvaluationRight(self, request):
        return {"allowed": True, "reason": ""}


def holder(i: int) -> str:
    first17 = f"41050219{80 + (i // 10_000) % 20:02d}01{1 + (i // 1000) % 28:02d}{i % 1000:03d}"
    return first17 + domain.id_check_character(first17)


def rows(n: int) -> list[dict]:
    return [{"row_ref": str(i), "holder_name": "张三丰", "holder_id_number": holder(i),
             "occupation_code": OCCUPATION, "occupation_name": "育婴员", "skill_level": 4}
            for i in range(n)]


def direct_insert_seconds(batch_rows: list[dict]) -> float:
    """The same documents, inserted with mongoengine into a fresh database on the same server
    (with the same indexes, unique certificate number included)."""
    import mongoengine

    from services.certificates.models import ALIAS, Certificate
    from services.common.mongo import connect, disconnect, ensure_indexes
    from tests import database

    connect(ALIAS, database.server().database_uri(f"bench_{uuid.uuid4().hex[:8]}"))
    ensure_indexes(ALIAS)
    try:
        today = datetime.now(timezone.utc).date()
        started = time.perf_counter()
        docs = [Certificate(
            key=domain.issue_key("X", "S", r["holder_id_number"], r["occupation_code"], 4),
            certificate_number=domain.certificate_number("S000041000001", today, 4, i + 1),
            institution_id="X", filing_code="S000041000001", issuer_name="bench",
            exam_session_id="S", batch_id="b", holder_name=r["holder_name"],
            holder_id_number=r["holder_id_number"], occupation_code=r["occupation_code"],
            occupation_name=r["occupation_name"], skill_level=4,
            assessment_date=today.isoformat(), issued_on=today.isoformat(),
            status=domain.VALID) for i, r in enumerate(batch_rows)]
        Certificate.objects.insert(docs, load_bulk=False)
        return time.perf_counter() - started
    finally:
        mongoengine.connection.get_db(ALIAS).client.drop_database(
            mongoengine.connection.get_db(ALIAS).name)
        disconnect(ALIAS)


def run(report) -> None:
    from google.protobuf import json_format
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from vocreg.certificates.v1 import certificates_pb2, certificates_pb2_grpc

    from tests.bench.edge_bench import sequential as measure
    from tests.e2e.grpc_client import bearer
    from tests.platform import ROOT, Platform

    tmp = Path(tempfile.mkdtemp(prefix="vocreg-bench-certificates-"))
    plat = Platform(tmp, services=("certificates",)).start()
    filing = subprocess.Popen(
        [sys.executable, "-m", "services.common.nameko_cli", "run", "--broker", plat.amqp_uri,
         "tests.bench.certificates_bench:BenchFiling"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stub = certificates_pb2_grpc.CertificateRegistryStub(plat.channel)
        institution = bearer("institution", INSTITUTION_N)
        today = datetime.now(timezone.utc).date().isoformat()
        batch_rows = rows(ROWS)
        request = json_format.ParseDict(
            {"exam_session_id": "warm-up", "assessment_date": today, "rows": batch_rows[:10]},
            certificates_pb2.IssueCertificatesRequest())
        deadline = time.monotonic() + 30
        while True:  # the stand-in filing takes a moment to join the bus
            try:
                stub.IssueCertificates(request, metadata=institution, timeout=10)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        issue_times = []
        for round_ in range(ISSUE_ROUNDS):
            request = json_format.ParseDict(
                {"exam_session_id": f"bench-{round_}", "assessment_date": today,
                 "rows": batch_rows}, certificates_pb2.IssueCertificatesRequest())
            started = time.perf_counter()
            answer = stub.IssueCertificates(request, metadata=institution, timeout=120)
            issue_times.append(time.perf_counter() - started)
            assert answer.issued_count == ROWS, answer.rejected_count
        direct_times = [direct_insert_seconds(batch_rows) for _ in range(ISSUE_ROUNDS)]
        issue, direct = statistics.median(issue_times), statistics.median(direct_times)

        number = answer.results[0].certificate_number
        verify_request = certificates_pb2.VerifyCertificateRequest(
            certificate_number=number, holder_name="张三丰")
        health = health_pb2_grpc.HealthStub(plat.channel)
        bare = measure("edge bare (health)", lambda: health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5))
        verify = measure("verify via edge", lambda: stub.VerifyCertificate(
            verify_request, timeout=5))
        # The database's share: the same indexed lookup straight over pymongo.
        certificates = plat.db("certificates").certificates
        lookup = measure("lookup in the database", lambda: certificates.find_one(
            {"certificate_number": number}))

        report("")
        report(f"certificates: issue {ROWS} via gRPC {issue:.2f} s (median of {ISSUE_ROUNDS}), "
               f"direct mongoengine insert {direct:.2f} s")
        report(f"issue {ROWS} via gRPC / direct insert: {issue / direct:.2f}x")
        report(f"verify via edge p50 {verify['p50_ms']:.2f} ms ({verify['calls_per_s']:.0f}/s), "
               f"edge bare round trip p50 {bare['p50_ms']:.2f} ms ({bare['calls_per_s']:.0f}/s)")
        report(f"verify via edge / edge bare round trip (p50): "
               f"{verify['p50_ms'] / bare['p50_ms']:.2f}x")
        report(f"of which the indexed lookup by number in the database p50 "
               f"{lookup['p50_ms']:.2f} ms (over pymongo, among "
               f"{certificates.count_documents({}):,} certificates)")
    finally:
        filing.terminate()
        filing.wait(timeout=10)
        plat.stop()


if __name__ == "__main__":
    from tests import database

    database.server(on_disk=True)
    try:
        run(print)
    finally:
        database.stop_server()
