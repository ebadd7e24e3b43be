"""The garbage collector's setting for the worker, the module runner and the offline tools."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from streams import collector


@pytest.fixture
def restored() -> Iterator[None]:
    previous = gc.get_threshold()
    yield
    gc.set_threshold(*previous)


def test_a_tuned_process_collects_young_objects_every_10000_allocations_and_never_all(
    restored: None,
) -> None:
    # given Python's default collector
    gc.set_threshold(700, 10, 10)
    # when a short run tunes it
    collector.tune(full_every_s=None)
    # then a young collection waits for 10,000 net allocations, and none is ever a full one
    assert gc.get_threshold() == (10_000, 10, collector.NEVER)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_scheduled_full_collection_frees_an_old_cycle(restored: None) -> None:
    # given a reference cycle old enough to sit in the oldest generation, then dropped
    collector.tune(full_every_s=None)
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = threading.Event()
    watch = weakref.ref(first, lambda _: gone.set())
    gc.collect(1)  # the young and middle generations: the live cycle moves to the oldest
    del first, second
    gc.collect(1)
    assert watch() is not None, "only a full collection frees it"
    # when the full collections run every 50 ms
    stop = threading.Event()
    threading.Thread(target=collector.collect_fully, args=(0.05, stop), daemon=True).start()
    # then the cycle is freed
    try:
        assert gone.wait(timeout=5.0)
    finally:
        stop.set()


def test_full_collections_are_scheduled_once_per_process(restored: None) -> None:
    # given a process that tuned its collector with full collections
    collector.tune(full_every_s=3600)
    before = [t for t in threading.enumerate() if t.name == "full-collections"]
    # when it tunes it again
    collector.tune(full_every_s=3600)
    # then one thread runs them
    after = [t for t in threading.enumerate() if t.name == "full-collections"]
    assert len(before) == len(after) == 1
