"""Jobs: an offline fold (replay, verify) split across processes by partition number.

The process manager's inputs are co-partitioned by order id: an order lives on one partition
number of every input topic, so partition p of every topic goes to the same job and the jobs
fold disjoint sets of orders. Each job reads its partitions (``streams.tools.history.scan``),
folds them, and sends one result per partition back; the parent merges them and draws the
progress bar from the records each job reports read.

Jobs are forked, not spawned: they start at once with the parent's modules and arguments (the
live table verify read), nothing pickled on the way in; only results are. Fork them while the
parent holds no Kafka client and no other thread (before the progress bar): librdkafka's
threads do not survive a fork, and a lock held by another thread at the fork stays held in the
child. Each job makes its own clients. One job runs in the parent's process, no fork.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from streams.tools.history import Advances

R = TypeVar("R")
Work = Callable[[Sequence[int], Advances], Iterator[R]]
"""A job's work: its partition numbers and where to report records read -> one result per
partition, as each is done."""


class JobFailed(RuntimeError):
    """A job raised or died: the fold is incomplete."""


def default_jobs() -> int:
    """The CPU count: ``--jobs``' default."""
    return os.cpu_count() or 1


def shares(partitions: int, jobs: int) -> list[list[int]]:
    """Partition numbers dealt round robin to ``jobs`` jobs, no more jobs than partitions."""
    count = max(1, min(jobs, partitions))
    return [list(range(first, partitions, count)) for first in range(count)]


class Jobs(Generic[R]):
    """``work`` over ``partitions`` partition numbers in ``jobs`` processes, forked here."""

    def __init__(self, work: Work[R], partitions: int, jobs: int) -> None:
        self.work = work
        self.partitions = partitions
        self.processes: list[BaseProcess] = []
        self.shares = shares(partitions, jobs)
        if len(self.shares) == 1:
            return
        context = multiprocessing.get_context("fork")
        self.queue: Any = context.Queue()
        for share in self.shares:
            process = context.Process(target=_job, args=(work, share, self.queue), daemon=True)
            process.start()
            self.processes.append(process)

    def results(self, progress: Advances) -> Iterator[R]:
        """Every partition's result, in the order they are done."""
        if not self.processes:
            yield from self.work(self.shares[0], progress)
            return
        try:
            running = len(self.processes)
            while running:
                try:
                    kind, payload = self.queue.get(timeout=1.0)
                except queue.Empty:
                    dead = [p.exitcode for p in self.processes if p.exitcode not in (None, 0)]
                    if dead:
                        raise JobFailed(f"a job ended with exit code {dead[0]}") from None
                    continue
                if kind == "progress":
                    progress.advance(payload)
                elif kind == "result":
                    yield payload
                elif kind == "done":
                    running -= 1
                else:
                    raise JobFailed(payload)
        finally:
            self.close()

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join()
        self.processes = []


class _Messenger:
    """A job's progress, sent to the parent."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def advance(self, count: int) -> None:
        self.channel.put(("progress", count))


def _job(work: Work[Any], share: Sequence[int], channel: Any) -> None:
    try:
        for result in work(share, _Messenger(channel)):
            channel.put(("result", result))
        channel.put(("done", None))
    except BaseException as error:  # noqa: BLE001 - the parent reports it and stops
        channel.put(("failed", f"job of partitions {list(share)}: {error!r}\n" + _trace()))


def _trace() -> str:
    return traceback.format_exc(limit=8)
