"""Every method of every service the edge serves, found by reflection (so a service that lands
later is covered without a line here), called with bad input by every kind of caller: random
and undecodable bytes, wrong wire types, invalid UTF-8, oversize values, control characters,
values of the right type but no meaning, and wrong roles.

Nothing may answer INTERNAL or UNKNOWN (a bug), nor RESOURCE_EXHAUSTED (an error that grew
past gRPC's trailer limit); undecodable bytes are INVALID_ARGUMENT whoever calls; and nothing
is stored by any of it.
"""
from __future__ import annotations

import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.common.auth import issue_token
from services.common.spec import registry
from tests.faults.conftest import record
from tests.support import token

pytestmark = pytest.mark.faults

NOT_OURS = ("grpc.health.", "grpc.reflection.")
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.RESOURCE_EXHAUSTED}
BIG = 100_000      # one oversize value
WIDE = 5_000       # every string at once (the whole message stays under the edge's limit)
# A value past its field's maximum length: refused as such, unless the caller is refused first.
REFUSED_OVERSIZE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED}
# Bytes no protobuf parser accepts: a wire type that does not exist, a truncated field, a
# length past the end.
UNDECODABLE = (b"\xff", b"\x07", b"\x0a\x05ab", b"\x0a\xff\xff\xff\xff\x0f")


RAW = ("undecodable", "random")  # cases that are bytes, not a message
BYTES_CALLERS = ("anonymous", "garbage token", "regulator")


def callers() -> dict[str, tuple]:
    """Ten kinds of caller, as the edge sees their metadata."""
    def bearer(value):
        return (("authorization", f"Bearer {value}"),)

    return {
        "anonymous": (),
        "garbage token": bearer("not-a-token"),
        "expired": bearer(issue_token("regulator", "old", ttl_seconds=-3600)),
        "wrong secret": bearer(issue_token("regulator", "forger", secret="x" * 32)),
        "regulator": bearer(token("regulator")),
        "institution": bearer(token("institution", 1)),
        "inspector": bearer(token("inspector")),
        "service": bearer(token("service", sub="filing")),
        "assessor": bearer(token("assessor", 1)),
        "trainee": bearer(token("trainee", 1)),
    }


# --- discovery ------------------------------------------------------------------------------
def discover(channel) -> dict[str, list]:
    """{service full name: [method descriptors]} of every service reflection lists."""
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    found = {}
    for name in database.get_services():
        if name.startswith(NOT_OURS):
            continue
        found[name] = list(pool.FindServiceByName(name).methods)
    return found


# --- messages -------------------------------------------------------------------------------
def message_class(descriptor):
    return message_factory.GetMessageClass(descriptor)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number: int, wire: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire) + payload


def string_paths(descriptor, depth: int = 0, prefix=()):
    """Paths (tuples of field descriptors) to the string fields, one message level deep."""
    for field in descriptor.fields:
        if field.type == d.FieldDescriptor.TYPE_STRING:
            yield (*prefix, field)
        elif field.type == d.FieldDescriptor.TYPE_MESSAGE and depth < 1 \
                and not field.message_type.GetOptions().map_entry:
            yield from string_paths(field.message_type, depth + 1, (*prefix, field))


def set_path(message, path, value) -> None:
    *parents, last = path
    for field in parents:
        if field.is_repeated:
            message = getattr(message, field.name).add()
        else:
            message = getattr(message, field.name)
    if last.is_repeated:
        getattr(message, last.name).append(value)
    else:
        setattr(message, last.name, value)


def filled(descriptor, value_of) -> bytes:
    """A message with every field set (repeated: one entry), one message level deep."""
    return _filled(descriptor, value_of).SerializeToString()


def _filled(descriptor, value_of, depth: int = 0):
    message = message_class(descriptor)()
    for field in descriptor.fields:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            if depth >= 1 or field.message_type.GetOptions().map_entry \
                    or field.message_type.full_name.startswith("google.protobuf."):
                continue
            inner = _filled(field.message_type, value_of, depth + 1)
            if field.is_repeated:
                getattr(message, field.name).add().CopyFrom(inner)
            else:
                getattr(message, field.name).CopyFrom(inner)
            continue
        value = value_of(field)
        if value is None:
            continue
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def meaningless(field):
    """A value of the field's type that means nothing: unknown enum numbers, negative
    numbers, a short nonsense string."""
    t = d.FieldDescriptor
    if field.type == t.TYPE_STRING:
        return "zz-9"
    if field.type == t.TYPE_ENUM:
        return 977
    if field.type == t.TYPE_BOOL:
        return True
    if field.type in (t.TYPE_INT32, t.TYPE_INT64, t.TYPE_SINT32, t.TYPE_SINT64,
                      t.TYPE_SFIXED32, t.TYPE_SFIXED64):
        return -7
    if field.type in (t.TYPE_UINT32, t.TYPE_UINT64, t.TYPE_FIXED32, t.TYPE_FIXED64):
        return 4_000_000_000 if field.type in (t.TYPE_UINT64, t.TYPE_FIXED64) else 7
    if field.type in (t.TYPE_DOUBLE, t.TYPE_FLOAT):
        return -1e300 if field.type == t.TYPE_DOUBLE else -1.5
    if field.type == t.TYPE_BYTES:
        return b"\x00\xff"
    return None


def wrong_wire_types(descriptor) -> bytes:
    """Every field sent with a wire type it does not have."""
    out = b""
    for field in descriptor.fields:
        if field.type in (d.FieldDescriptor.TYPE_STRING, d.FieldDescriptor.TYPE_MESSAGE,
                          d.FieldDescriptor.TYPE_BYTES):
            out += field_bytes(field.number, 0, varint(2**63))
        else:
            out += field_bytes(field.number, 2, varint(3) + b"abc")
    return out


def cases(method) -> list[tuple[str, bytes]]:
    """(what, request bytes) for one method."""
    descriptor = method.input_type
    rng = random.Random(method.full_name)
    made = [("empty", b"")]
    made += [(f"undecodable {i}", raw) for i, raw in enumerate(UNDECODABLE)]
    made += [(f"random {n} bytes", rng.randbytes(n)) for n in (9, 200)]
    made.append(("wrong wire types", wrong_wire_types(descriptor)))
    made.append(("meaningless values", filled(descriptor, meaningless)))
    strings = list(string_paths(descriptor))
    if strings:
        first = strings[0]
        if len(first) == 1:
            made.append(("invalid UTF-8", field_bytes(first[0].number, 2, b"\x02\xc3\x28")))
        made.append(("every string wide", filled(
            descriptor, lambda f: "w" * WIDE if f.type == d.FieldDescriptor.TYPE_STRING
            else meaningless(f))))
        made.append(("control characters", filled(
            descriptor, lambda f: "a\x00b\x1bc" if f.type == d.FieldDescriptor.TYPE_STRING
            else meaningless(f))))
    return made


def oversize_cases(method) -> list[tuple[str, bytes]]:
    """One 100,000-character value in each string field, alone."""
    made = []
    for path in string_paths(method.input_type):
        message = message_class(method.input_type)()
        set_path(message, path, "x" * BIG)
        made.append((f"{'.'.join(f.name for f in path)} of {BIG} chars",
                     message.SerializeToString()))
    return made


# --- what is stored -------------------------------------------------------------------------
def stored(plat) -> dict[str, str]:
    """A digest of each collection of the platform's databases (but workers' heartbeats)."""
    digests = {}
    for service in plat.services:
        db = plat.db(service)
        for name in sorted(db.list_collection_names()):
            if name == "workers":
                continue
            digest = hashlib.sha256()
            for doc in db[name].find().sort("_id", 1):
                digest.update(json.dumps(doc, sort_keys=True, default=str).encode())
            digests[f"{service}.{name}"] = digest.hexdigest()
    return digests


# --- the fuzz -------------------------------------------------------------------------------
def call(channel, path: str, payload: bytes, metadata) -> grpc.StatusCode:
    """The answer's code. RESOURCE_EXHAUSTED is FORBIDDEN unless it is a deliberate
    allowance (ErrorInfo reason RATE_LIMITED, e.g. complaints per hour): then it counts as
    PERMISSION_DENIED would, a refusal."""
    method = channel.unary_unary(path)  # bytes in, bytes out: nothing decoded here
    try:
        method(payload, metadata=metadata, timeout=10)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason_of(exc) == "RATE_LIMITED":
            return ALLOWANCE
        return exc.code()


class _Allowance:
    name = "RESOURCE_EXHAUSTED (an allowance)"


ALLOWANCE = _Allowance()


def reason_of(exc: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def test_every_method_refuses_bad_input_from_every_caller(plat):
    found = discover(plat.channel)
    served = {registry()[s].proto for s in plat.services}
    assert set(found) == served, "reflection and the registry disagree"
    who = callers()
    work = []
    for service, methods in found.items():
        for method in methods:
            path = f"/{service}/{method.name}"
            for caller, metadata in who.items():
                # Bytes that do not decode are refused before anyone is asked who calls:
                # three kinds of caller are enough for them.
                work += [(path, what, payload, caller, metadata)
                         for what, payload in cases(method)
                         if caller in BYTES_CALLERS or not what.startswith(RAW)]
            for caller in ("regulator", "institution"):
                work += [(path, what, payload, caller, who[caller])
                         for what, payload in oversize_cases(method)]
    codes = send(plat, work)
    bad, undecoded, oversize, ok_mutations = [], [], [], []
    side_effects = {f"/{s}/{m.name}": m.GetOptions().idempotency_level
                    for s, methods in found.items() for m in methods}
    # A change whose request holds nothing but its idempotency key (RebuildFigures) has no
    # input that could be meaningless: any well-formed key asks for the change.
    key_only = {f"/{s}/{m.name}" for s, methods in found.items() for m in methods
                if {f.name for f in m.input_type.fields} == {"request_id"}}
    for (path, what, _, caller, _), code in zip(work, codes, strict=True):
        record(code.name)
        if code in FORBIDDEN:
            bad.append(f"{path} {what} as {caller}: {code.name}")
        if what.startswith("undecodable") and code != grpc.StatusCode.INVALID_ARGUMENT:
            undecoded.append(f"{path} {what} as {caller}: {code.name}")
        if what.endswith(f"of {BIG} chars") and code not in REFUSED_OVERSIZE:
            oversize.append(f"{path} {what} as {caller}: {code.name}")
        if code == grpc.StatusCode.OK and side_effects[path] != \
                descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS and path not in key_only:
            ok_mutations.append(f"{path} {what} as {caller}")
    assert bad == [], f"{len(bad)} calls answered {sorted({b.rsplit(' ', 1)[1] for b in bad})}: " \
                      f"{bad[:10]}"
    assert undecoded == [], undecoded[:10]
    assert oversize == [], f"every string field has a maximum length: {oversize[:10]}"
    assert ok_mutations == [], f"bad input changed something: {ok_mutations[:10]}"
    # Nothing stored by a refusal: what the accepted calls did (reads may keep something, e.g.
    # the decision log's first signed head) is done by now; every refused call is sent again,
    # refused again, and must change nothing at all.
    refused = [w for w, code in zip(work, codes, strict=True)
               if code != grpc.StatusCode.OK and not w[1].startswith(RAW)]
    before = stored(plat)
    for code in send(plat, refused):
        record(code.name)
    after = stored(plat)
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    assert changed == [], f"a refused request stored something in {changed}"


def send(plat, work) -> list:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda w: call(plat.channel, w[0], w[2], w[4]), work))
