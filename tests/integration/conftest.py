"""Integration tests: real nameko containers on the real RabbitMQ (a fresh vhost per test,
made by nameko's `rabbit_config` through the management API) and the session's database
server (a fresh database per service and test, tests/conftest.py)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from nameko.standalone.events import event_dispatcher  # noqa: F401 (re-export for tests)
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import replace_dependencies

from services.common import config as vocreg_config
from services.common.clock import Clock


class FakeClock(Clock):
    def __init__(self, now: datetime):
        self.current = now

    def now(self) -> datetime:
        return self.current

    def set(self, *args, hour: int = 2):
        """Set the clock to a date (Asia/Shanghai 10:00 is 02:00 UTC)."""
        self.current = datetime(*args, hour, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return FakeClock(datetime(2025, 9, 15, 2, tzinfo=timezone.utc))


@pytest.fixture
def service_config(rabbit_config, databases):
    def make(service: str, **overrides):
        cfg = vocreg_config.worker_config(service)
        cfg.update(rabbit_config)
        cfg.update({"MONGO_URI": databases.uri(service), "METRICS_PORT": 0})
        cfg.update(overrides)
        return cfg
    return make


@pytest.fixture
def start_service(service_config, container_factory, clock):
    # service_config (and so the test's databases) first: torn down after the containers.
    def start(service_cls, replace_clock=True, **overrides):
        container = container_factory(service_cls, service_config(service_cls.name, **overrides))
        if replace_clock:
            replace_dependencies(container, clock=clock)
        container.start()
        return container
    return start


@pytest.fixture
def filing(start_service):
    from services.filing.service import FilingService
    return start_service(FilingService)


@pytest.fixture
def regulator(rpc_as):
    from tests.support import token
    return rpc_as(token("regulator")).filing


@pytest.fixture
def rpc_as(rabbit_config):
    """rpc_as(token) -> a cluster proxy whose calls carry that bearer token."""
    proxies = []

    def make(token: str | None = None):
        proxy = ClusterRpcProxy(rabbit_config, context_data={"auth_token": token} if token else None,
                                timeout=10)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()
