"""The reads the edge answers itself (services/common/edge_reads.py): the declared module's
functions under the call's deadline, and what a caller hears when the database is away or the
deadline passes: UNAVAILABLE (BACKEND_UNAVAILABLE) or DEADLINE_EXCEEDED, never an internal
error. No database here: the reads are fakes (connect=False: nothing connects)."""
from __future__ import annotations

import dataclasses
import time

import pymongo
import pytest
from pymongo import _csot
from pymongo.errors import ExecutionTimeout, OperationFailure, ServerSelectionTimeoutError
from vocreg.certificates.v1 import certificates_pb2

from services.certificates import public
from services.common.edge_reads import EdgeReads, edge_reads_for
from services.common.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.common.spec import registry, spec

QUESTION = {"certificate_number": "S000041000123264000001", "holder_name": "张三"}


def reads(read, read_timeout: float = 5.0) -> EdgeReads:
    made = EdgeReads(spec("certificates"), read_timeout)
    made.reads = {"VerifyCertificate": read}
    return made


def call(edge: EdgeReads, timeout: float = 10.0, **question):
    request = certificates_pb2.VerifyCertificateRequest(**{**QUESTION, **question})
    return edge.call("VerifyCertificate", request, {**QUESTION, **question}, timeout)


def test_the_declared_reads_are_the_service_s_own_functions():
    edge = EdgeReads(spec("certificates"))
    assert edge.reads == {"VerifyCertificate": public.verify_in}
    assert "VerifyCertificate" in edge and "GetCertificate" not in edge
    assert edge.database.name == "vocreg_certificates"
    assert set(edge_reads_for(registry().values())) == {
        s.name for s in registry().values() if s.edge_reads}


def test_a_declared_read_its_module_lacks_stops_the_edge_at_start():
    wrong = dataclasses.replace(spec("certificates"),
                                edge_reads=("VerifyCertificate", "GetCertificate"))
    with pytest.raises(SystemExit, match="EDGE_READS has no GetCertificate"):
        EdgeReads(wrong)


def test_a_malformed_database_uri_stops_the_edge_at_start_saying_which(monkeypatch):
    monkeypatch.setenv("CERTIFICATES_READ_MONGO_URI", "mongodb://h:notaport/db")
    with pytest.raises(SystemExit, match="CERTIFICATES_READ_MONGO_URI"):
        EdgeReads(spec("certificates"))


def test_a_spec_declares_its_reads_with_their_module_in_its_own_package():
    with pytest.raises(ValueError, match="go together"):
        dataclasses.replace(spec("certificates"), edge_reads_module="")
    with pytest.raises(ValueError, match="must be in services.certificates"):
        dataclasses.replace(spec("certificates"), edge_reads_module="services.filing.x")


def test_the_read_runs_under_the_call_s_deadline_capped_by_the_read_timeout():
    seen = []

    def read(payload, database):
        seen.append((payload, _csot.get_timeout()))
        return {"result": "VERIFICATION_RESULT_NOT_FOUND"}

    assert call(reads(read, read_timeout=5.0), timeout=0.5) == {
        "result": "VERIFICATION_RESULT_NOT_FOUND"}
    assert call(reads(read, read_timeout=2.0), timeout=30.0)["result"]
    assert [timeout for _, timeout in seen] == [0.5, 2.0]
    assert seen[0][0] == QUESTION


@pytest.mark.parametrize("error", [
    ServerSelectionTimeoutError("no servers"), OperationFailure("not authorized")])
def test_a_database_the_edge_cannot_read_is_unavailable(error):
    def read(payload, database):
        raise error

    with pytest.raises(Unavailable) as raised:
        call(reads(read))
    assert raised.value.reason == "BACKEND_UNAVAILABLE"
    assert "database" in raised.value.message


def test_a_deadline_that_passes_first_is_deadline_exceeded():
    def read(payload, database):
        time.sleep(0.06)
        raise ExecutionTimeout("operation exceeded time limit")

    with pytest.raises(DeadlineExceeded):
        call(reads(read), timeout=0.05)


def test_the_proto_s_field_limits_are_checked_before_any_read():
    asked = []
    with pytest.raises(InvalidArgument, match="holder_name: at most 50 characters"):
        call(reads(lambda payload, database: asked.append(payload)), holder_name="张" * 51)
    assert asked == []


def test_the_health_ping_says_whether_the_database_answers():
    edge = EdgeReads(spec("certificates"))
    edge.client = pymongo.MongoClient("mongodb://127.0.0.1:1/", connect=False,
                                      serverSelectionTimeoutMS=100)
    edge.database = edge.client["vocreg_certificates"]
    assert edge.ping(0.2) is False
    edge.close()
