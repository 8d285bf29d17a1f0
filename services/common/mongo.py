"""MongoDB through mongoengine: a plain `mongodb://` URI, to MongoDB in production and to the
local server (services/localdb.py) in `make run` and the tests.

Each service registers its connection under its own alias and binds its documents to it
(`meta = {"db_alias": "<service>"}`), so several services can share one test process.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import mongoengine

from services.common import config


def database_name(uri: str, default: str) -> str:
    path = urlsplit(uri).path.lstrip("/")
    return path.split("/")[0] or default


def connect(alias: str, uri: str) -> None:
    """Register (or re-register) the connection for `alias`. The URI carries host,
    credentials, replica set and options unchanged; its database name, else vocreg_<alias>."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("mongodb", "mongodb+srv"):
        raise SystemExit(f"configuration error: MONGO_URI for {alias} must be a mongodb:// "
                         f"URI, not {scheme or 'no scheme'}:// (the in-process mongomock is "
                         "gone: `make run` starts a local server)")
    mongoengine.connect(db=database_name(uri, f"vocreg_{alias}"), alias=alias, host=uri,
                        tz_aware=True)


def ensure_indexes(alias: str) -> None:
    """Create the indexes the service's documents declare (unique ones included) now, at
    start, rather than at the first call that touches each collection: a unique index the
    data already breaks stops the worker at start with DuplicateKeyError, loudly."""
    from services.common.spec import registry

    declared = registry().get(alias)
    for document in declared.document_classes() if declared else ():
        document.ensure_indexes()


def disconnect(alias: str) -> None:
    mongoengine.disconnect(alias=alias)


def configured_uri(container_config: dict, alias: str) -> str:
    """The worker config's MONGO_URI (tests set it there), else the environment's default."""
    return container_config.get("MONGO_URI") or config.mongo_uri(alias)
