"""Where each service's generated proto modules are, and what its RPCs declare.

The protos are the one schema: the edge serves these descriptors, the workers read the same
access policies, and events are checked against the messages of events.proto before storing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from google.protobuf import json_format

from services.common.auth import ROLE_BY_PROTO_NAME, AccessPolicy
from services.common.spec import spec


@dataclass(frozen=True)
class ServiceProto:
    name: str
    package: str
    service_descriptor: object  # google.protobuf.descriptor.ServiceDescriptor
    messages: object            # the *_pb2 module of the service
    events: object | None       # the events_pb2 module, if any
    stubs: object               # the *_pb2_grpc module

    @property
    def full_name(self) -> str:
        return self.service_descriptor.full_name


@cache
def service_proto(name: str) -> ServiceProto:
    declared = spec(name)
    package, service = declared.proto_package, declared.proto_service
    messages = importlib.import_module(f"{package}.{name}_pb2")
    stubs = importlib.import_module(f"{package}.{name}_pb2_grpc")
    try:
        events = importlib.import_module(f"{package}.events_pb2")
    except ModuleNotFoundError:
        events = None
    return ServiceProto(name=name, package=package,
                        service_descriptor=messages.DESCRIPTOR.services_by_name[service],
                        messages=messages, events=events, stubs=stubs)


@cache
def access_policies(name: str) -> dict[str, AccessPolicy | None]:
    """RPC name -> its declared policy (None where the proto declares none: deny)."""
    from vocreg.common.v1 import access_pb2

    policies = {}
    for method in service_proto(name).service_descriptor.methods:
        options = method.GetOptions()
        if not options.HasExtension(access_pb2.access):
            policies[method.name] = None
            continue
        declared = options.Extensions[access_pb2.access]
        roles = frozenset(ROLE_BY_PROTO_NAME[access_pb2.Role.Name(r)] for r in declared.roles)
        policies[method.name] = AccessPolicy(public=declared.public, roles=roles)
    return policies


def to_dict(message) -> dict:
    """A proto message as the dict workers take and return (proto field names, enum names)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def from_dict(data: dict, message_class):
    """Strict: an unknown field or a wrong type is an error, not silently dropped."""
    return json_format.ParseDict(data, message_class())
