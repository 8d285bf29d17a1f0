"""The errors a worker raises on purpose, the one table that maps them to gRPC codes, and the
structured details (`google.rpc.Status`) every refusal carries to the caller.

A worker's exception crosses the bus in nameko's reply as `exc_type` (the class name), `value`
(the message) and `exc_args`. A deliberate error's `exc_args` are `[message, details]`, where
details is a small JSON object (reason, metadata, field and precondition violations), so the
structure survives the bus. The edge looks the type up in GRPC_STATUS_BY_EXC_TYPE (anything not
in the table is a bug and becomes INTERNAL, logged with the method, never the data) and turns
the details into `google.rpc.ErrorInfo`, `BadRequest` and `PreconditionFailure` (`rich_status`).

Everything a refusal carries is bounded: the message quotes at most a short prefix of any
value, and the details stay within a fixed budget, because gRPC's trailers (where both travel)
are limited to 8-16 KB; a refusal must never turn into RESOURCE_EXHAUSTED.
"""
from __future__ import annotations

import re

import grpc

# ErrorInfo.domain: the service whose API answered, e.g. "vocreg.filing". Reasons are stable
# UPPER_SNAKE codes, unique within a domain: clients switch on (domain, reason), never on text.
DOMAIN_PREFIX = "vocreg."

# The human message travels percent-encoded in the grpc-message trailer (a Chinese character
# is 9 bytes there) and again in the details: its encoded size is what is bounded.
MAX_MESSAGE_BYTES = 1500
MAX_QUOTE_CHARS = 40           # a value quoted in a message
MAX_FIELD_CHARS = 120          # a field path
MAX_DESCRIPTION_CHARS = 200    # one violation's description
MAX_VIOLATIONS = 100           # violations carried across the bus
MAX_METADATA_ENTRIES = 8
MAX_STATUS_BYTES = 3584        # the serialised google.rpc.Status (base64 in grpc-status-details-bin)
ELLIPSIS = "…"


def clip(text, limit: int) -> str:
    """`text` as a string of at most `limit` characters."""
    text = str(text)
    return text if len(text) <= limit else text[:max(0, limit - 1)] + ELLIPSIS


def encoded_size(text: str) -> int:
    """Bytes of `text` in the grpc-message trailer: printable ASCII but '%' as is, the rest
    percent-encoded byte by byte."""
    return sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode()) for c in text)


def clip_message(text, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut (with an ellipsis) so that its grpc-message encoding fits `limit` bytes."""
    text = str(text)
    if encoded_size(text) <= limit:
        return text
    budget, cut = limit - encoded_size(ELLIPSIS), 0
    for i, c in enumerate(text):
        budget -= encoded_size(c)
        if budget < 0:
            cut = i
            break
    return text[:cut] + ELLIPSIS


def quote(value, limit: int = MAX_QUOTE_CHARS) -> str:
    """A value for a message: repr-quoted, at most a short prefix, with its length when cut."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}{ELLIPSIS} ({len(text)} characters)"


# "rows[3].holder_id_number: problem" -> field "rows[3].holder_id_number"
_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): (.+)$", re.S)


def field_violation(text: str) -> dict:
    """A "field.path: problem" string as {"field", "description"} (field "" if it names none)."""
    match = _FIELD.match(str(text))
    field, description = (match.group(1), match.group(2)) if match else ("", str(text))
    return {"field": clip(field, MAX_FIELD_CHARS),
            "description": clip(description, MAX_DESCRIPTION_CHARS)}


def _metadata(values: dict | None) -> dict[str, str]:
    items = list((values or {}).items())[:MAX_METADATA_ENTRIES]
    return {clip(k, 64): clip(v, 128) for k, v in items}


class ContractViolation(Exception):
    """An event that does not fit its producer's message, or lacks what its consumer needs
    (e.g. the id it is about): refused loudly, kept in the consumer's dead letters
    (services/common/entrypoints.py), never guessed at. Not an answer to any caller."""


class VocregError(Exception):
    """Base of the deliberate errors. The message is safe to show to the caller.

    `reason` is the stable machine-readable code (ErrorInfo.reason; the class default when not
    given), `metadata` a few short strings about it (ErrorInfo.metadata).
    """

    status = grpc.StatusCode.UNKNOWN
    default_reason = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict | None = None):
        self.message = clip_message(message)
        self.reason = reason or self.default_reason
        self.metadata = _metadata(metadata)
        # nameko serialises exc.args as the reply's exc_args: the structure crosses the bus.
        super().__init__(self.message, self.details())

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict:
        """The JSON-safe structure behind the message (see `rich_status`)."""
        details = {"reason": self.reason}
        if self.metadata:
            details["metadata"] = self.metadata
        return details


class InvalidArgument(VocregError):
    """The request itself is wrong: a missing field, a bad type, a value out of range.

    Carries every violation found ("field.path: problem" strings), so the caller can fix them
    all at once: the message names the first few, BadRequest field violations all of them.
    """

    status = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations, *, reason: str | None = None, metadata: dict | None = None):
        if isinstance(violations, str):
            violations = [violations]
        self.violations = [clip(v, MAX_FIELD_CHARS + 2 + MAX_DESCRIPTION_CHARS)
                           for v in violations]
        self.omitted = max(0, len(self.violations) - MAX_VIOLATIONS)
        super().__init__(_summary(self.violations), reason=reason, metadata=metadata)

    def details(self) -> dict:
        details = super().details()
        details["field_violations"] = [field_violation(v)
                                       for v in self.violations[:MAX_VIOLATIONS]]
        if self.omitted:
            details.setdefault("metadata", {})["violations_omitted"] = str(self.omitted)
        return details


def _summary(violations: list[str]) -> str:
    """As many whole violations as fit the message, then how many more the details hold."""
    shown: list[str] = []
    for i, violation in enumerate(violations):
        rest = len(violations) - i
        more = f" (+{rest - 1} more in the details)" if rest > 1 else ""
        candidate = "; ".join([*shown, violation])
        if encoded_size(candidate + more) > MAX_MESSAGE_BYTES:
            if not shown:  # the first alone is too long: its prefix, then the count
                return clip_message(violation, MAX_MESSAGE_BYTES - len(more)) + more
            return "; ".join(shown) + f" (+{rest} more in the details)"
        shown.append(violation)
    return "; ".join(shown)


class NotFound(VocregError):
    status = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(VocregError):
    status = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(VocregError):
    """The request is well formed but the state of things does not allow it now.

    Carries PreconditionFailure violations: `violations` as (type, subject, description)
    triples, or by default one whose type is the reason, whose subject is `subject` (what is in
    the blocking state, e.g. "institution/<id>") and whose description is the message.
    """

    status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, reason: str | None = None, subject: str = "",
                 violations=None, metadata: dict | None = None):
        self._violations = violations
        self.subject = subject
        super().__init__(message, reason=reason, metadata=metadata)

    def details(self) -> dict:
        details = super().details()
        triples = self._violations or [(self.reason, self.subject, self.message)]
        details["precondition_violations"] = [
            {"type": clip(t, 64), "subject": clip(s, MAX_FIELD_CHARS),
             "description": clip(d, MAX_DESCRIPTION_CHARS)}
            for t, s, d in list(triples)[:MAX_VIOLATIONS]]
        return details


class PermissionDenied(VocregError):
    status = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(VocregError):
    status = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Conflict(VocregError):
    """A concurrent change won the race; the caller may read again and retry."""

    status = grpc.StatusCode.ABORTED
    default_reason = "CONCURRENT_CHANGE"


class OutOfRange(VocregError):
    status = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class Unavailable(VocregError):
    """A service this one depends on did not answer in time: the caller may retry later."""

    status = grpc.StatusCode.UNAVAILABLE
    default_reason = "DEPENDENCY_UNAVAILABLE"


class DeadlineExceeded(VocregError):
    """The caller's deadline passed before the answer came (raised at the edge)."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class ResourceExhausted(VocregError):
    """Over a rate limit or an allowance (at the edge: calls per client address; in a worker:
    e.g. complaints per hour): the caller may retry, after `retry_after` seconds when known
    (google.rpc.RetryInfo; HTTP 429 with Retry-After)."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float | None = None,
                 reason: str | None = None, metadata: dict | None = None):
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))
        super().__init__(message, reason=reason, metadata=metadata)

    def details(self) -> dict:
        details = super().details()
        if self.retry_after is not None:
            details["retry_delay_seconds"] = round(self.retry_after, 3)
        return details


DELIBERATE_ERRORS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
                     PermissionDenied, Unauthenticated, Conflict, OutOfRange, Unavailable,
                     DeadlineExceeded, ResourceExhausted)

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
# What a worker meets when its database or the broker is away (pymongo's, kombu's and
# py-amqp's, the OS's): UNAVAILABLE, the caller may retry. Their text (host names, the
# topology) is not the caller's business: the edge answers BACKEND_UNAVAILABLE_MESSAGE.
BACKEND_UNAVAILABLE = frozenset({
    "AutoReconnect", "ConnectionFailure", "NetworkTimeout", "NotPrimaryError",
    "ServerSelectionTimeoutError", "WaitQueueTimeoutError", "ExecutionTimeout",
    "OperationalError", "RecoverableConnectionError", "ConnectionForced",
    "ConnectionResetError", "ConnectionRefusedError", "BrokenPipeError",
})
BACKEND_UNAVAILABLE_MESSAGE = "the service cannot reach its database or the message bus; retry later"
GRPC_STATUS_BY_EXC_TYPE.update({name: grpc.StatusCode.UNAVAILABLE for name in BACKEND_UNAVAILABLE})
# The reason a caller sees for a code when the error carried none of its own (a nameko or
# mongoengine error type from the table above, or a failure at the edge).
DEFAULT_REASON_BY_STATUS = {cls.status: cls.default_reason for cls in DELIBERATE_ERRORS}
DEFAULT_REASON_BY_STATUS.update({grpc.StatusCode.UNIMPLEMENTED: "METHOD_NOT_FOUND",
                                 grpc.StatusCode.INTERNAL: "INTERNAL",
                                 grpc.StatusCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED"})


def grpc_status_for(exc_type: str | None) -> grpc.StatusCode:
    return GRPC_STATUS_BY_EXC_TYPE.get(exc_type or "", grpc.StatusCode.INTERNAL)


def remote_details(exc_type: str | None, exc_args) -> dict:
    """The details a deliberate error sent across the bus (its second exc_arg); {} if none."""
    if exc_type in GRPC_STATUS_BY_EXC_TYPE and isinstance(exc_args, list | tuple) \
            and len(exc_args) > 1 and isinstance(exc_args[1], dict):
        return exc_args[1]
    return {}


def rich_status(code: grpc.StatusCode, message: str, details: dict | None, service: str):
    """A grpc.Status for `context.abort_with_status`: the message (bounded) in grpc-message,
    and google.rpc.Status (`status_proto`) in grpc-status-details-bin."""
    from grpc_status import rpc_status

    return rpc_status.to_status(status_proto(code, message, details, service))


def status_proto(code: grpc.StatusCode, message: str, details: dict | None, service: str):
    """google.rpc.Status with ErrorInfo, BadRequest, PreconditionFailure and RetryInfo, kept
    within MAX_STATUS_BYTES whatever `details` holds: what gRPC callers get in the trailer
    and HTTP callers as the JSON body."""
    from google.protobuf import any_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    details = details if isinstance(details, dict) else {}
    message = clip_message(message)
    reason = details.get("reason")
    if not (isinstance(reason, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{0,62}", reason)):
        reason = DEFAULT_REASON_BY_STATUS.get(code, code.name)
    metadata = details.get("metadata")
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain=f"{DOMAIN_PREFIX}{service}",
        metadata=_metadata(metadata if isinstance(metadata, dict) else None))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(info)

    def add_within_budget(kind: str, names: tuple, violations, build) -> int:
        """Adds the violations that fit; returns how many did not."""
        if not isinstance(violations, list) or not violations:
            return 0
        detail = any_pb2.Any()
        holder = build()
        status.details.append(detail)
        added = 0
        for violation in violations[:MAX_VIOLATIONS]:
            if not isinstance(violation, dict):
                continue
            item = getattr(holder, kind).add()
            for name in names:
                limit = MAX_DESCRIPTION_CHARS if name == "description" else MAX_FIELD_CHARS
                setattr(item, name, clip(violation.get(name, ""), limit))
            status.details[-1].Pack(holder)
            if status.ByteSize() > MAX_STATUS_BYTES:
                del getattr(holder, kind)[-1]
                status.details[-1].Pack(holder)
                break
            added += 1
        if not added:
            del status.details[-1]
        return len(violations) - added

    omitted = add_within_budget("field_violations", ("field", "description"),
                                details.get("field_violations"), error_details_pb2.BadRequest)
    omitted += add_within_budget("violations", ("type", "subject", "description"),
                                 details.get("precondition_violations"),
                                 error_details_pb2.PreconditionFailure)
    if omitted:
        info.metadata["violations_omitted"] = str(
            omitted + int(info.metadata.get("violations_omitted", "0") or 0))
        status.details[0].Pack(info)
    delay = details.get("retry_delay_seconds")
    if isinstance(delay, int | float) and not isinstance(delay, bool) and 0 <= delay < 1e6:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(delay * 1e9))
        status.details.add().Pack(retry)
    return status
