"""Jobs: a fold's partitions split across forked processes, their results and progress
gathered by the parent (``streams.tools.jobs``). No Kafka: the work here is arithmetic."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pytest

from streams.tools.history import Advances
from streams.tools.jobs import JobFailed, Jobs


class Counted:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count


def squares(partitions: Sequence[int], progress: Advances) -> Iterator[tuple[int, int, int]]:
    for partition in partitions:
        progress.advance(10)
        yield partition, partition * partition, os.getpid()


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_every_partition_is_done_once_and_its_progress_reaches_the_parent(jobs: int) -> None:
    progress = Counted()
    results = list(Jobs(squares, 8, jobs).results(progress))

    assert sorted((p, sq) for p, sq, _ in results) == [(p, p * p) for p in range(8)]
    assert progress.done == 80
    pids = {pid for _, _, pid in results}
    assert len(pids) == jobs
    assert (os.getpid() in pids) == (jobs == 1)  # one job runs in the parent, no fork


def test_a_job_that_raises_fails_the_whole_run_with_its_error() -> None:
    def broken(partitions: Sequence[int], progress: Advances) -> Iterator[int]:
        for partition in partitions:
            if partition == 5:
                raise RuntimeError("partition 5 is unreadable")
            yield partition

    with pytest.raises(JobFailed, match="partition 5 is unreadable"):
        list(Jobs(broken, 8, 2).results(Counted()))


def test_a_job_that_dies_fails_the_whole_run() -> None:
    def dying(partitions: Sequence[int], progress: Advances) -> Iterator[int]:
        if 1 in partitions:
            os._exit(3)
        yield from partitions

    with pytest.raises(JobFailed, match="exit code 3"):
        list(Jobs(dying, 8, 2).results(Counted()))
