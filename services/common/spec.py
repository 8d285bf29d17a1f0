"""A service's one declaration, and the registry that finds every declared service.

Each service package declares itself once, in its `__init__.py`:

    SPEC = ServiceSpec(name="filing", proto="vocreg.filing.v1.FilingService",
                       service_class="FilingService", aggregates=("Application", "Institution"),
                       metrics_port=9101, summary="…")

Everything that needs the list of services derives it from here: the worker launcher, the
edge, `make run`, the test platform, the relay timer, the deploy manifests and their checks.
Adding a service is its own folder, its protos and its deploy entries (generated from the
declaration); nothing central lists it (the registry finds it, as warehouse's packages
register themselves).

The declaration is plain data: importing it loads neither nameko nor mongoengine, so the edge
and the tools can read every declaration cheaply; the classes named in it are imported only
by the process that runs them.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from functools import cache

_NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")
# Packages under services/ that are not services (cli: the `vocreg` command line, a client).
NOT_SERVICES = frozenset({"cli", "common", "gen"})


@dataclass(frozen=True)
class ServiceSpec:
    name: str                     # bus name (RPC queue, event exchange), database, k8s app label
    proto: str                    # the gRPC service, e.g. "vocreg.filing.v1.FilingService"
    service_class: str            # the nameko class in services/<name>/service.py
    aggregates: tuple[str, ...]   # Aggregate documents in services/<name>/models.py (the relay's)
    metrics_port: int             # the worker's local /metrics port (make run, compose)
    summary: str = ""             # one line for the README, the manifests and `make run`
    # RPCs the edge answers itself, read-only, from the service's database instead of sending
    # them over the bus (a hot public read: the bus is most of its cost), and the module that
    # implements them: it holds EDGE_READS = {"<Rpc>": read(request: dict, database) -> dict},
    # the very code the worker's handler of that RPC runs (services/common/edge_reads.py).
    edge_reads: tuple[str, ...] = ()
    edge_reads_module: str = ""

    def __post_init__(self):
        problems = []
        if not _NAME.match(self.name):
            problems.append("name must be lower-case letters and digits")
        package, _, service = self.proto.rpartition(".")
        if package != f"vocreg.{self.name}.v1" or not service:
            problems.append(f"proto must be vocreg.{self.name}.v1.<Service>")
        if not 1024 < self.metrics_port < 65536:
            problems.append("metrics_port must be 1025-65535")
        if bool(self.edge_reads) != bool(self.edge_reads_module):
            problems.append("edge_reads and edge_reads_module go together")
        if self.edge_reads_module and not self.edge_reads_module.startswith(
                f"services.{self.name}."):
            problems.append(f"edge_reads_module must be in services.{self.name}")
        if problems:
            raise ValueError(f"ServiceSpec {self.name!r}: " + "; ".join(problems))

    @property
    def proto_package(self) -> str:
        return self.proto.rpartition(".")[0]

    @property
    def proto_service(self) -> str:
        return self.proto.rpartition(".")[2]

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def entrypoint(self) -> str:
        """What `nameko run` takes: module and class (never the bare module: nameko would
        inspect every name in it and touch mongoengine Documents before any connection)."""
        return f"{self.module}.service:{self.service_class}"

    def load_class(self):
        return getattr(importlib.import_module(f"{self.module}.service"), self.service_class)

    def aggregate_classes(self) -> tuple:
        models = importlib.import_module(f"{self.module}.models")
        return tuple(getattr(models, name) for name in self.aggregates)

    def document_classes(self) -> tuple:
        """Every stored document class in services/<name>/models.py (bound to the service's
        database alias), aggregates or not: the worker creates their indexes at start."""
        from mongoengine import Document

        models = importlib.import_module(f"{self.module}.models")
        found = []
        for value in vars(models).values():
            if isinstance(value, type) and issubclass(value, Document) \
                    and not value._meta.get("abstract") and value.__module__ == models.__name__ \
                    and value._meta.get("db_alias") == self.name:
                found.append(value)
        return tuple(found)


@cache
def registry() -> dict[str, ServiceSpec]:
    """Every declared service, by name, in the order of their metrics ports (stable)."""
    import services

    found = {}
    for info in pkgutil.iter_modules(services.__path__):
        if not info.ispkg or info.name in NOT_SERVICES:
            continue
        spec = getattr(importlib.import_module(f"services.{info.name}"), "SPEC", None)
        if spec is None:
            continue
        if spec.name != info.name:
            raise ValueError(f"services/{info.name} declares the service {spec.name!r}")
        found[spec.name] = spec
    ports = [s.metrics_port for s in found.values()]
    if len(set(ports)) != len(ports):
        raise ValueError(f"two services declare the same metrics_port: {sorted(ports)}")
    return dict(sorted(found.items(), key=lambda item: item[1].metrics_port))


def service_names() -> tuple[str, ...]:
    return tuple(registry())


def spec(name: str) -> ServiceSpec:
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; declared: {', '.join(registry())}") from None
