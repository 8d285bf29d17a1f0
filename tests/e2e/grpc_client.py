"""A small grpcio client for the tests: stubs, bearer metadata, dict messages."""
from __future__ import annotations

import grpc
from google.protobuf import json_format
from vocreg.certificates.v1 import certificates_pb2, certificates_pb2_grpc
from vocreg.courses.v1 import courses_pb2, courses_pb2_grpc
from vocreg.filing.v1 import filing_pb2, filing_pb2_grpc

from tests.support import PASSED_EVALUATION, application_request, token


def bearer(role: str | None, institution_n: int | None = None):
    return () if role is None else (("authorization", f"Bearer {token(role, institution_n)}"),)


class Client:
    """Calls one gRPC service with a role's token (none: anonymous); requests and answers
    are dicts. `Client(stub_class, pb2_module, channel, role, institution_n, metadata)`."""

    def __init__(self, stub_class, pb2_module, channel: grpc.Channel, role: str | None = None,
                 institution_n: int | None = None, metadata=None):
        self.stub = stub_class(channel)
        self.pb2 = pb2_module
        self.metadata = metadata if metadata is not None else bearer(role, institution_n)

    def __getattr__(self, method: str):
        if method.startswith("_") or method in ("stub", "pb2", "metadata"):
            raise AttributeError(method)
        rpc = getattr(self.stub, method)
        request_class = getattr(self.pb2, f"{method}Request")

        def call(request: dict | None = None, timeout: float = 10.0):
            message = json_format.ParseDict(request or {}, request_class())
            response = rpc(message, metadata=self.metadata, timeout=timeout)
            return json_format.MessageToDict(response, preserving_proto_field_name=True)

        return call


class Filing(Client):
    """vocreg.filing.v1.FilingService."""

    def __init__(self, channel: grpc.Channel, role: str | None = None,
                 institution_n: int | None = None, metadata=None):
        super().__init__(filing_pb2_grpc.FilingServiceStub, filing_pb2, channel, role,
                         institution_n, metadata)


class Certificates(Client):
    """vocreg.certificates.v1.CertificateRegistry."""

    def __init__(self, channel: grpc.Channel, role: str | None = None,
                 institution_n: int | None = None, metadata=None):
        super().__init__(certificates_pb2_grpc.CertificateRegistryStub, certificates_pb2,
                         channel, role, institution_n, metadata)


class Courses(Client):
    """vocreg.courses.v1.CourseReviewService; `party_id` binds a party role's token."""

    def __init__(self, channel: grpc.Channel, role: str | None = None,
                 party_id: str | None = None, metadata=None):
        if metadata is None and role is not None:
            metadata = (("authorization", f"Bearer {token(role, party_id=party_id)}"),)
        super().__init__(courses_pb2_grpc.CourseReviewServiceStub, courses_pb2, channel, role,
                         None, metadata if metadata is not None else ())


def file_institution(channel: grpc.Channel, n: int, request: dict | None = None) -> dict:
    """Institution n filed through FilingService (submit, accept, decide FILE); the receipt."""
    app = Filing(channel, "institution", n).SubmitApplication(
        request or application_request(n))["application"]
    regulator = Filing(channel, "regulator")
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    answer = regulator.DecideApplication({"application_id": app["application_id"],
                                          "outcome": "DECISION_OUTCOME_FILE",
                                          "evaluation": PASSED_EVALUATION})
    assert answer["application"]["state"] == "APPLICATION_STATE_FILED", answer
    return answer["receipt"]


def status_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    raise AssertionError("the call succeeded")
