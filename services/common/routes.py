"""HTTP/JSON routes derived from the protos' `google.api.http` annotations.

Every RPC of every declared service declares its route in its proto
(`option (google.api.http) = {get: "/v1/certificates/{certificate_number}:verify"}`), as
Google's APIs and grpc-gateway do. Nothing here names a service: the routes of a new service
are served as soon as it is declared (services/common/spec.py). The mapping follows
google/api/http.proto:

- path variables (`{name}`, `{a.b}`; `{name=**}` for a value that may hold slashes) set the
  request fields they name;
- `body: "*"`: the JSON body is the request message (less the path fields); `body: "field"`:
  the body is that field; no body: every other field comes from the query string, dotted for
  nested messages (`page.page_size=20`), repeated by repeating the key;
- JSON field names are the proto names (as the workers and protos/examples use them); the
  lowerCamelCase JSON names are accepted too, as the proto3 JSON mapping requires.

Plain Python on the descriptors: the edge (no eventlet) and the OpenAPI generator use it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qsl

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import ParseDict, ParseError

from services.common.errors import InvalidArgument

VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class Route:
    service: str                 # the declared service's name ("certificates")
    rpc: str                     # "VerifyCertificate"
    full_method: str             # "vocreg.certificates.v1.CertificateRegistry/VerifyCertificate"
    verb: str                    # "get", "post", ...
    template: str                # "/v1/certificates/{certificate_number}:verify"
    body: str                    # "", "*" or a field name
    variables: tuple[str, ...]   # field paths set from the path, in order
    pattern: re.Pattern
    method: object               # google.protobuf.descriptor.MethodDescriptor

    @property
    def openapi_path(self) -> str:
        """The template as OpenAPI writes it: `{name=**}` as `{name}`."""
        return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", self.template)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else dict(zip(self.variables, found.groups(), strict=True))


def compile_template(template: str) -> tuple[re.Pattern, tuple[str, ...]]:
    """The regular expression of a path template and the field paths of its variables."""
    if not template.startswith("/"):
        raise ValueError(f"path template {template!r} must start with /")
    variables, parts, at = [], [], 0
    for found in _VARIABLE.finditer(template):
        parts.append(re.escape(template[at:found.start()]))
        variables.append(found.group(1))
        # A variable is one segment unless it says ** (a verb after it stays outside).
        parts.append("(.+?)" if (found.group(2) or "").endswith("**") else "([^/]+?)")
        at = found.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts)), tuple(variables)


def _bindings(rule):
    yield rule
    yield from rule.additional_bindings


@cache
def service_routes(service: str) -> tuple[Route, ...]:
    """Every route of one declared service, in the proto's order (additional bindings after
    their main one); an RPC without an annotation has none (tests/deploy checks there is
    none such)."""
    from google.api import annotations_pb2

    from services.common.protos import service_proto

    proto = service_proto(service)
    found = []
    for method in proto.service_descriptor.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        for rule in _bindings(options.Extensions[annotations_pb2.http]):
            verb = rule.WhichOneof("pattern")
            if verb not in VERBS:
                raise ValueError(f"{method.full_name}: HTTP pattern {verb!r} is not served")
            template = getattr(rule, verb)
            pattern, variables = compile_template(template)
            for variable in variables:
                _field_path(method.input_type, variable)  # fails early on a typo
            if rule.body not in ("", "*"):
                _field_path(method.input_type, rule.body)
            found.append(Route(service=service, rpc=method.name,
                               full_method=f"{proto.full_name}/{method.name}", verb=verb,
                               template=template, body=rule.body, variables=variables,
                               pattern=pattern, method=method))
    return tuple(found)


def all_routes(services) -> tuple[Route, ...]:
    return tuple(route for name in services for route in service_routes(name))


class RouteTable:
    """Finds the route of a request. Literal-rich templates win over looser ones
    (`/v1/certificates:stats` before `/v1/certificates/{certificate_number}`)."""

    def __init__(self, routes):
        self.routes = sorted(routes, key=lambda r: (-len(_VARIABLE.sub("", r.template)),
                                                    r.template))

    def find(self, verb: str, path: str) -> tuple[Route | None, dict, bool]:
        """(the route, its path variables, whether the path exists under another verb)."""
        other_verb = False
        for route in self.routes:
            values = route.match(path)
            if values is None:
                continue
            if route.verb == verb:
                return route, values, True
            other_verb = True
        return None, {}, other_verb


# --- building the request message ---------------------------------------------------------------
def _field_path(descriptor, path: str) -> list[FieldDescriptor]:
    fields = []
    for name in path.split("."):
        field = descriptor.fields_by_name.get(name) if descriptor is not None else None
        if field is None:
            raise ValueError(f"{path!r} is not a field of {descriptor.full_name}")
        fields.append(field)
        descriptor = field.message_type
    return fields


def _lookup(descriptor, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name) or next(
        (f for f in descriptor.fields if f.json_name == name), None)


def _scalar(field: FieldDescriptor, raw: str, where: str):
    """A query-string or path value as its JSON value (ParseDict then checks its range)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0", ""):
            return False
        raise InvalidArgument(f"{where}: must be true or false", reason="MALFORMED_REQUEST")
    if kind == FieldDescriptor.TYPE_ENUM:
        return int(raw) if re.fullmatch(r"-?\d+", raw) else raw
    if kind == FieldDescriptor.TYPE_MESSAGE:
        # Well-known wrappers and Timestamps take their JSON string form.
        return raw
    return raw  # numbers as strings are valid proto JSON; strings as they are


def _put(target: dict, descriptor, path: str, raw: str, *, from_path: bool) -> None:
    names = path.split(".")
    where = path
    for i, name in enumerate(names):
        field = _lookup(descriptor, name)
        if field is None:
            raise InvalidArgument(f"{where}: no such field", reason="MALFORMED_REQUEST")
        last = i == len(names) - 1
        if not last:
            if field.message_type is None or field.is_repeated:
                raise InvalidArgument(f"{where}: no such field", reason="MALFORMED_REQUEST")
            target = target.setdefault(field.name, {})
            descriptor = field.message_type
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            raise InvalidArgument(f"{where}: maps cannot be given in the query string",
                                  reason="MALFORMED_REQUEST")
        if field.type == FieldDescriptor.TYPE_MESSAGE and \
                not field.message_type.full_name.startswith("google.protobuf."):
            raise InvalidArgument(f"{where}: a message; give its fields ({where}.<field>)",
                                  reason="MALFORMED_REQUEST")
        value = _scalar(field, raw, where)
        if field.is_repeated and not from_path:
            target.setdefault(field.name, []).append(value)
        else:
            target[field.name] = value


def build_request(route: Route, path_values: dict[str, str], query: str, body: bytes):
    """The request message of a call: path variables, then the body or the query string.
    InvalidArgument (reason MALFORMED_REQUEST) for anything that is not the message."""
    from google.protobuf import message_factory

    descriptor = route.method.input_type
    data: dict = {}
    if route.body:
        if not body.strip():
            payload = {}
        else:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgument("body: not valid JSON", reason="MALFORMED_REQUEST") \
                    from None
        if route.body == "*":
            if not isinstance(payload, dict):
                raise InvalidArgument(f"body: a JSON object ({descriptor.full_name})",
                                      reason="MALFORMED_REQUEST")
            data = payload
        else:
            data[route.body] = payload
    elif query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                              max_num_fields=1000)
        except ValueError as exc:
            raise InvalidArgument(f"query: {exc}", reason="MALFORMED_REQUEST") from None
        for key, value in pairs:
            _put(data, descriptor, key, value, from_path=False)
    for path, value in path_values.items():
        _put(data, descriptor, path, value, from_path=True)
    message_class = message_factory.GetMessageClass(descriptor)
    try:
        return ParseDict(data, message_class())
    except ParseError as exc:
        raise InvalidArgument(f"request: {exc}"[:400], reason="MALFORMED_REQUEST") from None
    except RecursionError:
        raise InvalidArgument("request: nested too deep", reason="MALFORMED_REQUEST") from None
