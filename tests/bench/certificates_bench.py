"""Certificates in `make bench` (issue 18 and issue 9 item 6), each row a figure against a
baseline measured in the same run, on the real database server (secantusdb, its own process,
the store on disk, writes journaled):

  at each scale of BENCH_SCALES (default 1,000, 10,000 and 100,000 certificates stored):
    verify p50            VerifyCertificate through the edge against the edge's bare round trip
                          (a health check the edge answers itself), alternating slices; the
                          edge answers verification itself from the registry's database, off
                          the bus (services/common/edge_reads.py), so this is the edge's own
                          work plus one indexed lookup;
    list first page p50   ListCertificates (the regulator's unfiltered, sorted list) against
                          the same query straight over pymongo (the database server's share);
                          its goal is absolute (<= 20 ms) and flat with the registry's size;
    CPU / verify          the CPU time (user + system) per verification of the process that
                          answers it, the edge, against the edge's CPU per bare round trip;
                          for context the worker's CPU per verification (about 0: the call
                          no longer reaches it) against its CPU per `health` RPC over nameko;
    RSS                   worker and edge resident memory against the same at the first scale;
  then, at the largest scale:
    issue 10k             IssueCertificates with 10,000 rows through the edge against inserting
                          the same documents with mongoengine into a fresh database on the same
                          server, alternating;
    reads during a batch  p99 of concurrent reads (GetCertificate, VerifyCertificate, the
                          certificates health check), three callers, while a 10,000-row batch
                          runs, against the same reads on the idle worker, alternating; calls
                          that failed and health answers other than SERVING are counted.

Filing is a stand-in (BenchFiling below, run with `nameko run`): the benchmark measures the
registry, not filing's rules, and needs no filed institution.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from nameko.rpc import rpc

from services.certificates import domain

INSTITUTION_N = 1
OCCUPATION = "4-10-01-02"
ROWS = 10_000
SCALES = (1_000, 10_000, 100_000)
VERIFY_CALLS = 300
CPU_CALLS = 400
READERS = 3
READ_NAMES = ("GetCertificate", "VerifyCertificate", "health")
PAGE_SIZE = 20  # services/common/paging.py DEFAULT_PAGE_SIZE: what an empty request gets
LIST_SECONDS = 4.0  # the time one scale's list figure may take (a slow list gets fewer calls)


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


def scales() -> list[int]:
    """BENCH_SCALES, e.g. "1000,10000" for a quick run; default 1k, 10k, 100k."""
    given = os.environ.get("BENCH_SCALES")
    return sorted({int(s) for s in given.split(",") if s.strip()}) if given else list(SCALES)


# --- a process as the kernel sees it ---------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_per_call(pid: int, call, calls: int = CPU_CALLS) -> float:
    """Milliseconds of the process's CPU per call (calls made one at a time)."""
    for _ in range(20):
        call()
    before = cpu_seconds(pid)
    for _ in range(calls):
        call()
    return (cpu_seconds(pid) - before) * 1000 / calls


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


def row(name: str, figure: float, baseline: float, unit: str, goal: str, ratios=None,
        **extra) -> dict:
    """A row as run.py prints it: the ratio is the median of the rounds' own ratios."""
    ratios = ratios or [figure / baseline]
    return {"row": name, "figure": figure, "baseline": baseline, "unit": unit, "goal": goal,
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "rounds": len(ratios), **extra}


def p99(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[max(0, int(len(samples) * 0.99) - 1)] * 1000 if samples else float("nan")


class Readers:
    """READERS threads, each looping over the reads, until stopped: their latencies, the calls
    that failed (by status code) and the answers that said False (health not SERVING)."""

    def __init__(self, reads: list):
        self.reads = reads
        self.samples: list[float] = []
        self.by_read: list[list[float]] = [[] for _ in reads]
        self.failed: dict[str, int] = {}
        self.not_serving = 0
        self.stop = threading.Event()

    def _loop(self, offset: int) -> None:
        import grpc

        i = offset
        while not self.stop.is_set():
            which = i % len(self.reads)
            read = self.reads[which]
            i += 1
            t0 = time.perf_counter()
            try:
                fine = read()
            except grpc.RpcError as exc:
                code = exc.code().name
                self.failed[code] = self.failed.get(code, 0) + 1
                continue
            self.samples.append(time.perf_counter() - t0)
            self.by_read[which].append(self.samples[-1])
            if fine is False:
                self.not_serving += 1

    def __enter__(self):
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                        for i in range(READERS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


class Registry:
    """The platform under test: the certificates worker and the edge, the stand-in filing."""

    def __init__(self):
        from vocreg.certificates.v1 import certificates_pb2, certificates_pb2_grpc

        from tests.e2e.grpc_client import bearer
        from tests.platform import ROOT, Platform

        self.pb2 = certificates_pb2
        from tests.bench.run import BENCH_EDGE_ENV

        self.plat = Platform(Path(tempfile.mkdtemp(prefix="vocreg-bench-certificates-")),
                             services=("certificates",))
        self.plat.edge_env = BENCH_EDGE_ENV
        self.plat.start()
        self.filing = subprocess.Popen(
            [sys.executable, "-m", "services.common.nameko_cli", "run", "--broker",
             self.plat.amqp_uri, "tests.bench.certificates_bench:BenchFiling"], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stub = certificates_pb2_grpc.CertificateRegistryStub(self.plat.channel)
        self.institution = bearer("institution", INSTITUTION_N)
        self.regulator = bearer("regulator")
        self.today = datetime.now(timezone.utc).date().isoformat()
        self.rows = rows(ROWS)
        self.stored = 0
        self.sessions = 0
        self.worker_pid = self.plat.procs[self.plat.worker_key("certificates")].pid
        self.edge_pid = self.plat.procs["edge"].pid
        deadline = time.monotonic() + 30
        while True:  # the stand-in filing takes a moment to join the bus
            try:
                self.number = self.issue(10).results[0].certificate_number
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def issue(self, n: int = ROWS):
        from google.protobuf import json_format

        self.sessions += 1
        request = json_format.ParseDict(
            {"exam_session_id": f"bench-{self.sessions}", "assessment_date": self.today,
             "rows": self.rows[:n]}, self.pb2.IssueCertificatesRequest())
        answer = self.stub.IssueCertificates(request, metadata=self.institution, timeout=300)
        assert answer.issued_count == n, (answer.issued_count, answer.rejected_count)
        self.stored += n
        return answer

    def fill(self, size: int) -> None:
        while self.stored < size:
            self.issue(min(ROWS, size - self.stored))

    def close(self) -> None:
        self.filing.terminate()
        self.filing.wait(timeout=10)
        self.plat.stop()


def measure_scale(reg: Registry, scale: int, rounds: int, cluster) -> dict:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.bench.edge_bench import interleaved, sequential

    health = health_pb2_grpc.HealthStub(reg.plat.channel)
    verify_request = reg.pb2.VerifyCertificateRequest(certificate_number=reg.number,
                                                      holder_name="张三丰")

    def verify():
        return reg.stub.VerifyCertificate(verify_request, timeout=10)

    def bare():
        return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)

    verify_rounds = [interleaved({"verify": verify, "edge bare": bare}, VERIFY_CALLS)
                     for _ in range(rounds)]

    list_request = reg.pb2.ListCertificatesRequest()
    certificates = reg.plat.db("certificates").certificates

    def list_page():
        return reg.stub.ListCertificates(list_request, metadata=reg.regulator, timeout=120)

    def list_direct():
        return list(certificates.find({}).sort("certificate_number", 1).limit(PAGE_SIZE + 1))

    started = time.perf_counter()
    list_page()
    calls = max(2, min(30, int(LIST_SECONDS / 2 / max(time.perf_counter() - started, 1e-3))))
    list_rounds = [interleaved({"list": list_page, "direct": list_direct}, calls, slices=2,
                               warmup=1) for _ in range(rounds)]

    # Context for the floors: a page's own index range (what the first page would cost on a
    # server that stops its index walk at the limit), and a call over the bus to the worker
    # with one database round trip (nameko -> worker health), what any verification pays.
    first_page = list_direct()
    page_range = {"certificate_number": {"$gte": first_page[0]["certificate_number"],
                                         "$lte": first_page[-1]["certificate_number"]}}
    bounded = sequential("bounded", lambda: list(certificates.find(page_range).sort(
        "certificate_number", 1).limit(PAGE_SIZE + 1)), 100)
    bus = sequential("bus", lambda: cluster.certificates.health(), 200)

    # The process that answers verification (the edge), and the worker's share for context.
    cpu_edge_verify = [cpu_per_call(reg.edge_pid, verify) for _ in range(rounds)]
    cpu_edge_bare = [cpu_per_call(reg.edge_pid, bare) for _ in range(rounds)]
    cpu_verify = [cpu_per_call(reg.worker_pid, verify) for _ in range(rounds)]
    cpu_health = [cpu_per_call(reg.worker_pid, lambda: cluster.certificates.health())
                  for _ in range(rounds)]
    return {"scale": scale, "verify": verify_rounds, "list": list_rounds,
            "cpu_verify_ms": cpu_verify, "cpu_health_ms": cpu_health,
            "edge_cpu_per_verify_ms": cpu_edge_verify, "edge_cpu_per_bare_ms": cpu_edge_bare,
            "page_range_p50_ms": bounded["p50_ms"], "bus_health_p50_ms": bus["p50_ms"],
            "rss_worker_mib": rss_mib(reg.worker_pid), "rss_edge_mib": rss_mib(reg.edge_pid),
            "lookup_p50_ms": sequential("lookup", lambda: certificates.find_one(
                {"certificate_number": reg.number}), 200)["p50_ms"]}


def reads_during_batches(reg: Registry, rounds: int) -> list[dict]:
    """Alternating: the reads on the idle worker for as long as the last batch took, then the
    same reads while a 10,000-row batch runs."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.common.spec import spec

    health = health_pb2_grpc.HealthStub(reg.plat.channel)
    service = spec("certificates").proto
    get = reg.pb2.GetCertificateRequest(certificate_number=reg.number)
    verify = reg.pb2.VerifyCertificateRequest(certificate_number=reg.number, holder_name="张三丰")
    reads = [lambda: reg.stub.GetCertificate(get, metadata=reg.regulator, timeout=10),
             lambda: reg.stub.VerifyCertificate(verify, timeout=10),
             lambda: health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
             .status == health_pb2.HealthCheckResponse.SERVING]
    out, window = [], 3.0
    for _ in range(rounds):
        with Readers(reads) as idle:
            time.sleep(window)
        with Readers(reads) as busy:
            time.sleep(0.2)
            started = time.perf_counter()
            reg.issue()
            window = time.perf_counter() - started
        out.append({"idle_p99_ms": p99(idle.samples), "batch_p99_ms": p99(busy.samples),
                    "p99_ms_by_read": {name: {"idle": p99(i), "batch": p99(b)} for name, i, b
                                       in zip(READ_NAMES, idle.by_read, busy.by_read,
                                              strict=True)},
                    "idle_calls": len(idle.samples), "batch_calls": len(busy.samples),
                    "batch_seconds": window, "failed_during_batch": busy.failed,
                    "failed_idle": idle.failed, "not_serving_during_batch": busy.not_serving})
    return out


def issue_rounds(reg: Registry, rounds: int) -> list[dict]:
    """Alternating: a 10,000-row batch through the edge, the same documents inserted directly."""
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        reg.issue()
        issued = time.perf_counter() - started
        out.append({"issue_s": issued, "direct_s": direct_insert_seconds(reg.rows)})
    return out


def rows_of(results: dict) -> list[dict]:
    """The goal rows from the measured figures."""
    out = []
    for at in results["scales"]:
        n = f"{at['scale']:,}"
        ratios = [r["verify"]["p50_ms"] / r["edge bare"]["p50_ms"] for r in at["verify"]]
        out.append(row(f"VerifyCertificate p50 / edge bare round trip, {n} stored",
                       statistics.median(r["verify"]["p50_ms"] for r in at["verify"]),
                       statistics.median(r["edge bare"]["p50_ms"] for r in at["verify"]),
                       "ms", "<= 3", ratios))
        verify = statistics.median(r["verify"]["p50_ms"] for r in at["verify"])
        out.append(row(f"  (context) VerifyCertificate p50 / nameko->worker health p50, {n}",
                       verify, at["bus_health_p50_ms"], "ms", "(context)"))
        # The floor of the row above: the edge's bare round trip plus the same lookup sent
        # straight to the server (what the database alone costs the answer).
        floor = (statistics.median(r["edge bare"]["p50_ms"] for r in at["verify"])
                 + at["lookup_p50_ms"])
        out.append(row(f"  (context) VerifyCertificate p50 / bare round trip + lookup, {n}",
                       verify, floor, "ms", "(context)"))
        ratios = [r["list"]["p50_ms"] / r["direct"]["p50_ms"] for r in at["list"]]
        out.append(row(f"ListCertificates 1st page / same query on server, {n} stored",
                       statistics.median(r["list"]["p50_ms"] for r in at["list"]),
                       statistics.median(r["direct"]["p50_ms"] for r in at["list"]),
                       "ms", "<= 20 ms", ratios))
        listed = statistics.median(r["list"]["p50_ms"] for r in at["list"])
        out.append(row(f"  (context) ListCertificates 1st page / the page's index range, {n}",
                       listed, at["page_range_p50_ms"], "ms", "(context)"))
        ratios = [v / b for v, b in zip(at["edge_cpu_per_verify_ms"], at["edge_cpu_per_bare_ms"],
                                        strict=True)]
        out.append(row(f"edge CPU per verification / per bare round trip, {n} stored",
                       statistics.median(at["edge_cpu_per_verify_ms"]),
                       statistics.median(at["edge_cpu_per_bare_ms"]), "ms", "<= 1 ms", ratios))
        ratios = [v / h for v, h in zip(at["cpu_verify_ms"], at["cpu_health_ms"], strict=True)]
        out.append(row(f"  (context) worker CPU per verification / per health RPC, {n}",
                       statistics.median(at["cpu_verify_ms"]),
                       statistics.median(at["cpu_health_ms"]), "ms", "(context)", ratios))
    first = results["scales"][0]
    for at in results["scales"]:
        for who in ("worker", "edge"):
            out.append(row(f"RSS {who} at {at['scale']:,} / at {first['scale']:,} stored",
                           at[f"rss_{who}_mib"], first[f"rss_{who}_mib"], "MiB", "<= 150 MiB"))
    issued = results["issue"]
    out.append(row(f"issue {ROWS:,} via gRPC / direct insert",
                   statistics.median(r["issue_s"] for r in issued),
                   statistics.median(r["direct_s"] for r in issued), "s", "<= 2",
                   [r["issue_s"] / r["direct_s"] for r in issued]))
    during = results["reads_during_batch"]
    failed = sum(sum(r["failed_during_batch"].values()) for r in during)
    not_serving = sum(r["not_serving_during_batch"] for r in during)
    out.append(row(f"reads p99 during a {ROWS:,}-row batch / idle",
                   statistics.median(r["batch_p99_ms"] for r in during),
                   statistics.median(r["idle_p99_ms"] for r in during), "ms", "<= 3",
                   [r["batch_p99_ms"] / r["idle_p99_ms"] for r in during],
                   failed_during_batch=failed, not_serving_during_batch=not_serving))
    return out


def run(rounds: int) -> dict:
    """Every certificates row; the measured figures and the goal rows."""
    from nameko.standalone.rpc import ClusterRpcProxy

    reg = Registry()
    proxy = ClusterRpcProxy({"AMQP_URI": reg.plat.amqp_uri}, timeout=30)
    cluster = proxy.start()
    results: dict = {"scales": []}
    try:
        for scale in scales():
            print(f"certificates: filling the registry to {scale:,} ...", flush=True)
            reg.fill(scale)
            results["scales"].append(measure_scale(reg, scale, rounds, cluster))
        print(f"certificates: issuing {ROWS:,} against a direct insert ...", flush=True)
        results["issue"] = issue_rounds(reg, rounds)
        print("certificates: reads during a batch against idle ...", flush=True)
        results["reads_during_batch"] = reads_during_batches(reg, rounds)
        results["stored_at_end"] = reg.stored
    finally:
        proxy.stop()
        reg.close()
    results["rows"] = rows_of(results)
    return results


if __name__ == "__main__":
    from tests import database
    from tests.bench import run as bench_run

    database.server(on_disk=True)
    try:
        bench_run.print_rows(run(int(os.environ.get("BENCH_ROUNDS", "3")))["rows"])
    finally:
        database.stop_server()
