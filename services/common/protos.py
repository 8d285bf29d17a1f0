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
from services.common.turns import EVERY, give_turn


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


def from_dict_in_turns(data: dict, message_class, chunk: int = EVERY):
    """from_dict, giving the worker's other calls their turn (services/common/turns.py) every
    `chunk` entries of a long list: parsing a 10,000-row request in one go held
    the worker's hub for about 0.1 s. On a parse error the whole request is parsed again in
    one go, so the error names the entry by its index in the request."""
    if not isinstance(data, dict):
        return from_dict(data, message_class)
    long = {k: v for k, v in data.items() if isinstance(v, list) and len(v) > chunk}
    if not long:
        return from_dict(data, message_class)
    try:
        message = from_dict({k: v for k, v in data.items() if k not in long}, message_class)
        for name, values in long.items():
            for start in range(0, len(values), chunk):
                give_turn()
                message.MergeFrom(from_dict({name: values[start:start + chunk]}, message_class))
    except json_format.ParseError:
        return from_dict(data, message_class)
    return message
