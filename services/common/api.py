"""The `api` entrypoint: one worker RPC method per proto RPC, named after it.

It takes the request message as a dict and returns the response message as a dict. Before
the method runs: the caller's token (nameko `auth_token` context) is verified, the RPC's
access policy from the proto is enforced, and the request is checked against its proto
message, so internal callers on the bus meet the same rules as gRPC clients at the edge.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.json_format import ParseError
from nameko.constants import AUTH_TOKEN_CONTEXT_KEY
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc

from services.common.auth import Identity, authorize, verify_token
from services.common.errors import DELIBERATE_ERRORS, InvalidArgument
from services.common.protos import access_policies, from_dict, service_proto

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallInfo:
    token: str | None
    call_id: str


class CallContext(DependencyProvider):
    """Gives the method what the call carried: the caller's token and the call id."""

    def get_dependency(self, worker_ctx):
        return CallInfo(token=worker_ctx.data.get(AUTH_TOKEN_CONTEXT_KEY),
                        call_id=worker_ctx.call_id)


def check_message(request, service: str, message_name: str, what: str) -> None:
    if not isinstance(request, dict):
        raise InvalidArgument(f"{what} must be an object, not {type(request).__name__}")
    message_class = getattr(service_proto(service).messages, message_name)
    try:
        from_dict(request, message_class)
    except ParseError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None


def api(method):
    """Decorate `def Rpc(self, request: dict, caller: Identity) -> dict` on a service class
    that declares `call = CallContext()`; the proto RPC of the same name gives the types."""
    name = method.__name__

    def entrypoint(self, request=None):
        caller: Identity = verify_token(self.call.token)
        authorize(access_policies(self.name).get(name), caller, f"{self.name}.{name}")
        descriptor = service_proto(self.name).service_descriptor.methods_by_name[name]
        request = {} if request is None else request
        check_message(request, self.name, descriptor.input_type.name, "request")
        response = method(self, request, caller)
        # A response that does not fit its message is a bug here, not the caller's fault.
        from_dict(response, getattr(service_proto(self.name).messages,
                                    descriptor.output_type.name))
        return response

    entrypoint.__name__ = name
    entrypoint.__qualname__ = method.__qualname__
    entrypoint.__doc__ = method.__doc__
    return rpc(expected_exceptions=DELIBERATE_ERRORS)(entrypoint)

