"""Crashes for real: a worker killed with SIGKILL between storing a change and publishing its
event, after publishing it, and in the middle of a 4,000-row upload; then started again on
the same database. Every event still takes effect exactly once: the certificate registry
issues, and the REAL filing worker counts each certificate once in the institution's
activity (a redelivered event is recognised by its id). And two workers of one service on
one database, sweeping at once, change each document once (certificates' stale operations,
filing's deemed acceptances).

The kills at an exact point use the worker's FAULT_INJECT_KILL knob (services/common/bus.py):
the worker sends itself SIGKILL there, with no cleanup, reply or acknowledgement. The kill in
the middle of an upload is sent from outside, by the test, as an operator's `kill -9` would.
"""
from __future__ import annotations

import re
import signal
import threading
import time
from datetime import datetime

import grpc
import pytest
from grpc_health.v1.health_pb2 import HealthCheckResponse

from services.certificates import domain
from services.certificates.models import Certificate, Operation
from services.common.spec import spec
from services.common.workdays import SHANGHAI
from tests.bench.certificates_bench import holder as bench_holder
from tests.e2e.grpc_client import Filing, status_of
from tests.e2e.test_certificates_grpc import at, batch, file_institution, issuer, row
from tests.platform import EventTap, Platform, eventually
from tests.support import application_request, uscc

pytestmark = pytest.mark.e2e
SERVING = HealthCheckResponse.SERVING

CERTIFICATES = "worker-certificates"
KILLED = -signal.SIGKILL
OCC = "4-10-01-02"
# Large enough that the upload is seconds in the database (the local server maintains seven
# indexes in Python): the kill lands while its operation is PENDING.
UPLOAD_ROWS = 4_000


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("crash"), services=("filing", "certificates"),
                       clock=True, SWEEP_INTERVAL=0.3, FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0, CERTIFICATES: 0}, \
        f"unclean shutdown {codes}:\n{started.logs()}"


def activity_count(plat, n: int) -> int:
    """Certificates the filing worker has counted for institution n (the consumer's effect)."""
    institution = Filing(plat.channel, "regulator").GetInstitution(
        {"institution_id": uscc(n)})["institution"]
    return sum(a.get("count_12_months", 0) for a in institution.get("activity", []))


def issued_events(tap: EventTap, n: int) -> list[dict]:
    return tap.events("CertificatesIssued", institution_id=uscc(n))


def operations(plat, n: int) -> list[dict]:
    return list(plat.db("certificates").operations.find({"institution_id": uscc(n)}))


def crash_on_upload(plat, n: int, point: str, rows: list[dict]) -> dict:
    """Upload `rows` as institution n to a certificates worker that kills itself at `point`
    of its first publish; the operation the killed worker stored."""
    plat.restart_worker("certificates", FAULT_INJECT_KILL=point)
    code, _ = status_of(issuer(plat, n).IssueCertificates, batch(rows), timeout=4)
    # The worker died before it could answer: the caller is told so, not given a result.
    assert code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE), code
    assert plat.wait_exit(CERTIFICATES) == KILLED, plat.logs()
    [op] = operations(plat, n)
    return op


def test_killed_between_store_and_publish_the_event_goes_out_once_after_restart(plat):
    n = 601
    file_institution(plat, n)
    at(plat, 2026, 6, 15)
    rows = [row(i) for i in range(20)]
    with EventTap(plat.amqp_uri, "certificates") as tap:
        op = crash_on_upload(plat, n, "before_publish", rows)
        # The store landed whole: the certificates, the operation DONE, its event inside it.
        assert op["state"] == "DONE"
        [event] = op["pending_events"]
        assert event["event_type"] == "CertificatesIssued" and event["body"]["total"] == 20
        assert plat.db("certificates").certificates.count_documents(
            {"institution_id": uscc(n)}) == 20
        tap.drain(1.0)
        assert issued_events(tap, n) == []  # and nothing was published

        plat.restart_worker("certificates", stop=False)  # the relay publishes what was stored
        tap.wait_for(lambda _: issued_events(tap, n), what="CertificatesIssued after restart")
        eventually(lambda: activity_count(plat, n) == 20, what="filing counts the batch")
        tap.drain(1.5)  # several more relay rounds: nothing goes out twice
    assert [e["meta"]["event_id"] for e in issued_events(tap, n)] == [event["event_id"]]
    assert activity_count(plat, n) == 20
    assert operations(plat, n)[0]["pending_events"] == []
    # The institution, told nothing, uploads again: the same numbers, nothing issued twice.
    again = issuer(plat, n).IssueCertificates(batch(rows))
    assert (again.get("issued_count", 0), again["duplicate_count"]) == (0, 20)
    stored = {c["certificate_number"] for c in plat.db("certificates").certificates.find(
        {"institution_id": uscc(n)})}
    assert {r["certificate_number"] for r in again["results"]} == stored
    assert activity_count(plat, n) == 20


def test_killed_after_publish_the_repeat_is_recognised_and_counted_once(plat):
    n = 602
    file_institution(plat, n)
    at(plat, 2026, 6, 15)
    with EventTap(plat.amqp_uri, "certificates") as tap:
        op = crash_on_upload(plat, n, "after_publish", [row(i) for i in range(30)])
        # Published and confirmed, but the worker died before taking it off the outbox.
        [event] = op["pending_events"]
        tap.wait_for(lambda _: issued_events(tap, n), what="the first publish")
        eventually(lambda: activity_count(plat, n) == 30, what="filing counts the batch")

        plat.restart_worker("certificates", stop=False)  # the relay sends it again
        tap.wait_for(lambda _: len(issued_events(tap, n)) == 2, what="the relay's repeat")
        eventually(lambda: operations(plat, n)[0]["pending_events"] == [], what="outbox empty")
        tap.drain(1.5)
    # Delivered twice with one id: filing recognises the repeat and counts it once.
    assert [e["meta"]["event_id"] for e in issued_events(tap, n)] == [event["event_id"]] * 2
    assert activity_count(plat, n) == 30


def test_killed_from_outside_during_a_large_upload_nothing_is_lost_or_doubled(plat):
    """kill -9 while the upload is half done (its operation PENDING): the edge sees the
    worker gone and answers UNAVAILABLE at once (or, if the restarted worker takes the
    request back from the queue first, it answers); the caller retries, and the repeat issues
    the rows not yet stored; the sweep finishes the killed run's operation from what it wrote. Every certificate is
    stored once, under one number, and filing counts each once."""
    n = 603
    file_institution(plat, n)
    at(plat, 2026, 6, 15)
    rows = [dict(row(0), row_ref=str(i), holder_id_number=bench_holder(i))
            for i in range(UPLOAD_ROWS)]
    answer: dict = {}

    def upload():
        try:
            # With a request_id, as a client that may retry must send it: every copy of the
            # request (the killed run, the bus's redelivery, the caller's retry) is one batch.
            answer["ok"] = issuer(plat, n).IssueCertificates(
                dict(batch(rows), request_id="upload-603"), timeout=90)
        except grpc.RpcError as exc:
            answer["error"] = exc.code()
            answer["details"] = exc.details()

    certificates = plat.db("certificates")
    with EventTap(plat.amqp_uri, "certificates") as tap:
        caller = threading.Thread(target=upload)
        caller.start()
        eventually(lambda: certificates.operations.find_one(
            {"institution_id": uscc(n), "state": "PENDING"}), timeout=60,
            what="the upload under way", interval=0.005)
        assert plat.kill_process(CERTIFICATES) == KILLED
        plat.restart_worker("certificates", stop=False)
        caller.join(timeout=120)
        # As a client should: UNAVAILABLE (the worker died under the call) and ABORTED (the
        # bus's redelivery of the same request is finishing it right now) are retried.
        # The killed worker's operation is taken over once it has been silent for 5 heartbeats.
        for _ in range(40):
            if answer.get("error") not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
                break
            plat.wait_for_health(spec("certificates").proto, SERVING)
            time.sleep(1)
            answer.clear()
            upload()
        assert answer.get("ok"), answer
        # Stored by the killed run or issued now by the repeat: every row, once.
        done = answer["ok"]
        assert done.get("issued_count", 0) + done.get("duplicate_count", 0) == UPLOAD_ROWS, done
        assert done.get("rejected_count", 0) == 0
        assert certificates.certificates.count_documents({"institution_id": uscc(n)}) == UPLOAD_ROWS
        numbers = certificates.certificates.distinct("certificate_number",
                                                     {"institution_id": uscc(n)})
        assert len(numbers) == UPLOAD_ROWS
        assert all(re.match(r"^S000041\d{6}264\d{6}$", x) for x in numbers)

        # The killed run's operation is finished by the sweep once it is stale.
        at(plat, 2026, 6, 15, hour=11)
        eventually(lambda: all(o["state"] == "DONE" and not o["pending_events"]
                               for o in operations(plat, n)), timeout=60,
                   what="every operation finished and published")
        eventually(lambda: activity_count(plat, n) == UPLOAD_ROWS, timeout=60,
                   what="filing counts every certificate")
        tap.drain(1.5)
    # One operation: every copy of the request found the killed run's (its id derives from
    # the request_id) and finished it; one event, counted once.
    ops = operations(plat, n)
    assert len(ops) == 1
    stored = certificates.certificates.count_documents({"batch_id": ops[0]["_id"]})
    assert stored == UPLOAD_ROWS
    events = {e["meta"]["event_id"]: e for e in issued_events(tap, n)}
    assert [e["batch_id"] for e in events.values()] == [ops[0]["_id"]]
    assert [e["total"] for e in events.values()] == [UPLOAD_ROWS]
    assert activity_count(plat, n) == UPLOAD_ROWS


# --- two workers of one service on one database -----------------------------------------------
STALE_OPERATIONS = 40
PER_OPERATION = 5


def seed_stale_operations(plat, n: int, filing_code: str, round_: int) -> list[str]:
    """What uploads cut short by crashes leave: operations PENDING for an hour, their
    certificates written, no event yet."""
    started = datetime(2026, 6, 15, 8, tzinfo=SHANGHAI)
    ops, certs = [], []
    for k in range(STALE_OPERATIONS):
        op_id = f"stale-{round_}-{k:03d}"
        ops.append(Operation(
            operation_id=op_id, kind="issue", state="PENDING", started_at=started,
            actor=f"institution:{uscc(n)}", institution_id=uscc(n),
            details={"exam_session_id": op_id, "assessment_date": "2026-06-10",
                     "issued_on": "2026-06-15"}).to_mongo().to_dict())
        for j in range(PER_OPERATION):
            serial = (round_ * STALE_OPERATIONS + k) * PER_OPERATION + j + 1
            holder_id = bench_holder(serial)
            certs.append(Certificate(
                key=domain.issue_key(uscc(n), op_id, holder_id, OCC, 4),
                certificate_number=domain.certificate_number(
                    filing_code, datetime(2026, 6, 15).date(), 4, serial),
                institution_id=uscc(n), filing_code=filing_code, exam_session_id=op_id,
                batch_id=op_id, holder_name="张三丰", holder_id_number=holder_id,
                occupation_code=OCC, skill_level=4, assessment_date="2026-06-10",
                issued_on="2026-06-15", status=domain.VALID).to_mongo().to_dict())
    db = plat.db("certificates")
    db.certificates.insert_many(certs)
    db.operations.insert_many(ops)  # all at once: both sweeps find them on their next tick
    return [o["_id"] for o in ops]


def conflicts(plat, keys, document: str = "Operation") -> float:
    """Conditional writes of `document` the workers lost to another writer."""
    total = 0.0
    for key in keys:
        for line in plat.metrics(key).splitlines():
            if line.startswith(f'vocreg_write_conflicts_total{{document="{document}"}}'):
                total += float(line.split()[-1])
    return total


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Filing and the registry with two workers each, every pair on one database, sweeping
    every 0.2 s."""
    plat = Platform(tmp_path_factory.mktemp("twins"), services=("filing", "certificates"),
                    clock=True, SWEEP_INTERVAL=0.2).start()
    try:
        for service in plat.services:
            second = plat.start_worker(service, key=f"{plat.worker_key(service)}-2")
            eventually(lambda key=second: _serves_metrics(plat, key), timeout=60,
                       what=f"the second {service} worker up")
    except BaseException:
        plat.stop()
        raise
    yield plat
    codes = plat.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{plat.logs()}"


def test_two_workers_sweeping_at_once_finish_each_operation_once(twins):
    plat = twins
    n = 604
    filing_code = file_institution(plat, n)
    at(plat, 2026, 6, 15)
    workers = (CERTIFICATES, f"{CERTIFICATES}-2")
    seeded: list[str] = []
    with EventTap(plat.amqp_uri, "certificates") as tap:
        # Until the two sweeps have met on at least one operation (usually the first round).
        for round_ in range(3):
            seeded += seed_stale_operations(plat, n, filing_code, round_)
            eventually(lambda ids=tuple(seeded): finished(plat, ids), timeout=60,
                       what="every stale operation finished and published")
            if conflicts(plat, workers):
                break
        total = len(seeded) * PER_OPERATION
        eventually(lambda: activity_count(plat, n) == total, timeout=30,
                   what="filing counts every certificate")
        tap.drain(1.5)
    assert conflicts(plat, workers) > 0, "the two sweeps never met on an operation"
    for op in plat.db("certificates").operations.find({"_id": {"$in": seeded}}):
        assert op["version"] == 1, op  # changed once: PENDING -> DONE
    by_batch: dict[str, set] = {}
    for event in tap.events("CertificatesIssued", institution_id=uscc(n)):
        by_batch.setdefault(event["batch_id"], set()).add(event["meta"]["event_id"])
    # One event per operation (a relay may deliver it twice, always with the same id).
    assert sorted(by_batch) == sorted(seeded)
    assert all(len(ids) == 1 for ids in by_batch.values()), by_batch
    assert activity_count(plat, n) == total


def finished(plat, ids) -> bool:
    return plat.db("certificates").operations.count_documents(
        {"_id": {"$in": list(ids)}, "state": "DONE", "pending_events": []}) == len(ids)


def _serves_metrics(plat, key) -> bool:
    try:
        return "vocreg_" in plat.metrics(key)
    except OSError:
        return False


def test_two_filing_workers_deem_each_application_accepted_once(twins):
    """Filing's sweep in two workers on one database: every unanswered application is deemed
    accepted once, with one ApplicationAccepted (5 working days, art.5-6)."""
    plat = twins
    workers = ("worker", "worker-2")
    applications: list[str] = []
    with EventTap(plat.amqp_uri, "filing") as tap:
        for round_ in range(3):  # until the two sweeps have met on an application
            at(plat, 2026, 7, 6 + 7 * round_)  # a Monday in a month without holidays
            applications += [Filing(plat.channel, "institution", n).SubmitApplication(
                application_request(n))["application"]["application_id"]
                for n in range(800 + 20 * round_, 820 + 20 * round_)]
            at(plat, 2026, 7, 17 + 7 * round_)  # the Friday after: past the 5 working days
            eventually(lambda ids=tuple(applications): all(
                _application(plat, a)["state"] == "APPLICATION_STATE_ACCEPTED" for a in ids),
                timeout=60, what="every application deemed accepted")
            if conflicts(plat, workers, "Application"):
                break
        tap.drain(1.5)
    assert conflicts(plat, workers, "Application") > 0, "the two sweeps never met"
    accepted: dict[str, set] = {}
    for event in tap.events("ApplicationAccepted"):
        if event["application_id"] in applications:
            accepted.setdefault(event["application_id"], set()).add(event["meta"]["event_id"])
    assert sorted(accepted) == sorted(applications)
    assert all(len(ids) == 1 for ids in accepted.values()), accepted
    assert {_application(plat, a)["accepted_by"] for a in applications} == \
        {"ACCEPTED_BY_DEEMED"}


def _application(plat, application_id: str) -> dict:
    return Filing(plat.channel, "regulator").GetApplication(
        {"application_id": application_id})["application"]
