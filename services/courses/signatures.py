"""The worker's containment index over the stored signatures: built from the database at the
first check, kept current by picking up signatures other workers stored since (by their
wall-clock `stored_at`, with a margin for clocks and slow writes), rebuilt when its recent
block grows past domain.reuse.REBUILD_AFTER. Deleted courses drop out at the verification
(their signatures are gone), and from the index at the next rebuild.

The index is a cache: every candidate it names is verified on the stored shingle sets, so a
missed pickup costs at most a course found by the next rebuild, never a false finding.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import numpy as np
from nameko.extensions import DependencyProvider

from services.common.bus import utcnow
from services.courses.domain import reuse

log = logging.getLogger(__name__)

# Signatures stored up to this long before the last pickup are read again at the next one.
PICKUP_MARGIN = timedelta(seconds=60)
# Rebuild from the database at least this often (a course deleted by another worker leaves).
REBUILD_EVERY = timedelta(minutes=30)
CHUNK = 500


def _values(minhash: bytes) -> np.ndarray:
    return np.frombuffer(minhash, dtype="<u4").astype(np.uint32)


class SignatureIndex:
    """One per worker process and threshold (`pause` yields to the worker's other calls)."""

    def __init__(self, threshold: float, pause=lambda: None):
        self.threshold = threshold
        self.pause = pause
        self.index: reuse.ContainmentIndex | None = None
        self.built_at: datetime | None = None
        self.picked_up_at: datetime | None = None
        self.lock = threading.Lock()

    def _entries(self, repo, since=None):
        entries = []
        for n, (key, minhash, size, _) in enumerate(repo.signature_entries(since)):
            entries.append((key, _values(minhash), size))
            if n % CHUNK == CHUNK - 1:
                self.pause()
        return entries

    def sync(self, repo) -> reuse.ContainmentIndex:
        with self.lock:
            now = utcnow()
            if self.index is None or self.index.needs_rebuild or (
                    now - self.built_at > REBUILD_EVERY):
                started = time.perf_counter()
                index = reuse.ContainmentIndex(self.threshold)
                index.build(self._entries(repo), self.pause)
                self.index, self.built_at, self.picked_up_at = index, now, now
                log.info("containment index built: %d courses in %.2f s", len(index),
                         time.perf_counter() - started)
                return index
            for key, minhash, size in self._entries(repo, self.picked_up_at - PICKUP_MARGIN):
                self.index.add(key, minhash, size)
            self.picked_up_at = now
            return self.index

    def candidates(self, repo, sig: reuse.Signature) -> set:
        return self.sync(repo).candidates(sig.minhash, sig.size)

    def added(self, course_id: str, sig: reuse.Signature) -> None:
        if self.index is not None:
            self.index.add(course_id, sig.minhash, sig.size)

    def removed(self, course_id: str) -> None:
        if self.index is not None:
            self.index.remove(course_id)


def _green_pause():
    import eventlet

    eventlet.sleep(0)


class SignatureIndexProvider(DependencyProvider):
    """The worker's SignatureIndex, shared by its calls."""

    def setup(self):
        from services.courses.settings import load_settings

        self.value = SignatureIndex(load_settings(self.container.config).reuse_threshold,
                                    _green_pause)

    def get_dependency(self, worker_ctx):
        return self.value
