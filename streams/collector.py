"""Python's cyclic garbage collector, set for processes that keep many objects alive.

Its defaults (a young collection every 700 net allocations) suit a program whose objects die
young. Ours keep many alive: the worker's loop keeps the records of its 10,000 most recently
used orders as objects, and replay and verify keep a partition's decoded records until they
fold them. Each young collection finds those alive again, and each older one walks more of
them. Our objects hold almost no reference cycles (frozen pydantic models, tuples, dicts):
reference counting frees them, and the collector only has the rare cycle to find.

A young collection every 10,000 net allocations instead of 700, measured on this project's
2-core machine: the loop's drain 3,850-4,250 -> 5,560-5,780 inputs/s (three rounds each,
alternating); decode and fold of 130,656 demo records in one process 22,700 -> 40,600 events/s.
Freezing the start-up objects out of collections (``gc.freeze``) changed nothing measurable.

Full collections walk every tracked object and hold the GIL meanwhile, so every thread of the
process stops. A worker holding 565,000 objects (``bench``'s e2e run of 8,000 orders, then
8,000 paced at 364 orders/s) ran one of 780 ms in its paced phase, freeing nothing: every order
in flight waited that long. So Python never starts one here on its own; a thread of the
long-running processes runs one every ``FULL_COLLECTION_EVERY_S`` and logs how long it took,
which bounds what the rare cycles can hold (0-90 objects a collection, measured). Faust still
collects fully itself when a worker's partitions are revoked and when it stops (400-560 ms at
the end of those runs).
"""

from __future__ import annotations

import gc
import threading
import time

from streams.observability.logs import get_logger

YOUNG_COLLECTION_EVERY = 10_000
"""Net allocations between young collections (Python's default: 700)."""

NEVER = 2**30
"""A count of middle-generation collections no process reaches: no automatic full collection."""

FULL_COLLECTION_EVERY_S = 600.0

log = get_logger("streams.collector")
_scheduled: list[threading.Thread] = []


def tune(*, full_every_s: float | None = FULL_COLLECTION_EVERY_S) -> None:
    """The collector as this module says, for the rest of the process (forked children too).

    ``full_every_s``: the period of the full collections, on a daemon thread started once per
    process; ``None`` for a short run, which forks (``streams.tools.jobs``) and needs none.
    """
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, NEVER)
    if full_every_s is not None and not _scheduled:
        thread = threading.Thread(
            target=collect_fully,
            args=(full_every_s, threading.Event()),
            name="full-collections",
            daemon=True,
        )
        _scheduled.append(thread)
        thread.start()


def collect_fully(every_s: float, stop: threading.Event) -> None:
    """A full collection every ``every_s`` seconds, until ``stop`` is set."""
    while not stop.wait(every_s):
        started = time.perf_counter()
        freed = gc.collect()
        took_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info("gc_full_collection", took_ms=took_ms, freed=freed)
