"""The time, as a dependency, so tests can move it (shared rules never call now() themselves)."""
from __future__ import annotations

from datetime import datetime, timezone

from nameko.extensions import DependencyProvider


class Clock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ClockProvider(DependencyProvider):
    def setup(self):
        self.clock = Clock()

    def get_dependency(self, worker_ctx):
        return self.clock
