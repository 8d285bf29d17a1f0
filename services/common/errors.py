"""The errors a worker raises on purpose, and the one table that maps them to gRPC codes.

A worker's exception crosses the bus as nameko's RemoteError carrying the original class
name (`exc_type`). The edge looks that name up in GRPC_STATUS_BY_EXC_TYPE; anything not in
the table is a bug and becomes INTERNAL (and is logged with its call id, never its data).
"""
from __future__ import annotations

import grpc


class VocregError(Exception):
    """Base of the deliberate errors. The message is safe to show to the caller."""

    status = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(VocregError):
    """The request itself is wrong: a missing field, a bad type, a value out of range.

    Carries every violation found, so the caller can fix them all at once.
    """

    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations):
        if isinstance(violations, str):
            violations = [violations]
        self.violations = list(violations)
        super().__init__("; ".join(self.violations))


class NotFound(VocregError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VocregError):
    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(VocregError):
    """The request is well formed but the state of things does not allow it now."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(VocregError):
    status = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(VocregError):
    status = grpc.StatusCode.UNAUTHENTICATED


class Conflict(VocregError):
    """A concurrent change won the race; the caller may read again and retry."""

    status = grpc.StatusCode.ABORTED


class OutOfRange(VocregError):
    status = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(VocregError):
    """A service this one depends on did not answer in time: the caller may retry later."""

    status = grpc.StatusCode.UNAVAILABLE


DELIBERATE_ERRORS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
                     PermissionDenied, Unauthenticated, Conflict, OutOfRange, Unavailable)

GRPC_STATUS_BY_EXC_TYPE = {cls.__name__: cls.status for cls in DELIBERATE_ERRORS}
GRPC_STATUS_BY_EXC_TYPE.update({
    # nameko's own, raised when the bus cannot route or decode a call.
    "MethodNotFound": grpc.StatusCode.UNIMPLEMENTED,
    "UnknownService": grpc.StatusCode.UNAVAILABLE,
    "IncorrectSignature": grpc.StatusCode.INVALID_ARGUMENT,
    "MalformedRequest": grpc.StatusCode.INVALID_ARGUMENT,
    # mongoengine's, should one escape a service's own checks.
    "ValidationError": grpc.StatusCode.INVALID_ARGUMENT,
    "NotUniqueError": grpc.StatusCode.ALREADY_EXISTS,
    "DoesNotExist": grpc.StatusCode.NOT_FOUND,
    "SaveConditionError": grpc.StatusCode.ABORTED,
})


def grpc_status_for(exc_type: str | None) -> grpc.StatusCode:
    return GRPC_STATUS_BY_EXC_TYPE.get(exc_type or "", grpc.StatusCode.INTERNAL)
