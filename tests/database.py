"""The tests' database: one fresh local server in memory per test session, each test (or e2e
platform) its own databases on it.

The server is started by the harness itself on first use (a test that needs no database
starts none), on a free port, and stopped when the session ends: `tests/conftest.py` wires it
into pytest for both runs (`nameko test` and plain pytest); the benchmark calls `server()` and
`stop_server()` itself. A fresh store per session: the server is a beta, and a store that
lived through many runs once slowed down on unique-key checks.
"""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from services.localdb import DatabaseServer

_server: DatabaseServer | None = None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(on_disk: bool = False) -> DatabaseServer:
    """The session's server, started on first use: in memory, or (`on_disk`, for the
    benchmark) with its store in a temporary directory, as `make run` keeps it."""
    global _server
    if _server is None:
        home = Path(tempfile.mkdtemp(prefix="vocreg-testdb-"))
        _server = DatabaseServer(free_port(), storage=home / "db" if on_disk else None,
                                 home=home).start()
    return _server


def started() -> bool:
    return _server is not None


def stop_server() -> int | None:
    """Stop the session's server; its exit code (0: a clean shutdown), None if none ran."""
    global _server, _client
    if _client is not None:
        _client.close()
        _client = None
    if _server is None:
        return None
    running, _server = _server, None
    code = running.stop()
    if code == 0:
        shutil.rmtree(running.home, ignore_errors=True)
    return code


def unique_name(label: str) -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


_client = None


def client():
    """The pymongo client to the session's server (for tests that look inside or tidy up);
    one for the session, closed with the server."""
    global _client
    if _client is None:
        import pymongo

        _client = pymongo.MongoClient(server().uri, tz_aware=True)
    return _client


class Databases:
    """Fresh database names on the session's server, dropped by `drop_all()`."""

    def __init__(self, label: str = "test"):
        self.label = label
        self.names: list[str] = []

    def uri(self, service: str) -> str:
        name = unique_name(f"{self.label}_{service}")
        self.names.append(name)
        return server().database_uri(name)

    def drop_all(self) -> None:
        if not self.names or not started():
            return
        for name in self.names:
            client().drop_database(name)
        self.names = []
