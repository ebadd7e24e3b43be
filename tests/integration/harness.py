"""Real-broker test harness: run Faust workers as subprocesses, produce and read topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(settings: Settings, *names: str) -> None:
    admin = AdminClient(settings.confluent_config())
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=settings.topic_partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def produce(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(settings.confluent_config(**{"enable.idempotence": True}))
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


@dataclass
class Worker:
    """One `faust -A <app> worker` subprocess with its own data dir and web port."""

    app: str
    env: dict[str, str]
    data_dir: Path
    web_port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / f"worker-{self.web_port}.log"

    def start(self, ready_timeout: float = 90.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "DATA_DIR": str(self.data_dir),
            "WEB_PORT": str(self.web_port),
            "PYTHONPATH": str(REPO),
        }
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faust",
                "-A",
                self.app,
                "worker",
                "-l",
                "info",
                "--web-port",
                str(self.web_port),
                "--web-bind",
                "127.0.0.1",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
            if b"Ready" in self.log_path.read_bytes()[offset:]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {ready_timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """Stop cleanly with SIGTERM (Faust commits offsets and flushes tables)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
