"""Configuration from the environment, with defaults that run the platform on this machine.

Workers get their nameko config from `worker_config()`, so the same variables configure the
nameko process, the edge and the tests. Nothing here reads a file the deployer must write.
"""
from __future__ import annotations

import os

from services.common.logs import logging_config

DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"
# A fixed, obviously-development secret for `make run` and the tests; the edge and the workers
# log a warning at start while they use it. Deployments set VOCREG_JWT_SECRET from a Secret.
DEV_JWT_SECRET = "vocreg-dev-secret-not-for-production"

# The same for the key that signs page tokens (services/common/paging.py).
DEV_PAGE_TOKEN_SECRET = "vocreg-dev-page-tokens-not-for-production"

# Local ports: one edge for all services; each worker's metrics port is in its ServiceSpec.
DEFAULT_GRPC_PORT = 50051
DEFAULT_EDGE_METRICS_PORT = 9100
# The edge's HTTP/JSON gateway and public page (services/common/http_gateway.py).
DEFAULT_HTTP_PORT = 8080
# The local database server `make run` starts (services/localdb.py): not MongoDB's 27017, so
# a MongoDB already installed on the machine is never mistaken for it or collided with.
DEFAULT_LOCAL_DB_PORT = 27027
DEFAULT_LOCAL_DATA_DIR = ".data"


def env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int) -> int:
    raw = env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name}={raw!r} is not a number") from None


def setting(worker_config: dict, key: str):
    """A service setting: the worker config's key (tests set it there), else the environment
    variable of the same name, else None."""
    value = worker_config.get(key)
    return os.environ.get(key) if value is None else value


def setting_int(worker_config: dict, key: str, default: int, minimum: int | None = None) -> int:
    raw = setting(worker_config, key)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SystemExit(f"configuration error: {key}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise SystemExit(f"configuration error: {key} must be >= {minimum}")
    return value


def sweep_interval() -> float:
    """Seconds between a worker's deadline sweeps and outbox relays. nameko fixes a timer's
    interval when the service class is defined, so services read it at import."""
    return env_float("SWEEP_INTERVAL", 30.0)


def amqp_uri() -> str:
    return env("AMQP_URI", DEFAULT_AMQP_URI)


def local_db_port() -> int:
    return env_int("VOCREG_DB_PORT", DEFAULT_LOCAL_DB_PORT)


def local_data_dir() -> str:
    return env("VOCREG_DATA_DIR", DEFAULT_LOCAL_DATA_DIR)


def mongo_uri(service: str) -> str:
    """Each service owns its database (vocreg_<service>). The default is the local server
    `make run` starts; production sets MONGO_URI (a URI without a database name gives each
    service its own, vocreg_<service>, on that server).

    A worker publishes a change's events once the write is acknowledged, so the write must
    outlive a crash of the database by then: on the local single server `journal=true` (the
    write is in the store's log before the answer; measured: without it, writes of the last
    fraction of a second were lost to a `kill -9` of the server); in production the replica
    set's default write concern, w=majority, which is journaled (never set w=1 there)."""
    return env("MONGO_URI", f"mongodb://127.0.0.1:{local_db_port()}/vocreg_{service}"
                            "?journal=true")


def read_mongo_uri(service: str) -> str:
    """The database the edge reads for the RPCs it answers itself (a SPEC's `edge_reads`):
    `<SERVICE>_READ_MONGO_URI` when set (production: a read-only user's URI, which may also
    prefer secondaries with `readPreference=secondaryPreferred`, at the cost of answers up to
    the replication lag old), else the worker's own rule above (MONGO_URI, else the local
    server): the same database the worker writes."""
    return env(f"{service.upper()}_READ_MONGO_URI", "") or mongo_uri(service)


def jwt_secret() -> str:
    """The signing secret. Set but empty is a deployment mistake (an empty Secret key), not
    a request for the public development secret: refuse to start."""
    value = os.environ.get("VOCREG_JWT_SECRET")
    if value is None:
        return DEV_JWT_SECRET
    if len(value.strip()) < 16:
        raise SystemExit("configuration error: VOCREG_JWT_SECRET is set but shorter than 16 characters")
    return value


def page_token_secret() -> str:
    """The key that signs page tokens: every worker of a service must share it (a token one
    replica issued is checked by another). Unset: the public development key; set but shorter
    than 16 characters: refuse to start."""
    value = os.environ.get("VOCREG_PAGE_TOKEN_SECRET")
    if value is None:
        return DEV_PAGE_TOKEN_SECRET
    if len(value.strip()) < 16:
        raise SystemExit("configuration error: VOCREG_PAGE_TOKEN_SECRET is set but shorter than "
                         "16 characters")
    return value


def _declared_metrics_port(service: str) -> int:
    from services.common.spec import registry

    declared = registry().get(service)
    return declared.metrics_port if declared else 0


def worker_config(service: str) -> dict:
    """The nameko config dict for one service's worker."""
    return {
        "AMQP_URI": amqp_uri(),
        "MONGO_URI": mongo_uri(service),
        "METRICS_PORT": env_int("METRICS_PORT", _declared_metrics_port(service)),
        "max_workers": env_int("MAX_WORKERS", 10),
        "PROVINCE_CODE": env("PROVINCE_CODE", "41"),
        # Chaos knobs for the e2e tests (services/common/bus.py Outbox): the first N event
        # publishes fail as a broker outage would; the worker SIGKILLs itself at its first
        # publish, before_publish (events stored, not sent) or after_publish (sent, not pulled).
        "FAULT_INJECT_PUBLISH_FAILURES": env_int("FAULT_INJECT_PUBLISH_FAILURES", 0),
        "FAULT_INJECT_KILL": env("FAULT_INJECT_KILL", ""),
        # An event whose handler fails for a transient reason is delivered again after
        # EVENT_RETRY_DELAY seconds, doubling up to EVENT_RETRY_MAX_DELAY, EVENT_MAX_DELIVERIES
        # times in all; then it is kept as a dead letter (services/common/entrypoints.py).
        "EVENT_MAX_DELIVERIES": env("EVENT_MAX_DELIVERIES", ""),
        "EVENT_RETRY_DELAY": env("EVENT_RETRY_DELAY", ""),
        "EVENT_RETRY_MAX_DELAY": env("EVENT_RETRY_MAX_DELAY", ""),
        # Tests only: read the time from this file (services/common/clock.py).
        "CLOCK_FILE": env("VOCREG_CLOCK_FILE", ""),
        "serializer": "json",
        "LOGGING": logging_config(env("LOG_LEVEL", "INFO"), f"worker:{service}"),
    }
