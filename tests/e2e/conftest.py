"""End-to-end: the filing worker and the edge as real subprocesses, driven over gRPC.

This process is plain pytest: grpcio must not run under eventlet's monkey patching.
"""
from __future__ import annotations

import pytest

from tests.platform import FILING, Platform  # noqa: F401 (FILING is used by the tests)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    plat = Platform(tmp_path_factory.mktemp("platform")).start()
    yield plat
    codes = plat.stop()
    assert codes == {"edge": 0, "worker": 0}, f"unclean shutdown {codes}:\n{plat.logs()}"


@pytest.fixture
def fresh_platform(tmp_path):
    """A platform of the test's own, for tests that break things."""
    started = []

    def make(**worker_env):
        plat = Platform(tmp_path, **worker_env).start()
        started.append(plat)
        return plat

    yield make
    for plat in started:
        plat.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the public page's tests (tests/e2e/browser.py)."""
    from tests.e2e.browser import chromium

    driver = chromium()
    yield driver
    driver.quit()
