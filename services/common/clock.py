"""The time, as a dependency, so tests can move it (the rules never call now() themselves).

In-process tests replace the dependency. End-to-end tests, which run workers as separate
processes, set CLOCK_FILE (env VOCREG_CLOCK_FILE): the worker then reads "now" (an ISO
datetime with its offset) from that file on every call. It is a test fixture: a worker
logs a warning at start when it is on, and no manifest sets it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from nameko.extensions import DependencyProvider

log = logging.getLogger(__name__)


class Clock:
    def now(self) -> datetime:
        """UTC, to the millisecond: the precision MongoDB keeps (BSON dates), so a time a
        call answers with is the time a later read of the stored record answers with."""
        now = datetime.now(timezone.utc)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)


class FileClock(Clock):
    def __init__(self, path: str):
        self.path = Path(path)

    def now(self) -> datetime:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return super().now()
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError(f"{self.path}: the time must carry its offset, e.g. +08:00")
        return value


class ClockProvider(DependencyProvider):
    def setup(self):
        path = self.container.config.get("CLOCK_FILE")
        if path:
            log.warning("CLOCK_FILE is set: %s reads the time from %s (tests only)",
                        self.container.service_name, path)
            self.clock = FileClock(path)
        else:
            self.clock = Clock()

    def get_dependency(self, worker_ctx):
        return self.clock
