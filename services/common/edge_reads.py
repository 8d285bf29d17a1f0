"""The RPCs the edge answers itself, read-only, from a service's own database (issue 18).

A hot public read (anyone checking a certificate) crossing the bus pays the bus: edge ->
RabbitMQ -> worker -> database -> back, 8-12x the edge's own round trip. A service may declare
such reads in its SPEC (`edge_reads`, and `edge_reads_module` holding
`EDGE_READS = {"<Rpc>": read(request: dict, database) -> dict}`, the very function its worker's
handler runs): the edge loads that module when it starts and calls the read on its own
pymongo connection to the service's database instead of forwarding the call. Everything else
a call goes through stays the edge's (services/common/edge.py: parsing, authentication,
access policy, rate limit, deadline, metrics, access log, error mapping, HTTP/JSON).

The connection follows the worker's URI rules (config.read_mongo_uri): production gives it a
read-only user's URI. pymongo is thread-safe and needs no eventlet; the edge's handler threads
share one client (its pool). Each read runs under the call's deadline, capped at
EDGE_READ_TIMEOUT (pymongo's client-side operation timeout, which bounds server selection,
the query's maxTimeMS and the socket alike): a database that cannot be reached within it is
UNAVAILABLE (BACKEND_UNAVAILABLE), a caller's deadline that passed first is DEADLINE_EXCEEDED;
never INTERNAL.
"""
from __future__ import annotations

import importlib
import logging
import time

import pymongo
from pymongo.errors import ConfigurationError, PyMongoError

from services.common import config, limits
from services.common.errors import (
    BACKEND_UNAVAILABLE_MESSAGE,
    DeadlineExceeded,
    Unavailable,
)
from services.common.mongo import database_name
from services.common.spec import ServiceSpec

log = logging.getLogger("vocreg.edge")

# How long a read may wait for the database when the caller's deadline is longer: a lookup on
# a unique index answers in about a millisecond, so seconds without an answer mean the
# database is away (or being failed over): the caller hears so and may retry, rather than
# holding an edge thread for its whole deadline (30 s by default).
DEFAULT_READ_TIMEOUT = 5.0


class EdgeReads:
    """One service's declared reads and the edge's connection to its database."""

    def __init__(self, spec: ServiceSpec, read_timeout: float = DEFAULT_READ_TIMEOUT):
        module = importlib.import_module(spec.edge_reads_module)
        table = getattr(module, "EDGE_READS", {})
        missing = [name for name in spec.edge_reads if name not in table]
        if missing:
            raise SystemExit(f"edge: {spec.edge_reads_module}.EDGE_READS has no "
                             f"{', '.join(missing)} (declared in {spec.name}'s edge_reads)")
        self.service = spec.name
        self.reads = {name: table[name] for name in spec.edge_reads}
        self.read_timeout = read_timeout
        uri = config.read_mongo_uri(spec.name)
        # connect=False: the first read (or health ping) connects, so the edge starts and
        # serves everything else while the database is away.
        try:
            self.client = pymongo.MongoClient(uri, connect=False, tz_aware=True,
                                              appname=f"vocreg-edge-{spec.name}")
        except (ConfigurationError, ValueError) as exc:  # a malformed URI: one line
            raise SystemExit(f"configuration error: the {spec.name} database URI for the "
                             f"edge ({spec.name.upper()}_READ_MONGO_URI or MONGO_URI): "
                             f"{exc}") from None
        self.database = self.client[database_name(uri, f"vocreg_{spec.name}")]

    def __contains__(self, method: str) -> bool:
        return method in self.reads

    def call(self, method: str, request, payload: dict, timeout: float) -> dict:
        """The read's answer (a dict of the response message). `request` is the parsed proto
        message (its declared limits are checked here, as the worker checks them), `payload`
        the same as a dict, `timeout` the seconds left of the caller's deadline."""
        limits.check(request)
        deadline = time.monotonic() + timeout
        try:
            with pymongo.timeout(min(timeout, self.read_timeout)):
                return self.reads[method](payload, self.database)
        except PyMongoError as exc:
            if time.monotonic() >= deadline:
                raise DeadlineExceeded("the deadline passed before the database answered") \
                    from None
            log.warning("%s.%s: the edge cannot read the database (%s)", self.service, method,
                        type(exc).__name__)
            raise Unavailable(BACKEND_UNAVAILABLE_MESSAGE, reason="BACKEND_UNAVAILABLE") \
                from None

    def ping(self, timeout: float) -> bool:
        """Whether the database answers within `timeout` (the health watcher's question)."""
        try:
            with pymongo.timeout(timeout):
                self.database.command("ping")
            return True
        except PyMongoError as exc:
            log.warning("health: the edge cannot reach the %s database (%s)", self.service,
                        type(exc).__name__)
            return False

    def close(self) -> None:
        self.client.close()


def edge_reads_for(specs, read_timeout: float = DEFAULT_READ_TIMEOUT) -> dict[str, EdgeReads]:
    """EdgeReads for each of `specs` that declares some, by service name."""
    return {spec.name: EdgeReads(spec, read_timeout) for spec in specs if spec.edge_reads}
