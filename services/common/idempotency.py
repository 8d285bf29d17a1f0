"""Retries made safe: the `request_id` of every mutating RPC (Google AIP-155), one mechanism for
every service.

The semantics, the same everywhere:
- the same request again (same caller, same request_id, same content) answers as the first
  call did, and changes nothing more;
- the same request_id from the same caller with other content is ALREADY_EXISTS;
- a refused request stores nothing, so its request_id may be used again (with any content);
- a request id is remembered for RETENTION after the call that used it.

Whether an RPC takes a request_id, and whether it must, is declared in its proto: the request
message's `request_id` field carries `(vocreg.common.v1.field) = {request_id: REQUIRED |
OPTIONAL}` with a comment saying why (protos/vocreg/common/v1/field.proto). A handler declares
nothing else, except that it `@rebuilds_its_answer` (below).

How it survives crashes without a transaction over two documents: the record of a request
(its key, the digest of its content and, when the call finished, its answer) is written INSIDE
the aggregate documents the call changes, in the same conditional write as the change itself
(`services.common.uow.UnitOfWork`): a crash leaves both or neither. A retry first looks the key
up in the service's aggregate collections (an index on `request_log.key`, services/common/
storage.py):
- found with an answer: that answer, nothing runs;
- found with other content: ALREADY_EXISTS;
- found without an answer (a call that wrote one aggregate mid-call, `uow.flush(a)`, and was cut
  short before its last write): the handler runs again and finishes the work; handlers that
  write mid-call are written to be run again (each finds what the first run did);
- not found: the handler runs; what it creates takes an id derived from the request key
  (`uow.new_id()`), so two concurrent copies of one request collide on the database's
  primary key and the loser answers with the winner's answer.

A handler whose answer is too large to store (IssueCertificates: 10,000 rows) declares
`@rebuilds_its_answer`: its request records carry no answer, and a retry runs the handler
again, which finds the operation it created under its derived id and rebuilds the answer from
what that call wrote.
"""
from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache

from services.common.auth import Identity
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT

# How long a request id is remembered: well past any client's retry after a timeout (minutes)
# or a batch job re-run the next working day after a long holiday.
RETENTION = timedelta(days=7)
# Request records kept per aggregate (the newest), so a document changed by many requests does
# not grow without bound; a retry of a request older than the last 32 changes of the same record
# is run again (and refused FAILED_PRECONDITION, or answered "unchanged", by its handler).
KEPT_PER_AGGREGATE = 32

REQUIRED, OPTIONAL = "REQUIRED", "OPTIONAL"
FIELD = "request_id"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the mechanism knows it: who, which RPC, which id, what content."""

    key: str         # sha256 of (service, RPC, caller, request_id): never the id in clear
    digest: str      # sha256 of the request's content
    request_id: str

    def entry(self, at: datetime, answer: dict | None = None) -> dict:
        """As stored in an aggregate's `request_log`."""
        entry = {"key": self.key, "digest": self.digest, "at": at}
        if answer is not None:
            entry["answer"] = encode_answer(answer)
        return entry


def rebuilds_its_answer(handler):
    """Declare that `handler`, run again for a request it already served, answers as the first
    time from what the first run stored: its request records carry no answer (see above)."""
    handler.rebuilds_its_answer = True
    return handler


def check_request_id(value, errors: list, path: str = FIELD, required: bool = True) -> str:
    """The client's id of a request (its retries carry the same one); one message for every
    RPC: "request_id: required, 1-64 of A-Z a-z 0-9 . _ : -"."""
    request_id = value.strip() if isinstance(value, str) else ""
    if (request_id or required) and not CLIENT_ID.match(request_id):
        errors.append(f"{path}: required, {CLIENT_ID_HINT}")
    return request_id


@cache
def request_id_use(service: str, rpc: str) -> str | None:
    """REQUIRED or OPTIONAL as the RPC's request message declares it; None if it has no
    request_id (a read, or an RPC that is not one of the service's)."""
    from services.common.limits import field_rules
    from services.common.protos import service_proto
    from services.common.spec import registry

    if service not in registry():
        return None
    method = service_proto(service).service_descriptor.methods_by_name.get(rpc)
    field = method.input_type.fields_by_name.get(FIELD) if method is not None else None
    rules = field_rules(field) if field is not None else None
    if rules is None or not rules.request_id:
        return None
    from vocreg.common.v1 import field_pb2

    return field_pb2.RequestIdUse.Name(rules.request_id).removeprefix("REQUEST_ID_USE_")


def _sha256(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(value):
    """A request as proto3 means it: fields at their default (None, "", 0, False, empty list or
    map) are absent, so `{"note": ""}` and `{}` are the same request."""
    if isinstance(value, dict):
        cleaned = {k: canonical(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items()
                if v is not None and v is not False and v != "" and v != [] and v != {}
                and not (isinstance(v, int | float) and not isinstance(v, bool) and v == 0)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def identify(service: str, rpc: str, caller: Identity, request: dict,
             message=None) -> tuple[RequestRecord | None, str | None]:
    """(the request's record, or None when it has no request_id; the violation of a missing
    or malformed request_id, or None). `message`: the request parsed into its proto message,
    whose deterministic serialisation is the content compared (an enum given by number or by
    name, a default value written out or left out: the same request)."""
    use = request_id_use(service, rpc)
    if use is None:
        return None, None
    errors: list[str] = []
    request_id = check_request_id(request.get(FIELD), errors, required=use == REQUIRED)
    if errors:
        return None, errors[0]
    if not request_id:
        return None, None
    who = [caller.role or "anonymous", caller.subject, caller.institution_id or "",
           caller.party_id or ""]
    key = _sha256([service, rpc, *who, request_id])
    if message is not None:
        digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    else:
        digest = _sha256(canonical(request))
    return RequestRecord(key, digest, request_id), None


def encode_answer(answer: dict) -> bytes:
    """Answers are stored compressed: a view of an application is a few KB of repetitive
    JSON, and a document keeps up to KEPT_PER_AGGREGATE of them."""
    return zlib.compress(json.dumps(answer, ensure_ascii=False).encode(), 6)


def decode_answer(stored: bytes) -> dict:
    return json.loads(zlib.decompress(bytes(stored)))


def remember(entries: list[dict] | None, entry: dict, now: datetime) -> list[dict]:
    """An aggregate's request records with `entry` in (replacing the same key's), the expired
    ones and those past KEPT_PER_AGGREGATE dropped."""
    kept = [e for e in entries or [] if e.get("key") != entry["key"] and _fresh(e, now)]
    return (kept + [entry])[-KEPT_PER_AGGREGATE:]


def _fresh(entry: dict, now: datetime) -> bool:
    at = entry.get("at")
    if at is None:
        return False
    if at.tzinfo is None:  # BSON dates come back naive, in UTC
        at = at.replace(tzinfo=timezone.utc)
    return now - at < RETENTION


def earlier_answer(record: RequestRecord, entries: list[dict], now: datetime,
                   stored_answer: bool = True) -> dict | None:
    """What a request found among the records of earlier ones: their answer if it was the same
    request and finished; None if there was none (or it must run again); ALREADY_EXISTS if the
    request_id was used for other content."""
    entries = [e for e in entries if e.get("key") == record.key and _fresh(e, now)]
    if any(e.get("digest") != record.digest for e in entries):
        raise AlreadyExists(f"request_id was already used for a different request "
                            f"({record.request_id}); use a new request_id for new content",
                            reason="REQUEST_ID_REUSED")
    if stored_answer:
        for entry in entries:
            if entry.get("answer") is not None:
                return decode_answer(entry["answer"])
    return None


def new_id(record: RequestRecord | None, n: int) -> str:
    """The id of the n-th aggregate a call creates: derived from the request when it has a
    request_id (so the same request creates the same ids), random otherwise."""
    if record is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{record.key}:{n}".encode()).hexdigest()[:32]


def run(handler, command, uow, clock, settings, request_message=None, **ports):
    """Run an RPC handler the way every worker does (Worker.handle, and tests/fakes.run): the
    request_id looked up first, the handler, the unit of work written (its request records
    inside), its events published. `request_message`: the request as its proto message (the
    `@api` entrypoint parsed it), if at hand."""
    service, rpc = uow.source, command.rpc
    record, problem = identify(service, rpc, command.caller, command.request, request_message)
    stores_answer = not getattr(handler, "rebuilds_its_answer", False)
    if record is not None:
        answer = earlier_answer(record, uow.repo.request_entries(record.key), clock.now(),
                                stores_answer)
        if answer is not None:
            return answer
        uow.request = record
    elif problem is not None:
        # Nothing may be written: the handler runs only to report the request's other problems
        # with this one (every problem at once); the unit of work refuses its first write.
        uow.refuse_writes(problem)
    try:
        answer = handler(command, uow, clock, settings, **ports)
        if record is not None and stores_answer:
            uow.answer = answer
        uow.flush()
    except InvalidArgument as exc:
        if problem is not None and not any(v.startswith(f"{FIELD}:") for v in exc.violations):
            raise InvalidArgument([problem, *exc.violations]) from None
        raise
    except (NotFound, FailedPrecondition, AlreadyExists, Conflict):
        if problem is not None:  # a bad request is answered as such, whatever the state
            raise InvalidArgument([problem]) from None
        # Two copies of one request at once: the other one's write won. Answer with its answer.
        if record is not None:
            answer = earlier_answer(record, uow.repo.request_entries(record.key), clock.now(),
                                    stores_answer)
            if answer is not None:
                return answer
        raise
    uow.publish()
    return answer
