"""What every test run shares, under `nameko test` and plain pytest alike: the session's
database server (tests/database.py), started on first use and stopped when the session ends.

Fixtures:
  database_server  the session's server (starts it);
  databases        fresh database names on it for this test, dropped after it.
Unit tests request neither, so `make test-unit` starts no server.
"""
from __future__ import annotations

import pytest

from tests import database


@pytest.fixture(scope="session")
def database_server():
    return database.server()


@pytest.fixture
def databases(database_server):
    made = database.Databases("test")
    yield made
    made.drop_all()


def pytest_sessionfinish(session, exitstatus):
    code = database.stop_server()
    if code not in (None, 0):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"the test database server did not stop cleanly (exit {code})",
                                red=True)
        session.exitstatus = 1
