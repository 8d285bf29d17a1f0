"""MongoDB through mongoengine: `mongomock://` is the embedded default, `mongodb://` production.

Each service registers its connection under its own alias and binds its documents to it
(`meta = {"db_alias": "<service>"}`), so several services can share one test process.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import mongoengine

MONGOMOCK_SCHEME = "mongomock"


def database_name(uri: str, default: str) -> str:
    path = urlsplit(uri).path.lstrip("/")
    return path.split("/")[0] or default


def connect(alias: str, uri: str) -> None:
    """Register (or re-register) the connection for `alias`. Idempotent for the same URI."""
    name = database_name(uri, f"vocreg_{alias}")
    if urlsplit(uri).scheme == MONGOMOCK_SCHEME:
        import mongomock  # only the embedded mode needs it

        mongoengine.connect(db=name, alias=alias, host="mongodb://localhost",
                            mongo_client_class=mongomock.MongoClient, tz_aware=True)
    else:
        # A real server: the URI carries host, credentials, replica set and options unchanged.
        mongoengine.connect(db=name, alias=alias, host=uri, tz_aware=True)


def disconnect(alias: str) -> None:
    mongoengine.disconnect(alias=alias)

