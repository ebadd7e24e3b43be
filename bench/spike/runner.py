"""Runs the candidates one after another on the same records and checks each one.

Each candidate gets fresh topics (``spike-<name>-<tag>.in/.out``, 8 partitions), the records
are loaded while its worker is stopped, then one Faust worker drains them; the rate is taken
from the record timestamps of the first and the last output (start-up left out, as in
bench/drain.py). Then the outputs and the table's changelog (read_committed) are checked:
every input answered exactly once, in order, with the right counter, and the last state of
every order right.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.baseline import _create
from bench.common import REPO, cpu_seconds, log, machine_busy, partitions_of
from bench.drain import FaustWorker, load
from bench.spike import core
from streams.settings import Settings

TABLE = "relay"


@dataclass(frozen=True)
class Candidate:
    name: str
    module: str
    title: str
    echo: bool = False  # bench/faust_relay.py: stores and answers the input itself
    env: dict[str, str] = field(default_factory=dict)
    table: str = TABLE


CANDIDATES = {
    "a": Candidate("a", "bench.faust_relay", "(a) Faust per event, bench/faust_relay.py", True),
    "a2": Candidate("a2", "bench.spike.per_event", "(a2) Faust per event, read+decide+write"),
    "b": Candidate("b", "bench.spike.batched", "(b) take_events + patched store + send_soon"),
    "b1": Candidate(
        "b1",
        "bench.spike.batched",
        "(b1) as (b), outputs by await send",
        env={"RELAY_SEND": "await"},
    ),
    "b2": Candidate(
        "b2",
        "bench.spike.batched",
        "(b2) as (b), producer linger 5 ms",
        env={"RELAY_PRODUCER_LINGER_S": "0.005"},
    ),
    "b3": Candidate(
        "b3",
        "bench.spike.batched",
        "(b3) as (b), producer buffer 10,000",
        env={"RELAY_BUFFER_MAX": "10000"},
    ),
    "c": Candidate("c", "bench.spike.txn_loop", "(c) confluent txn loop in the Faust worker"),
    "c3": Candidate(
        "c3",
        "bench.spike.txn_loop",
        "(c3) as (c), offsets under Faust's group id",
        env={"RELAY_LOOP_GROUP": "faust"},
    ),
    "c2": Candidate(
        "c2",
        "bench.spike.txn_loop",
        "(c2) as (c), batches of up to 10,000",
        env={"RELAY_BATCH": "10000"},
    ),
}


@dataclass
class Run:
    base: Settings
    run_dir: Path
    records: list[tuple[bytes, bytes]]
    port: int = 16500
    keep: bool = False

    def take_port(self) -> int:
        self.port += 3
        return self.port

    def env_of(
        self, app_id: str, data_dir: Path, port: int, extra: dict[str, str]
    ) -> dict[str, str]:
        return {
            **os.environ,
            "RELAY_APP_ID": app_id,
            "RELAY_SOURCE": f"{app_id}.in",
            "RELAY_SINK": f"{app_id}.out",
            "DATA_DIR": str(data_dir),
            "WEB_PORT": str(port),
            "WEB_BIND": "127.0.0.1",
            "KAFKA_BOOTSTRAP_SERVERS": self.base.kafka_bootstrap_servers,
            "PYTHONPATH": str(REPO),
            **extra,
        }

    def measure(
        self, candidate: Candidate, restore: bool = False, unpatched: bool = False
    ) -> dict[str, Any]:
        app_id = f"spike-{candidate.name}-{uuid.uuid4().hex[:6]}"
        data_dir = self.run_dir / app_id
        port = self.take_port()
        env = self.env_of(app_id, data_dir, port, candidate.env)
        worker = FaustWorker(candidate.module, env, data_dir / "worker.log", port)
        _create(self.base, f"{app_id}.in", f"{app_id}.out")
        try:
            load_s = load(self.base, f"{app_id}.in", self.records)
            worker.start()
            try:
                outputs, times, cpu = collect(self.base, f"{app_id}.out", len(self.records), worker)
            finally:
                worker.stop()
            changelog = last_values(self.base, f"{app_id}-{candidate.table}-changelog")
            verdict = core.check(self.records, outputs, changelog, echo=candidate.echo)
            result: dict[str, Any] = {
                "candidate": candidate.name,
                "title": candidate.title,
                "app_id": app_id,
                "load_s": load_s,
                **rate(times),
                **cpu,
                "check": verdict.as_dict(),
            }
            if restore:
                result["restore"] = self.restore_probes(
                    candidate, app_id, data_dir, changelog, unpatched
                )
            per_s = result["per_s"]
            log(
                f"{candidate.name}: {verdict.outputs}/{len(self.records)} outputs, "
                + (f"{per_s:,.0f}/s" if per_s else "no rate")
                + f", check {'ok' if verdict.ok else 'FAILED'} {verdict.as_dict()}"
            )
            return result
        finally:
            if not self.keep:
                delete_all(self.base, app_id)

    def rebalance(self, candidate: Candidate) -> dict[str, Any]:
        """One worker drains; a second one starts at its first output and joins while it
        drains (a Faust rebalance under load: revoke, restore, the loop's hand-over); both
        stop at the end."""
        app_id = f"spike-{candidate.name}-{uuid.uuid4().hex[:6]}"
        run_dir = self.run_dir / app_id
        workers = []
        for n in (1, 2):
            port = self.take_port()
            env = self.env_of(app_id, run_dir / f"w{n}", port, candidate.env)
            workers.append(FaustWorker(candidate.module, env, run_dir / f"w{n}.log", port))
        _create(self.base, f"{app_id}.in", f"{app_id}.out")

        def second(count: int) -> None:
            if count > 0 and workers[1].proc is None:
                log(f"{candidate.name}: {count} outputs, a second worker joins")
                workers[1].start()

        try:
            load(self.base, f"{app_id}.in", self.records)
            workers[0].start()
            try:
                outputs, times, _ = collect(
                    self.base, f"{app_id}.out", len(self.records), workers[0], second
                )
            finally:
                for worker in workers:
                    worker.stop()
            changelog = last_values(self.base, f"{app_id}-{candidate.table}-changelog")
            verdict = core.check(self.records, outputs, changelog, echo=candidate.echo)
            log(f"{candidate.name} with a rebalance: {verdict.as_dict()}")
            return {
                "candidate": candidate.name,
                "title": candidate.title + ", a 2nd worker joins",
                "app_id": app_id,
                **rate(times),
                "check": verdict.as_dict(),
            }
        finally:
            if not self.keep:
                delete_all(self.base, app_id)

    def restore_probes(
        self,
        candidate: Candidate,
        app_id: str,
        data_dir: Path,
        changelog: dict[bytes, bytes],
        unpatched: bool,
    ) -> dict[str, Any]:
        """Faust's restore of the loop's table: a worker on the same files, then one on empty
        files (a new owner), each with the loop off, dumping the table once Faust says the
        actives are ready; ``unpatched``: also one on empty files without the marker-safe
        restore (``streams.kafka.recovery.active_remaining``)."""
        expected = {k.decode(): json.loads(v)["count"] for k, v in changelog.items()}
        probes = [("same files", data_dir, "on"), ("empty files", data_dir / "fresh", "on")]
        if unpatched:
            probes.append(("empty files, Faust unpatched", data_dir / "fresh2", "off"))
        found: dict[str, Any] = {}
        for probe, probe_dir, patch in probes:
            dump = self.run_dir / f"{app_id}-{len(found)}.json"
            port = self.take_port()
            extra = {
                **candidate.env,
                "RELAY_LOOP": "off",
                "RELAY_DUMP": str(dump),
                "RELAY_RESTORE_PATCH": patch,
            }
            env = self.env_of(app_id, probe_dir, port, extra)
            worker = FaustWorker(candidate.module, env, probe_dir / f"probe-{port}.log", port)
            started = time.monotonic()
            worker.start()
            try:
                while not dump.exists() and time.monotonic() - started < 90:
                    if worker.exited() is not None:
                        break
                    time.sleep(0.5)
            finally:
                worker.stop()
            if not dump.exists():
                found[probe] = {"ready": False, "waited_s": round(time.monotonic() - started, 1)}
                log(f"restore probe ({probe}): no actives_ready after 90 s, see {worker.log_path}")
                continue
            counts = json.loads(dump.read_text())
            wrong = sum(1 for k, v in expected.items() if counts.get(k) != v)
            found[probe] = {
                "ready": True,
                "ready_after_s": round(time.monotonic() - started, 1),
                "keys": len(counts),
                "wrong": wrong,
            }
            log(f"restore probe ({probe}): {found[probe]}")
        return found


def collect(
    settings: Settings,
    topic: str,
    expected: int,
    worker: FaustWorker,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[tuple[bytes, bytes]], list[float], dict[str, Any]]:
    """The committed outputs (key, value) and their timestamps, until ``expected`` came (then
    3 s more, to see duplicates) or none for 60 s (240 s before the first); the worker's CPU
    seconds between the first and the last. ``on_progress`` gets the count after each poll."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"spike-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions_of(consumer, topic)])
    outputs: list[tuple[bytes, bytes]] = []
    times: list[float] = []
    cpu_first = cpu_last = float("nan")
    busy_first: tuple[float, float] | None = None
    busy_last: tuple[float, float] | None = None
    last_progress = time.monotonic()
    try:
        while len(outputs) < expected:
            limit = 60.0 if outputs else 240.0
            if time.monotonic() - last_progress > limit or worker.exited() is not None:
                log(f"{topic}: {len(outputs)}/{expected}, stopped waiting ({worker.log_path})")
                break
            batch = consumer.consume(5000, timeout=0.5)
            for message in batch:
                if message.error() is not None or message.key() is None:
                    continue
                if not outputs:
                    cpu_first, busy_first = cpu_seconds(worker.pid), machine_busy()
                outputs.append((message.key() or b"", message.value() or b""))
                times.append(message.timestamp()[1] / 1000)
                last_progress = time.monotonic()
            if batch:
                cpu_last, busy_last = cpu_seconds(worker.pid), machine_busy()
            if on_progress is not None:
                on_progress(len(outputs))
        extra_until = time.monotonic() + 3.0
        while len(outputs) >= expected and time.monotonic() < extra_until:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error() is None and message.key() is not None:
                    outputs.append((message.key() or b"", message.value() or b""))
    finally:
        consumer.close()
    cpu: dict[str, Any] = {"worker_cpu_s": cpu_last - cpu_first}
    if busy_first and busy_last and busy_last[1] > busy_first[1]:
        cpu["machine_busy"] = (busy_last[0] - busy_first[0]) / (busy_last[1] - busy_first[1])
    return outputs, sorted(times), cpu


def rate(times: list[float]) -> dict[str, Any]:
    if len(times) < 2 or times[-1] <= times[0]:
        return {"per_s": None, "span_s": None}
    span = times[-1] - times[0]
    return {"per_s": (len(times) - 1) / span, "span_s": span}


def last_values(settings: Settings, topic: str, quiet_s: float = 3.0) -> dict[bytes, bytes]:
    """The last committed value per key of ``topic`` (read until ``quiet_s`` without one)."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"spike-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    values: dict[bytes, bytes] = {}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions_of(consumer, topic)])
        started = last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - started < 120:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error() is None and message.key() is not None:
                    values[message.key() or b""] = message.value() or b""
                    last = time.monotonic()
    finally:
        consumer.close()
    return values


def delete_all(settings: Settings, app_id: str) -> None:
    admin = AdminClient(settings.confluent_config())
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(app_id)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
    groups = [app_id, f"{app_id}-txloop"]
    for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result()
