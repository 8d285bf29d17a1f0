"""Calls to the edge: any RPC of any declared service by name, dict in and dict out, with the
token in the `authorization` header; a refusal becomes a CliError with its exit code and the
structured details the edge sends (`google.rpc.Status`: ErrorInfo's reason, BadRequest's field
violations, PreconditionFailure's subjects), never parsed from the message text.

The stubs are the generated descriptors (services/common/protos.py): no per-service client
code, so a service's commands need only its name and its RPCs' names.
"""
from __future__ import annotations

import grpc
from google.protobuf import json_format, message_factory
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.cli.config import Settings
from services.cli.exits import CliError, Exit
from services.common.protos import access_policies, from_dict, service_proto

MIB = 1024 * 1024
# A 10,000-row batch answer is about 3 MiB; the edge sends at most 16 MiB.
MAX_MESSAGE_BYTES = 16 * MIB

EXIT_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: Exit.REFUSED,
    grpc.StatusCode.FAILED_PRECONDITION: Exit.REFUSED,
    grpc.StatusCode.ALREADY_EXISTS: Exit.REFUSED,
    grpc.StatusCode.ABORTED: Exit.REFUSED,
    grpc.StatusCode.OUT_OF_RANGE: Exit.REFUSED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Exit.REFUSED,
    grpc.StatusCode.CANCELLED: Exit.INTERRUPTED,
    grpc.StatusCode.NOT_FOUND: Exit.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: Exit.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: Exit.AUTH,
    grpc.StatusCode.UNAVAILABLE: Exit.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Exit.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED: Exit.UNAVAILABLE,
}
# Worth sending the same request again (same request_id): nothing was decided, or the same
# request is still being processed (ABORTED).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.ABORTED})


class Refusal(CliError):
    """A gRPC status other than OK, with what the edge said about it."""

    def __init__(self, code: Exit, message: str, details: list[str], status: grpc.StatusCode,
                 reason: str = ""):
        super().__init__(code, message, details)
        self.status = status
        self.reason = reason

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE


def refusal(exc: grpc.RpcError, service: str, address: str) -> Refusal:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    text = (exc.details() if hasattr(exc, "details") else "") or ""
    reason, lines = "", []
    status = None
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError):
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            omitted = info.metadata.get("violations_omitted")
            if omitted:
                lines.append(f"… and {omitted} more problems the answer had no room for")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            lines[:0] = [f"{v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            lines[:0] = [f"{v.subject}: {v.description}" + (f" ({v.type})" if v.type else "")
                         for v in failure.violations]
    exit_code = EXIT_BY_CODE.get(code, Exit.ERROR)
    label = f"{code.name}" + (f" {reason}" if reason and reason != code.name else "")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        message = (f"the {service} service is not deployed at {address} "
                   f"(the edge there does not serve it)")
        lines.append("fix: point --address (or the profile's addresses."
                     f"{service}) at an edge that serves {service}; `vocreg doctor` lists them")
    elif code == grpc.StatusCode.UNAVAILABLE and not reason:
        message = f"cannot reach the edge at {address}: {text or 'unavailable'}"
        lines.append("fix: is the platform running (`make run`)? check --address / "
                     "VOCREG_ADDRESS and --tls; `vocreg doctor` checks each part")
    elif reason == "SERVICE_NOT_RUNNING":
        message = f"the {service} service is deployed at {address} but no worker runs: {text}"
        lines.append(f"fix: start its worker (`python -m services.common.worker {service}`) "
                     "and retry; `vocreg doctor` shows its health")
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        message = f"{label}: {text}"
        lines.append("fix: give a valid token with --token or VOCREG_TOKEN (development: "
                     "`python -m services.common.auth ROLE ...`)")
    else:
        message = f"{label}: {text}" if text else label
    return Refusal(exit_code, message, lines, code, reason)


def answer_dict(message) -> dict:
    """An answer as a dict with every field, zeros and empty strings included: a script reading
    `--output json` or a CSV finds the same keys and columns whatever the values."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _Stop:
    """A signal (Ctrl-C, SIGTERM) that arrives while a call is under way only sets `requested`:
    the call's wait loop sees it, cancels the call and raises KeyboardInterrupt there. Raised
    inside grpcio's own code instead, it could leave the channel unable to close (reproduced:
    `channel.close()` then waited for ever)."""

    requested = False
    waiting = 0


def on_signal(signum, frame) -> None:
    if _Stop.waiting and not _Stop.requested:
        _Stop.requested = True
        return
    raise KeyboardInterrupt  # outside a call, or a second signal: at once


class Api:
    """One channel per edge address, opened on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, address: str) -> grpc.Channel:
        if address not in self._channels:
            options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                       ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
            if self.settings.tls:
                root = None
                if self.settings.ca_file:
                    try:
                        with open(self.settings.ca_file, "rb") as fh:
                            root = fh.read()
                    except OSError as exc:
                        raise CliError(Exit.USAGE, f"cannot read the CA file "
                                                   f"{self.settings.ca_file}: {exc.strerror}") from None
                credentials = grpc.ssl_channel_credentials(root)
                self._channels[address] = grpc.secure_channel(address, credentials, options)
            else:
                self._channels[address] = grpc.insecure_channel(address, options)
        return self._channels[address]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def metadata(self, service: str, method: str) -> tuple:
        """The token, except for public RPCs (an expired token must not stop a verification)."""
        policy = access_policies(service).get(method)
        if self.settings.token is None or (policy is not None and policy.public):
            return ()
        return (("authorization", f"Bearer {self.settings.token}"),)

    def future(self, service: str, method: str, request: dict, timeout: float | None = None):
        """The call under way (a grpc future) and what to name in an error."""
        proto = service_proto(service)
        described = proto.service_descriptor.methods_by_name.get(method)
        if described is None:
            raise CliError(Exit.ERROR, f"{proto.full_name} has no RPC {method}")
        request_class = message_factory.GetMessageClass(described.input_type)
        response_class = message_factory.GetMessageClass(described.output_type)
        address = self.settings.address_for(service)
        rpc = self.channel(address).unary_unary(
            f"/{proto.full_name}/{method}", request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString)
        return rpc.future(from_dict(request, request_class),
                          timeout=timeout or self.settings.timeout,
                          metadata=self.metadata(service, method)), address

    def call(self, service: str, method: str, request: dict | None = None,
             timeout: float | None = None) -> dict:
        """The answer as a dict (proto field names). Waits in short slices so that Ctrl-C
        stops it within a quarter of a second (the call is then cancelled)."""
        _Stop.waiting += 1
        try:
            if _Stop.requested:
                raise KeyboardInterrupt
            future, address = self.future(service, method, request or {}, timeout)
            while not _Stop.requested:
                try:
                    return answer_dict(future.result(timeout=0.25))
                except grpc.FutureTimeoutError:
                    continue
                except grpc.RpcError as exc:
                    if _Stop.requested:
                        break
                    raise refusal(exc, service, address) from None
            future.cancel()
            raise KeyboardInterrupt
        finally:
            _Stop.waiting -= 1

    def pages(self, service: str, method: str, request: dict, items: str, limit: int):
        """Every item of a List RPC across its pages (at most `limit`; 0: all)."""
        token, seen = "", 0
        while True:
            size = 100 if limit == 0 else max(1, min(100, limit - seen))
            answer = self.call(service, method, {**request, "page": {"page_size": size,
                                                                     "page_token": token}})
            for item in answer.get(items, []):
                yield item
                seen += 1
                if limit and seen >= limit:
                    return
            token = answer.get("page", {}).get("next_page_token", "")
            if not token:
                return


def backoff(attempt: int, cap: float = 8.0) -> float:
    """Seconds before retry `attempt` (from 1): 0.5, 1, 2, 4, 8, 8, ..."""
    return min(cap, 0.5 * 2 ** (attempt - 1))

