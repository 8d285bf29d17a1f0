"""The limits every request field declares in its proto (`(vocreg.common.v1.field)`, see
protos/vocreg/common/v1/field.proto), checked on the parsed message: string lengths, control
characters, and the number of entries of repeated fields, through nested messages and lists,
each violation naming the field's path ("rows[3].row_ref: at most 64 characters (got
100000)"). A value is never quoted: a 100 KB field must not come back in the error.

services/common/api.py `check_message` runs this on every request a worker receives, the edge
on every request it answers itself (services/common/edge_reads.py).
"""
from __future__ import annotations

import re
from functools import cache

from google.protobuf.descriptor import FieldDescriptor

from services.common.errors import InvalidArgument
from services.common.turns import in_turns

# At most this many violations are listed (then one line counts the rest): a 10,000-row batch
# of bad rows gets an answer of a few KB, not one that overflows gRPC's trailer.
MAX_VIOLATIONS = 50

# Unicode category Cc (C0 controls, DEL, C1 controls), unpaired surrogates (a JSON caller can
# send "\ud800"), and the line and paragraph separators. Multi-line text accepts \t \n \r.
_SINGLE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MULTILINE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _rules_extension():
    from vocreg.common.v1 import field_pb2

    return field_pb2.field


def field_rules(field: FieldDescriptor):
    """The field's declared FieldRules, or None."""
    options = field.GetOptions()
    extension = _rules_extension()
    return options.Extensions[extension] if options.HasExtension(extension) else None


@cache
def _plan(descriptor) -> tuple:
    """Per field of a message type: (name, is_string, is_message, repeated, is_map, max_length,
    max_items, multiline). Computed once per message type."""
    plan = []
    for field in descriptor.fields:
        rules = field_rules(field)
        plan.append((
            field.name,
            field.type == FieldDescriptor.TYPE_STRING,
            field.type == FieldDescriptor.TYPE_MESSAGE,
            field.is_repeated,
            field.message_type is not None and field.message_type.GetOptions().map_entry,
            rules.max_length if rules else 0,
            rules.max_items if rules else 0,
            bool(rules and rules.multiline),
        ))
    return tuple(plan)


def text_problem(value: str, max_length: int, multiline: bool) -> str | None:
    """Why a string value is refused (without quoting it), or None."""
    if max_length and len(value) > max_length:
        return f"at most {max_length} characters (got {len(value)})"
    found = (_MULTILINE_FORBIDDEN if multiline else _SINGLE_LINE_FORBIDDEN).search(value)
    if found:
        return f"control character U+{ord(found.group()):04X} is not allowed"
    return None


def violations(message, path: str = "") -> list[str]:
    """Every violation of the declared limits in `message` (a parsed proto message), the first
    MAX_VIOLATIONS of them listed and the rest counted."""
    found: list[str] = []
    _walk(message, path, found)
    if len(found) > MAX_VIOLATIONS:
        more = len(found) - MAX_VIOLATIONS
        found = found[:MAX_VIOLATIONS] + [f"{path or 'request'}: {more} more violations "
                                           "not listed"]
    return found


def _walk(message, path: str, found: list[str]) -> None:
    prefix = f"{path}." if path else ""
    for (name, is_string, is_message, repeated, is_map, max_length, max_items,
         multiline) in _plan(message.DESCRIPTOR):
        if is_message and not repeated:
            if not message.HasField(name):
                continue
        elif not is_string and not repeated:
            continue  # numbers, booleans and enums: the parse checked them
        value = getattr(message, name)
        if not value:
            continue
        where = prefix + name
        if is_map:
            if max_items and len(value) > max_items:
                found.append(f"{where}: at most {max_items} entries (got {len(value)})")
            for key in value:
                if isinstance(key, str):
                    _check_text(key, f"{where}[key]", max_length, multiline, found)
                item = value[key]
                if isinstance(item, str):
                    _check_text(item, f"{where}[{key!s:.20}]", max_length, multiline, found)
                elif hasattr(item, "DESCRIPTOR"):
                    _walk(item, f"{where}[{key!s:.20}]", found)
            continue
        if repeated:
            if max_items and len(value) > max_items:
                found.append(f"{where}: at most {max_items} entries (got {len(value)})")
                continue  # the entries of a list that is refused whole are not read
            for i, item in enumerate(in_turns(value)):  # 10,000 rows: other calls' turns
                if is_string:
                    _check_text(item, f"{where}[{i}]", max_length, multiline, found)
                elif is_message:
                    _walk(item, f"{where}[{i}]", found)
        elif is_string:
            _check_text(value, where, max_length, multiline, found)
        elif is_message:
            _walk(value, where, found)


def _check_text(value: str, where: str, max_length: int, multiline: bool, found: list) -> None:
    problem = text_problem(value, max_length, multiline)
    if problem:
        found.append(f"{where}: {problem}")


# --- what the coverage test and the generated reference read ----------------------------------
def request_messages(service_descriptor) -> list:
    """Every message type a request of this service can carry (its RPCs' inputs and every
    message reachable from them), google.protobuf's own types left out."""
    seen: dict[str, object] = {}

    def visit(descriptor):
        if descriptor.full_name in seen or descriptor.full_name.startswith("google.protobuf."):
            return
        seen[descriptor.full_name] = descriptor
        for field in descriptor.fields:
            if field.message_type is not None:
                visit(field.message_type)

    for method in service_descriptor.methods:
        visit(method.input_type)
    return list(seen.values())


def undeclared(descriptor) -> list[str]:
    """Fields of a request message type without their limit: strings without max_length,
    repeated fields (and maps) without max_items."""
    missing = []
    for field in descriptor.fields:
        rules = field_rules(field)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if field.is_repeated and not (rules and rules.max_items):
            missing.append(f"{descriptor.full_name}.{field.name}: no max_items")
        string_keys = is_map and \
            field.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
        if (field.type == FieldDescriptor.TYPE_STRING or string_keys) and \
                not (rules and rules.max_length):
            missing.append(f"{descriptor.full_name}.{field.name}: no max_length")
    return missing


def check(message) -> None:
    """InvalidArgument with every violation of the declared limits in `message`, if any."""
    found = violations(message)
    if found:
        raise InvalidArgument(found)
