"""The garbage collector's setting for the worker, the module runner and the offline tools."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams import collector


@pytest.fixture
def restored() -> Iterator[None]:
    previous = gc.get_threshold()
    yield
    gc.set_threshold(*previous)


def test_a_tuned_process_collects_its_young_objects_every_10000_allocations(
    restored: None,
) -> None:
    # given Python's default collector
    gc.set_threshold(700, 10, 10)
    # when the process tunes it
    collector.tune()
    # then a young collection waits for 10,000 net allocations; the older ones keep their ratios
    assert gc.get_threshold() == (10_000, 10, 10)
