"""Public verification answered by the edge itself, off the bus (issue 18): the certificates
SPEC declares VerifyCertificate an edge read, so the edge reads the registry's database and
answers with the worker's own code (services/certificates/public.py).

What a member of the public relies on: the same answers as the worker gives, with the worker
stopped too; the masking; a wrong name indistinguishable from an unknown number; the
anonymous rate limit; bad questions refused with their field; the database away answered
UNAVAILABLE (BACKEND_UNAVAILABLE), never INTERNAL, and served again once it is back; the
verification counter on the edge's /metrics.
"""
from __future__ import annotations

import itertools
import time

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from vocreg.certificates.v1 import certificates_pb2, certificates_pb2_grpc

from services.certificates import domain
from services.common.amqp_rpc import RpcClient
from services.common.protos import to_dict
from services.common.spec import spec
from services.localdb import DatabaseServer
from tests.database import free_port
from tests.e2e.grpc_client import bearer
from tests.platform import Platform

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
CERTIFICATES = spec("certificates").proto
FILING_CODE = "S000041000123"
VALID, VOIDED, WITHDRAWN = (f"{FILING_CODE}264{n:06d}" for n in (1, 2, 3))
UNKNOWN = f"{FILING_CODE}264999999"
# Anonymous verifications from one address: a burst of this many, then one a minute.
BURST = 4
_addresses = itertools.count(1)


def holder(i: int) -> str:
    first17 = f"41050219900307{i:03d}"
    return first17 + domain.id_check_character(first17)


def stored(i: int, number: str, status: str, invalidation: dict | None = None) -> dict:
    """A certificate as the worker stores it (models.Certificate)."""
    return {"_id": f"key-{i}", "certificate_number": number, "institution_id": "I1",
            "filing_code": FILING_CODE, "issuer_name": "安阳市第1职业技能培训评价中心",
            "exam_session_id": "2026-06-A", "batch_id": "b1", "holder_name": "欧阳娜娜",
            "holder_id_number": holder(i), "occupation_code": "4-10-01-02",
            "occupation_name": "育婴员", "skill_level": 4, "assessment_date": "2026-06-10",
            "issued_on": "2026-06-15", "late_reported": False, "status": status,
            "invalidation": invalidation or {}, "history": []}


REGISTRY = [
    stored(1, VALID, domain.VALID),
    stored(2, VOIDED, domain.INVALIDATED, {
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "effective_on": "2026-09-08",
        "operation_id": "op-1", "decision_ref": "安人社监〔2026〕31号"}),
    stored(3, WITHDRAWN, domain.WITHDRAWN, {
        "reason": "INVALIDATION_REASON_DATA_WITHDRAWN", "effective_on": "2026-09-20",
        "operation_id": "op-2", "decision_ref": "安人社监〔2026〕41号"}),
]
QUESTIONS = [
    {"certificate_number": VALID, "holder_name": "欧阳娜娜"},
    {"certificate_number": f" {VALID.lower()} ", "holder_name": "欧阳娜娜"},
    {"certificate_number": VOIDED, "holder_name": "欧阳娜娜"},
    {"certificate_number": WITHDRAWN, "holder_name": "欧阳娜娜"},
    {"certificate_number": VALID, "holder_name": "李四"},         # wrong name
    {"certificate_number": UNKNOWN, "holder_name": "欧阳娜娜"},    # no such number
]

EDGE_ENV = {
    # The tests name the client's address (X-Forwarded-For from a trusted proxy), so each
    # question comes from an address of its own and the rate limit test from one address.
    "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
    "PUBLIC_RATE_LIMITS": f"VerifyCertificate=1/{BURST}",
    "EDGE_READ_TIMEOUT": "2",
}


def fresh_address() -> str:
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def verify(plat, question: dict, address: str | None = None, timeout: float = 10.0) -> dict:
    stub = certificates_pb2_grpc.CertificateRegistryStub(plat.channel)
    answer = stub.VerifyCertificate(
        certificates_pb2.VerifyCertificateRequest(**question), timeout=timeout,
        metadata=[("x-forwarded-for", address or fresh_address())])
    return to_dict(answer)


def refusal(call) -> tuple[grpc.StatusCode, str, dict]:
    """(code, message, {detail name: detail}) of a refused call."""
    try:
        call()
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)
        details = {}
        for detail in status.details if status else ():
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
                if detail.Is(kind.DESCRIPTOR):
                    details[kind.DESCRIPTOR.name] = kind()
                    detail.Unpack(details[kind.DESCRIPTOR.name])
        return exc.code(), exc.details(), details
    raise AssertionError("the call succeeded")


def worker_answer(plat, question: dict) -> dict:
    """The worker's own VerifyCertificate over the bus (what every caller got before)."""
    client = RpcClient(plat.amqp_uri)
    try:
        return client.call("certificates", "VerifyCertificate", question, None, timeout=10)
    finally:
        client.close()


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    made = Platform(tmp_path_factory.mktemp("verify-at-edge"), services=("certificates",))
    made.edge_env = dict(EDGE_ENV)
    started = made.start()
    started.db("certificates").certificates.insert_many([dict(c) for c in REGISTRY])
    yield started
    started.stop()


def test_the_edge_answers_as_the_worker_did_and_goes_on_with_the_worker_stopped(plat):
    before = [worker_answer(plat, q) for q in QUESTIONS]
    assert [a["result"] for a in before] == [
        "VERIFICATION_RESULT_VALID", "VERIFICATION_RESULT_VALID",
        "VERIFICATION_RESULT_INVALIDATED", "VERIFICATION_RESULT_WITHDRAWN",
        "VERIFICATION_RESULT_NOT_FOUND", "VERIFICATION_RESULT_NOT_FOUND"]
    assert [verify(plat, q) for q in QUESTIONS] == before

    plat.stop_process("worker-certificates")
    plat.wait_for_health(CERTIFICATES, 2)  # NOT_SERVING: the worker's RPCs cannot be served
    # ... but verification does not cross the bus: the same answers.
    assert [verify(plat, q) for q in QUESTIONS] == before
    # An RPC the worker answers fails fast, as before.
    code, _, details = refusal(lambda: certificates_pb2_grpc.CertificateRegistryStub(
        plat.channel).GetCertificate(certificates_pb2.GetCertificateRequest(
            certificate_number=VALID), metadata=bearer("regulator"), timeout=10))
    assert (code, details["ErrorInfo"].reason) == (Code.UNAVAILABLE, "SERVICE_NOT_RUNNING")

    valid, _, voided, withdrawn, wrong_name, unknown = before
    assert valid == {
        "result": "VERIFICATION_RESULT_VALID", "certificate_number": VALID,
        "holder_name_masked": "欧**娜",
        "holder_id_number_masked": holder(1)[:3] + "*" * 11 + holder(1)[-4:],
        "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4,
        "issued_on": "2026-06-15", "issuer_name": "安阳市第1职业技能培训评价中心"}
    assert (voided["reason"], voided["effective_on"]) == (
        "INVALIDATION_REASON_EXAM_MISCONDUCT", "2026-09-08")
    assert withdrawn["reason"] == "INVALIDATION_REASON_DATA_WITHDRAWN"
    for answer in before:
        assert "欧阳娜娜" not in str(answer) and holder(1) not in str(answer)
        assert "安人社监" not in str(answer) and "institution_id" not in answer
    # A wrong name is indistinguishable from a number that does not exist.
    assert wrong_name == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": VALID}
    assert unknown == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": UNKNOWN}

    # Over HTTP/JSON too (the gateway runs the same call).
    answer = requests.get(f"{plat.http_url}/v1/certificates/{VALID}:verify",
                          params={"holder_name": "欧阳娜娜"},
                          headers={"X-Forwarded-For": fresh_address()}, timeout=15)
    assert answer.status_code == 200
    assert answer.json() == valid  # the proto field names, as over gRPC

    # Bad questions are the caller's, answered at the edge with their fields.
    code, message, details = refusal(lambda: verify(
        plat, {"certificate_number": "not-a-number", "holder_name": ""}))
    assert code == Code.INVALID_ARGUMENT and "holder_name: required" in message
    fields = [v.field for v in details["BadRequest"].field_violations]
    assert fields == ["certificate_number", "holder_name"]
    # The proto's field limits, as the worker checked them, without echoing the value.
    code, message, details = refusal(lambda: verify(
        plat, {"certificate_number": VALID, "holder_name": "欧" * 100_000}))
    assert code == Code.INVALID_ARGUMENT and "at most 50 characters" in message
    assert [v.field for v in details["BadRequest"].field_violations] == ["holder_name"]

    # The edge counts what it answered.
    metrics = requests.get(f"http://localhost:{plat.edge_metrics_port}/metrics", timeout=5).text
    valid_count = next(line for line in metrics.splitlines() if line.startswith(
        'vocreg_certificate_verifications_total{result="valid"}'))
    assert float(valid_count.split()[-1]) >= 4

    plat.start_worker("certificates")
    plat.wait_for_health(CERTIFICATES, 1)


def test_the_anonymous_rate_limit_still_applies(plat):
    address = fresh_address()
    question = {"certificate_number": VALID, "holder_name": "欧阳娜娜"}
    for _ in range(BURST):
        assert verify(plat, question, address)["result"] == "VERIFICATION_RESULT_VALID"
    code, _, details = refusal(lambda: verify(plat, question, address))
    assert (code, details["ErrorInfo"].reason) == (Code.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    # Another address is not held back.
    assert verify(plat, question)["result"] == "VERIFICATION_RESULT_VALID"


def test_the_database_away_is_unavailable_and_served_again_when_it_is_back(tmp_path):
    # A database server of this test's own (the session's shared one is never stopped): the
    # edge reads it; the worker runs on the session's server as usual.
    own = DatabaseServer(free_port(), storage=tmp_path / "own-db", home=tmp_path).start()
    try:
        made = Platform(tmp_path, services=("certificates",))
        made.edge_env = {**EDGE_ENV, "CERTIFICATES_READ_MONGO_URI":
                         own.database_uri("vocreg_certificates")}
        plat = made.start()
        try:
            import pymongo

            with pymongo.MongoClient(own.uri) as client:
                client.vocreg_certificates.certificates.insert_many([dict(REGISTRY[0])])
            question = {"certificate_number": VALID, "holder_name": "欧阳娜娜"}
            assert verify(plat, question)["result"] == "VERIFICATION_RESULT_VALID"

            own.stop()
            started = time.monotonic()
            code, message, details = refusal(lambda: verify(plat, question, timeout=20))
            assert (code, details["ErrorInfo"].reason) == (Code.UNAVAILABLE,
                                                           "BACKEND_UNAVAILABLE")
            assert "database" in message
            assert time.monotonic() - started < 10  # EDGE_READ_TIMEOUT (2 s), not 20 s
            # The service is not ready while its edge cannot read (readiness takes it out).
            plat.wait_for_health(CERTIFICATES, 2)

            own.start()
            plat.wait_for_health(CERTIFICATES, 1)
            assert verify(plat, question)["result"] == "VERIFICATION_RESULT_VALID"
            log = (tmp_path / "edge.log").read_text()
            assert "cannot read the database" in log and "Traceback" not in log
        finally:
            plat.stop()
    finally:
        own.stop()
