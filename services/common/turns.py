"""Long CPU-bound loops in a worker give the worker's other calls their turn.

A worker is one eventlet hub: a loop over 10,000 rows that never yields holds every other call
of the process, the health check included, until it ends (issue 9: a batch made its worker look
down). `time.sleep(0)` is eventlet's yield in a worker (the process is monkey-patched) and a
plain no-op turn anywhere else (unit tests, the edge), so code using this stays free of eventlet.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# Items between two turns: about 5-10 ms of work per turn for a certificate row, so a call
# waiting behind a 10,000-row batch waits a few milliseconds, not the whole batch.
EVERY = 500


def give_turn() -> None:
    time.sleep(0)


def in_turns(items: Iterable[T], every: int = EVERY) -> Iterator[T]:
    """Each item of `items`, giving the other calls their turn before every `every`-th."""
    for i, item in enumerate(items):
        if i and i % every == 0:
            give_turn()
        yield item
