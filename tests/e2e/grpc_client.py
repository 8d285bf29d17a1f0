"""A small grpcio client for the tests: stubs, bearer metadata, dict messages."""
from __future__ import annotations

import grpc
from google.protobuf import json_format
from vocreg.filing.v1 import filing_pb2, filing_pb2_grpc

from tests.support import token


def bearer(role: str | None, institution_n: int | None = None):
    return () if role is None else (("authorization", f"Bearer {token(role, institution_n)}"),)


class Filing:
    """Calls FilingService with a role's token; requests and answers are dicts."""

    def __init__(self, channel: grpc.Channel, role: str | None = None,
                 institution_n: int | None = None, metadata=None):
        self.stub = filing_pb2_grpc.FilingServiceStub(channel)
        self.metadata = metadata if metadata is not None else bearer(role, institution_n)

    def __getattr__(self, method: str):
        rpc = getattr(self.stub, method)
        request_class = getattr(filing_pb2, f"{method}Request")

        def call(request: dict | None = None, timeout: float = 10.0):
            message = json_format.ParseDict(request or {}, request_class())
            response = rpc(message, metadata=self.metadata, timeout=timeout)
            return json_format.MessageToDict(response, preserving_proto_field_name=True)

        return call


def status_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    raise AssertionError("the call succeeded")
