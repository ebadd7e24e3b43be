"""``consumer_lag{group,topic}``: what each of the project's member groups has yet to consume.

Measured at scrape time with blocking Kafka requests (off the event loop), cached for
``CACHE_SECONDS``. The groups and their topics come from ``streams.kafka.groups``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from confluent_kafka import Consumer, IsolationLevel, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client.core import GaugeMetricFamily, Metric

from streams.kafka import groups
from streams.kafka.consuming import committed, offsets_reader
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)

CACHE_SECONDS = 3.0
# Partitions whose raw lag is at most this are read to the end to count real records: a
# transaction leaves a commit marker behind its records, which no consumer ever commits past.
PROBE_LIMIT = 50


class ConsumerLag:
    """``consumer_lag{group,topic}``: records a group has yet to consume, summed over partitions.

    Per partition: the last stable offset (read_committed end) minus the group's committed
    offset, or minus the start of the log when the group has committed nothing there yet. A
    small difference is checked by reading those records read_committed: transaction markers
    and aborted records are not lag. ``refresh`` blocks (Kafka requests): call it off the loop.
    """

    def __init__(
        self,
        settings: Settings,
        groups: dict[str, list[str]],
        ttl: float = CACHE_SECONDS,
        timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.groups = groups
        self.ttl = ttl
        self.timeout = timeout
        self._lag: dict[tuple[str, str], int] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        self._readers: dict[str, Consumer] = {}

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            try:
                self._lag = self.measure()
            except Exception as error:  # a scrape must not fail because Kafka is slow
                log.warning("consumer lag not measured", error=repr(error))
                self.close()
            self._at = time.monotonic()

    def close(self) -> None:
        """Drop the clients; the next measurement makes new ones."""
        self._admin = None
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "consumer_lag",
            "Records not yet consumed by a consumer group, summed over partitions.",
            labels=["group", "topic"],
        )
        for (group, topic), lag in sorted(self._lag.items()):
            gauge.add_metric([group, topic], lag)
        yield gauge

    def measure(self) -> dict[tuple[str, str], int]:
        """The lag per (group, topic) now (blocking Kafka requests; no cache)."""
        admin = self._admin = self._admin or AdminClient(self.settings.confluent_config())
        partitions = range(self.settings.topic_partitions)
        topics = sorted({t for ts in self.groups.values() for t in ts})
        every = [TopicPartition(t, p) for t in topics for p in partitions]
        ends = self._offsets(admin, every, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        starts = self._offsets(admin, every, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        positions: dict[tuple[str, str, int], int] = {}
        for group, group_topics in self.groups.items():
            asked = [TopicPartition(t, p) for t in group_topics for p in partitions]
            reader = self._readers.get(group)
            if reader is None:
                reader = self._readers[group] = offsets_reader(self.settings, group, stable=False)
            offsets = committed(reader, asked, self.timeout)
            for t in group_topics:
                for p in partitions:
                    offset = offsets.get((t, p), -1)
                    positions[(group, t, p)] = offset if offset >= 0 else starts[(t, p)]
        raw = {k: max(0, ends[(k[1], k[2])] - at) for k, at in positions.items()}
        probed = self._records_ahead(
            {k: positions[k] for k, lag in raw.items() if 0 < lag <= PROBE_LIMIT}, ends
        )
        lag: dict[tuple[str, str], int] = {}
        for (group, t, p), n in raw.items():
            lag[(group, t)] = lag.get((group, t), 0) + probed.get((group, t, p), n)
        return lag

    def _offsets(
        self, admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            dict.fromkeys(partitions, spec),
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=self.timeout,
        )
        return {
            (tp.topic, tp.partition): future.result(timeout=self.timeout).offset
            for tp, future in futures.items()
        }

    def _records_ahead(
        self, positions: dict[tuple[str, str, int], int], ends: dict[tuple[str, int], int]
    ) -> dict[tuple[str, str, int], int]:
        """The committed records between each position and the end, read read_committed."""
        if not positions:
            return {}
        # Groups that share a partition at the same position share one read.
        starts: dict[tuple[str, int], set[int]] = {}
        for (_, t, p), at in positions.items():
            starts.setdefault((t, p), set()).add(at)
        reads = sorted({(t, p, at) for (t, p), ats in starts.items() for at in ats})
        counted: dict[tuple[str, int, int], int] = {}
        for batch in _unique_partitions(reads):
            counted |= self._count(batch, ends)
        return {k: counted[(k[1], k[2], at)] for k, at in positions.items()}

    def _count(
        self, reads: list[tuple[str, int, int]], ends: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int, int], int]:
        reader = Consumer(
            self.settings.confluent_config(
                **{
                    "group.id": groups.lag_probe(self.settings),
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        counts = {(t, p, at): 0 for t, p, at in reads}
        started = {(t, p): at for t, p, at in reads}
        open_partitions = set(started)
        deadline = time.monotonic() + self.timeout
        try:
            reader.assign([TopicPartition(t, p, at) for t, p, at in reads])
            while open_partitions and time.monotonic() < deadline:
                for record in reader.consume(500, timeout=0.2):
                    where = (record.topic() or "", record.partition() or 0)
                    error = record.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        continue
                    if error is None and (record.offset() or 0) < ends[where]:
                        counts[(*where, started[where])] += 1
                    if error is not None or (record.offset() or 0) + 1 >= ends[where]:
                        open_partitions.discard(where)
        finally:
            reader.close()
        if open_partitions:
            raise TimeoutError(f"lag probe did not reach the end of {sorted(open_partitions)}")
        return counts


def _unique_partitions(
    reads: list[tuple[str, int, int]],
) -> Iterable[list[tuple[str, int, int]]]:
    """Split reads so that no batch assigns one partition twice."""
    pending = list(reads)
    while pending:
        batch: list[tuple[str, int, int]] = []
        seen: set[tuple[str, int]] = set()
        rest: list[tuple[str, int, int]] = []
        for read in pending:
            (rest if read[:2] in seen else batch).append(read)
            seen.add(read[:2])
        yield batch
        pending = rest
