"""Real-broker test harness: run Faust workers as subprocesses, produce and read topics."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from aggregates.messages import Envelope, Message, from_wire
from streams.kafka.admin import ensure_topics
from streams.kafka.codec import encode, external, key_of
from streams.kafka.routing import owner_of
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(settings: Settings, *names: str) -> None:
    admin = AdminClient(settings.confluent_config())
    # -1: the broker's default.replication.factor (1 on the single node, 3 on the cluster)
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=settings.topic_partitions, replication_factor=-1)
            for n in names
        ]
    )
    for future in futures.values():
        future.result(timeout=30)


def produce(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    produce_raw(settings, topic, list(messages))


def produce_raw(
    settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce records in order, whatever they hold, and wait until all are acknowledged."""
    producer = Producer(settings.producer_config(**{"enable.idempotence": True}))
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "messages were not delivered"


def read_all(
    settings: Settings, topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[bytes, bytes]]:
    """Read a topic from the beginning until `expected` records arrived or the timeout passed."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": unique("reader"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    records: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            records.append((message.key(), message.value()))
    finally:
        consumer.close()
    return records


def read_to_end(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    """Every committed record of a topic, up to the end of each partition as it is now."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": unique("reader"),
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    pending = set(metadata.partitions)
    records: list[tuple[bytes, bytes]] = []
    try:
        while pending:
            message = consumer.poll(10)
            assert message is not None, f"{topic}: no end of partitions {pending} within 10 s"
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
            elif error is None:
                records.append((message.key(), message.value()))
    finally:
        consumer.close()
    return records


@dataclass
class Service:
    """A real subprocess of the project, started and awaited by a line in its log."""

    argv: list[str]
    env: dict[str, str]
    data_dir: Path
    name: str
    ready_marker: bytes
    launcher: list[str] = field(default_factory=list)  # runs the interpreter (ip netns exec)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / f"{self.name}.log"

    def start(self, ready_timeout: float = 90.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "DATA_DIR": str(self.data_dir), "PYTHONPATH": str(REPO)}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.launcher, sys.executable, *self.argv],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
                )
            if self.ready_marker in self.log_path.read_bytes()[offset:]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready in {ready_timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """Stop cleanly with SIGTERM."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def faust_worker(
    app: str,
    env: dict[str, str],
    data_dir: Path,
    web_port: int,
    bind: str = "127.0.0.1",
    launcher: tuple[str, ...] = (),
) -> Service:
    """A `faust -A <app> worker` on its own web port (which also makes its worker id unique),
    or on its own host: ``bind`` its address, ``launcher`` what runs it there."""
    argv = ["-m", "faust", "-A", app, "worker", "-l", "info"]
    argv += ["--web-port", str(web_port), "--web-bind", bind]
    env = {**env, "WEB_PORT": str(web_port), "WEB_BIND": bind}
    name = f"worker-{web_port}" if bind == "127.0.0.1" else f"worker-{bind}-{web_port}"
    return Service(argv, env, data_dir, name, b"Ready", list(launcher))


def module_runner(env: dict[str, str], data_dir: Path, only: str, name: str = "modules") -> Service:
    """`python -m streams.modules.runner --only ...`: ready once each module has its partitions."""
    argv = ["-m", "streams.modules.runner", "--only", only]
    return Service(argv, env, data_dir, name, b"modules running")


def isolated_settings(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """Settings (and the matching environment) with a fresh topic prefix and app id."""
    prefix, app_id = unique("t") + ".", unique("app")
    isolated = settings.model_copy(update={"topic_prefix": prefix, "app_id": app_id})
    ensure_topics(isolated)
    return isolated, {"TOPIC_PREFIX": prefix, "APP_ID": app_id}


def wire(message: Message, *, message_id: str | None = None) -> tuple[bytes, bytes]:
    """(key, value) of an external command, as a client would send it."""
    envelope = external(message, message_id)
    return key_of(envelope), encode(envelope)


def envelopes(records: list[tuple[bytes, bytes]]) -> list[Envelope]:
    return [from_wire(json.loads(value)) for _, value in records]


def same_partition_id(prefix: str, other: str, partitions: int) -> str:
    """An order id starting with ``prefix`` whose key owns ``other``'s partition."""
    target = owner_of(other.encode(), partitions)
    return next(
        candidate
        for candidate in (f"{prefix}-{n}" for n in itertools.count())
        if owner_of(candidate.encode(), partitions) == target
    )


def misrouted_id(prefix: str, partitions: int) -> str:
    """An order id that librdkafka's default partitioner puts on another partition."""
    while True:
        candidate = unique(prefix)
        key = candidate.encode()
        if zlib.crc32(key) % partitions != owner_of(key, partitions):
            return candidate


def send_as_a_default_client(
    settings: Settings, topic: str, records: list[tuple[bytes, bytes]]
) -> None:
    """Produce with confluent-kafka's defaults: no partitioner set, so CRC32 (consistent_random)."""
    producer = Producer(settings.confluent_config())
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(web_port: int) -> Samples:
    """Every sample of ``GET /metrics``, by name and labels."""
    url = f"http://127.0.0.1:{web_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)
