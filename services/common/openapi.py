"""The OpenAPI 3 document of the HTTP/JSON API, generated from the protos at build time.

    python -m services.common.openapi services/gen/descriptors.pb services/gen/openapi.json

(`make install` / `make protos` run it after protoc.) The routes are the ones the edge serves
(services/common/routes.py, from the `google.api.http` annotations of every declared
service); the descriptions are the protos' own comments, read from a descriptor set built
with source info; the schemas follow the proto3 JSON mapping with the proto field names, the
field limits of field.proto (maxLength, maxItems) and the access policy of each RPC (public,
or the roles that may call it). The edge serves the file at /openapi.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from services.common import limits
from services.common.protos import access_policies, service_proto
from services.common.routes import Route, service_routes
from services.common.spec import registry

OPENAPI_VERSION = "3.0.3"
ERROR_SCHEMA = "google.rpc.Status"

_INTEGER32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
              FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_UINT32,
              FieldDescriptor.TYPE_FIXED32}
_INTEGER64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64,
              FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_UINT64,
              FieldDescriptor.TYPE_FIXED64}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.DoubleValue": {"type": "number", "nullable": True},
}
HTTP_STATUS_NOTE = ("Refusals answer with the gRPC code's HTTP status (400 INVALID_ARGUMENT and "
                    "FAILED_PRECONDITION, 401, 403, 404, 409 ALREADY_EXISTS and ABORTED, 429 "
                    "RESOURCE_EXHAUSTED with Retry-After, 503, 504) and a google.rpc.Status body: "
                    "code, message and details (ErrorInfo reason and domain, BadRequest field "
                    "violations, PreconditionFailure, RetryInfo).")


class Comments:
    """Leading comments of the protos' elements by full name, from a descriptor set."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet | None = None):
        self.by_name: dict[str, str] = {}
        for file in (descriptor_set.file if descriptor_set else ()):
            self._file(file)

    def _file(self, file) -> None:
        located = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location
                   if loc.leading_comments}
        prefix = f"{file.package}." if file.package else ""

        def message(msg, path, scope):
            name = f"{scope}{msg.name}"
            self._put(name, located.get(path))
            for i, field in enumerate(msg.field):
                self._put(f"{name}.{field.name}", located.get((*path, 2, i)))
            for i, nested in enumerate(msg.nested_type):
                message(nested, (*path, 3, i), f"{name}.")
            for i, enum in enumerate(msg.enum_type):
                self._put(f"{name}.{enum.name}", located.get((*path, 4, i)))

        for i, msg in enumerate(file.message_type):
            message(msg, (4, i), prefix)
        for i, enum in enumerate(file.enum_type):
            self._put(f"{prefix}{enum.name}", located.get((5, i)))
        for i, service in enumerate(file.service):
            self._put(f"{prefix}{service.name}", located.get((6, i)))
            for j, method in enumerate(service.method):
                self._put(f"{prefix}{service.name}.{method.name}", located.get((6, i, 2, j)))

    def _put(self, name: str, text: str | None) -> None:
        if text:
            self.by_name[name] = " ".join(line.strip() for line in text.strip().splitlines())

    def get(self, name: str) -> str:
        return self.by_name.get(name, "")


class SchemaBuilder:
    def __init__(self, comments: Comments):
        self.comments = comments
        self.schemas: dict[str, dict] = {}

    def ref(self, descriptor) -> dict:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages end here
            self.schemas[name] = self._message(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def enum_ref(self, descriptor) -> dict:
        name = descriptor.full_name
        if name not in self.schemas:
            schema = {"type": "string", "enum": [v.name for v in descriptor.values]}
            if self.comments.get(name):
                schema["description"] = self.comments.get(name)
            self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _message(self, descriptor) -> dict:
        schema: dict = {"type": "object", "properties": {}}
        if self.comments.get(descriptor.full_name):
            schema["description"] = self.comments.get(descriptor.full_name)
        for field in descriptor.fields:
            schema["properties"][field.name] = self.field(field)
        return schema

    def scalar(self, field) -> dict:
        kind = field.type
        if kind in _INTEGER32:
            return {"type": "integer", "format": "int32"}
        if kind in _INTEGER64:
            return {"type": "string", "format": "int64"}
        if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return {"type": "number"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind == FieldDescriptor.TYPE_ENUM:
            return self.enum_ref(field.enum_type)
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self.ref(field.message_type)
        schema = {"type": "string"}
        rules = limits.field_rules(field)
        if rules is not None and rules.max_length:
            schema["maxLength"] = rules.max_length
        return schema

    def field(self, field) -> dict:
        description = self.comments.get(field.full_name)
        rules = limits.field_rules(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            schema = {"type": "object",
                      "additionalProperties": self.scalar(field.message_type.fields_by_name["value"])}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.scalar(field)}
            if rules is not None and rules.max_items:
                schema["maxItems"] = rules.max_items
        else:
            schema = self.scalar(field)
        if description:
            if "$ref" in schema:  # OpenAPI 3.0: siblings of $ref are ignored
                schema = {"allOf": [schema], "description": description}
            else:
                schema["description"] = description
        return schema


def _query_parameters(builder: SchemaBuilder, descriptor, skip: set[str], prefix: str = "",
                      depth: int = 0) -> list[dict]:
    found = []
    for field in descriptor.fields:
        name = f"{prefix}{field.name}"
        if name in skip:
            continue
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE and \
                field.message_type.full_name not in _WELL_KNOWN:
            if not field.is_repeated and depth < 3:
                found += _query_parameters(builder, field.message_type, skip, f"{name}.",
                                           depth + 1)
            continue
        parameter = {"name": name, "in": "query", "required": False,
                     "schema": builder.field(field)}
        if field.is_repeated:
            parameter.update(style="form", explode=True)
        found.append(parameter)
    return found


def _path_parameter(builder: SchemaBuilder, descriptor, path: str) -> dict:
    field = None
    for name in path.split("."):
        field = descriptor.fields_by_name[name]
        descriptor = field.message_type
    return {"name": path, "in": "path", "required": True, "schema": builder.scalar(field)}


def _operation(builder: SchemaBuilder, route: Route, comments: Comments, operation_id: str,
               policy) -> dict:
    method = route.method
    description = comments.get(method.full_name)
    if policy is None:
        access = "Access: nobody (no policy declared)."
    elif policy.public:
        access = ("Access: public (no token needed); anonymous calls are rate-limited per "
                  "client address (429 with Retry-After past the limit).")
    else:
        access = f"Access: a bearer token with the role {', '.join(sorted(policy.roles))}."
    operation = {
        "operationId": operation_id,
        "tags": [route.service],
        "summary": f"{method.containing_service.name}.{method.name}",
        "description": " ".join(p for p in (description, access, HTTP_STATUS_NOTE) if p),
        "parameters": [_path_parameter(builder, method.input_type, v) for v in route.variables],
        "responses": {
            "200": {"description": f"{method.output_type.full_name}",
                    "content": {"application/json": {"schema": builder.ref(method.output_type)}}},
            "default": {"description": "a refusal: google.rpc.Status",
                        "content": {"application/json": {
                            "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}},
        },
        "security": [{}, {"bearer": []}] if policy is not None and policy.public
        else [{"bearer": []}],
    }
    if route.body:
        target = method.input_type if route.body == "*" else None
        if target is not None:
            schema = builder.ref(target)
        else:
            schema = builder.field(method.input_type.fields_by_name[route.body])
        operation["requestBody"] = {"required": route.body != "*",
                                    "content": {"application/json": {"schema": schema}}}
    else:
        operation["parameters"] += _query_parameters(builder, method.input_type,
                                                     set(route.variables))
    if policy is not None and policy.public:
        operation["responses"]["429"] = {
            "description": "over the rate limit for this client address; retry after the "
                           "Retry-After header's seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}}
    return operation


def _error_schema() -> dict:
    return {
        "type": "object",
        "description": "google.rpc.Status as JSON: the gRPC code (number), the message, and "
                       "typed details, each with its @type.",
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object", "additionalProperties": True,
                "properties": {"@type": {"type": "string"}}}},
        },
    }


def document(services=None, descriptor_set=None) -> dict:
    """The OpenAPI document of every route of `services` (default: every declared one)."""
    services = list(registry() if services is None else services)
    comments = Comments(descriptor_set)
    builder = SchemaBuilder(comments)
    paths: dict[str, dict] = {}
    tags = []
    for name in services:
        proto = service_proto(name)
        tags.append({"name": name, "description": comments.get(proto.full_name)
                     or registry()[name].summary})
        policies = access_policies(name)
        seen: dict[str, int] = {}
        for route in service_routes(name):
            count = seen[route.rpc] = seen.get(route.rpc, 0) + 1
            operation_id = f"{proto.service_descriptor.name}_{route.rpc}" + \
                ("" if count == 1 else f"_{count}")
            paths.setdefault(route.openapi_path, {})[route.verb] = _operation(
                builder, route, comments, operation_id, policies.get(route.rpc))
    builder.schemas[ERROR_SCHEMA] = _error_schema()
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "vocreg",
            "version": "v1",
            "description": "The regulator's platform for vocational training and "
                           "skills-evaluation institutions: the HTTP/JSON form of its gRPC "
                           "APIs, generated from the protos. Field names are the proto names; "
                           "64-bit integers are strings (proto3 JSON). Tokens: "
                           "`Authorization: Bearer <JWT>`; deadlines: the `grpc-timeout` "
                           "header (e.g. 5S, 500m).",
        },
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m services.common.openapi DESCRIPTORS.pb OUT.json",
              file=sys.stderr)
        return 2
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(Path(argv[0]).read_bytes())
    text = json.dumps(document(descriptor_set=descriptor_set), ensure_ascii=False, indent=1)
    Path(argv[1]).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
