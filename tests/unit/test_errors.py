"""Refusals carry google.rpc.Status details (ErrorInfo, BadRequest, PreconditionFailure) across
the bus and out of the edge, and stay small whatever input they describe."""
import json

import grpc
from google.rpc import error_details_pb2, status_pb2
from nameko.exceptions import serialize

from services.common.errors import (
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    encoded_size,
    field_violation,
    quote,
    remote_details,
    rich_status,
)


def unpack(status: grpc.Status):
    """(message, {detail type name: message}) from a grpc.Status as the client receives it."""
    metadata = dict(status.trailing_metadata)
    proto = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    found = {}
    for detail in proto.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    assert proto.code == status.code.value[0]
    return proto, found


def over_the_bus(exc):
    """What the edge gets from nameko's reply for a worker's exception."""
    error = json.loads(json.dumps(serialize(exc)))
    return error["exc_type"], error["value"], error["exc_args"]


def test_field_paths_are_split_from_their_problems():
    assert field_violation("rows[3].holder_id_number: check character is wrong") == {
        "field": "rows[3].holder_id_number", "description": "check character is wrong"}
    assert field_violation("institution.district_code: 110101 is not a district") == {
        "field": "institution.district_code", "description": "110101 is not a district"}
    assert field_violation("a refusal is given in writing") == {
        "field": "", "description": "a refusal is given in writing"}


def test_invalid_argument_crosses_the_bus_as_bad_request_field_violations():
    exc = InvalidArgument(["institution.name: required", "scope[0].skill_levels: [9] not in 1-5"])
    exc_type, value, exc_args = over_the_bus(exc)
    assert (exc_type, value) == ("InvalidArgument",
                                 "institution.name: required; scope[0].skill_levels: [9] not in 1-5")
    details = remote_details(exc_type, exc_args)
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, value, details, "filing")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT and status.details == value
    proto, found = unpack(status)
    assert proto.message == value
    info = found["ErrorInfo"]
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "vocreg.filing")
    assert [(v.field, v.description) for v in found["BadRequest"].field_violations] == [
        ("institution.name", "required"), ("scope[0].skill_levels", "[9] not in 1-5")]


def test_failed_precondition_carries_a_precondition_failure_and_its_reason():
    exc = FailedPrecondition("cannot issue: the filing is suspended", reason="FILING_NOT_ACTIVE",
                             subject="institution/52410502MJ0000001X")
    _, found = unpack(rich_status(exc.status, exc.message, exc.details(), "certificates"))
    assert found["ErrorInfo"].reason == "FILING_NOT_ACTIVE"
    [violation] = found["PreconditionFailure"].violations
    assert (violation.type, violation.subject, violation.description) == (
        "FILING_NOT_ACTIVE", "institution/52410502MJ0000001X",
        "cannot issue: the filing is suspended")
    several = FailedPrecondition("cannot file: 2 problems", violations=[
        ("MATERIALS", "application/a1", "materials missing"),
        ("EVALUATION", "application/a1", "site visit not passed")])
    _, found = unpack(rich_status(several.status, several.message, several.details(), "filing"))
    assert [v.type for v in found["PreconditionFailure"].violations] == ["MATERIALS", "EVALUATION"]


def test_every_refusal_has_an_error_info_even_without_details():
    _, found = unpack(rich_status(grpc.StatusCode.UNIMPLEMENTED, "no such method", None, "filing"))
    assert found["ErrorInfo"].reason == "METHOD_NOT_FOUND"
    # A worker's details are not trusted blindly: a reason must look like one.
    _, found = unpack(rich_status(grpc.StatusCode.NOT_FOUND, "x", {"reason": "bad reason!"},
                                  "filing"))
    assert found["ErrorInfo"].reason == "NOT_FOUND"


def test_a_huge_value_is_quoted_by_a_short_prefix():
    assert quote("x" * 100_000) == f"{'x' * 40!r}… (100000 characters)"
    assert quote("short") == "'short'"
    exc = NotFound(f"institution {'9' * 100_000} not found")
    assert encoded_size(exc.message) <= MAX_MESSAGE_BYTES
    assert exc.message.startswith("institution 999") and exc.message.endswith("…")


def test_many_long_violations_stay_within_the_trailer_budget():
    violations = [f"rows[{i}].holder_name: {'名' * 5000} is too long" for i in range(10_000)]
    exc = InvalidArgument(violations)
    assert encoded_size(exc.message) <= MAX_MESSAGE_BYTES
    assert exc.message.endswith("more in the details)")
    exc_type, value, exc_args = over_the_bus(exc)
    assert len(json.dumps(exc_args, ensure_ascii=False)) < 50_000  # the bus carries it bounded
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, value,
                         remote_details(exc_type, exc_args), "certificates")
    proto, found = unpack(status)
    assert proto.ByteSize() <= MAX_STATUS_BYTES
    violations_sent = found["BadRequest"].field_violations
    assert 0 < len(violations_sent) < 10_000 and violations_sent[0].field == "rows[0].holder_name"
    assert int(found["ErrorInfo"].metadata["violations_omitted"]) == 10_000 - len(violations_sent)
    trailers = sum(len(k) + len(v) + 32 for k, v in status.trailing_metadata)
    assert trailers + encoded_size(status.details) < 8 * 1024  # gRPC's soft metadata limit


def test_a_few_violations_are_all_in_the_message():
    exc = InvalidArgument(["a: required", "b: too long"])
    assert str(exc) == "a: required; b: too long"
    many = InvalidArgument([f"rows[{i}].skill_level: must be 1-5" for i in range(200)])
    shown = many.message.split("; ")
    assert 10 < len(shown) < 200 and shown[-1].endswith("more in the details)")
    assert len(many.details()["field_violations"]) == 100  # the bus carries at most 100
    assert many.details()["metadata"]["violations_omitted"] == "100"


def test_details_of_an_unknown_error_type_are_ignored():
    assert remote_details("KeyError", ["x", {"reason": "SECRET"}]) == {}
    assert remote_details("InvalidArgument", ["only a message"]) == {}
