"""Schema evolution on the real broker: topics written by release 0.1.0 stay readable.

Two orders recorded from release 0.1.0 (every record of the process manager's inputs, byte for
byte, ``tests/fixtures/``) are written to fresh topics with their original timestamps: one
keeps its ``PaymentFinalized`` of ``schema_version`` 1 (``settle_after``), the other's is
re-encoded by this release as version 2 (``settles_at``). The live worker, ``verify`` and
``replay`` must all read both; a record of a future version is dead-lettered with the version
named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from confluent_kafka import Producer

from process_manager import REACTS_TO, Process
from streams.kafka.codec import decode, encode
from streams.kafka.topics import ACCEPTED_TYPES, COMMAND_TOPIC, DEAD_LETTERS
from streams.settings import Settings
from streams.tools.history import read_table
from tests.fixtures.recorded import Recorded, release_0_1_0
from tests.integration.flows import get_process, wait_terminal
from tests.integration.harness import (
    REPO,
    Service,
    faust_worker,
    isolated_settings,
    read_all,
    read_to_end,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16095
V1_ORDER, V2_ORDER = "v1-card-ok", "v1-settles-immediately"
# The recorded events are hours old: deadlines from their times must not have passed, or the
# timer would race the history. Modules stay out: only the recorded events drive the orders.
ENV = {"PROCESS_TIMEOUT_ALL_S": "1000000", "WORKER_RUNS_MODULES": "false"}


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    worker: Service
    finalized: dict[str, Recorded]
    """The PaymentFinalized record each order's topic holds."""


def as_version_2(record: Recorded) -> Recorded:
    """The record as this release writes it: decoded (lifted) and encoded again."""
    envelope = decode(record.key, record.value, ACCEPTED_TYPES[record.topic])
    return Recorded(record.topic, record.timestamp_ms, record.key, encode(envelope))


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    isolated, env = isolated_settings(settings)
    env |= ENV
    records = [
        as_version_2(r) if r.type == "PaymentFinalized" and r.key.decode() == V2_ORDER else r
        for r in release_0_1_0()
    ]
    finalized = {r.key.decode(): r for r in records if r.type == "PaymentFinalized"}
    assert json.loads(finalized[V1_ORDER].value)["schema_version"] == 1
    assert json.loads(finalized[V2_ORDER].value)["schema_version"] == 2
    data_dir = tmp_path_factory.mktemp("schema")
    worker = faust_worker("streams.process.worker", env, data_dir / "w", WEB_PORT)
    worker.start()
    try:
        feed_in_order(isolated, records)
        yield System(isolated, env, worker, finalized)
    finally:
        if worker.running():
            worker.stop()


def feed_in_order(settings: Settings, records: list[Recorded]) -> None:
    """Write the records with their original timestamps, each one the process reacts to only
    once the process took the one before in: a worker reads several topics at once, and in
    the recorded run each event was caused by the one before."""
    producer = Producer(settings.producer_config(**{"enable.idempotence": True}))
    for r in records:
        producer.produce(
            settings.topic(r.topic), key=r.key, value=r.value, timestamp=r.timestamp_ms
        )
        assert producer.flush(30) == 0
        message_id = json.loads(r.value)["message_id"]
        if r.type in REACTS_TO:
            wait_applied(r.key.decode(), message_id)


def wait_applied(order_id: str, message_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    process = None
    while time.monotonic() < deadline:
        try:
            process = get_process(WEB_PORT, order_id)
        except OSError:
            process = None
        if process is not None and message_id in process["applied"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{order_id} did not take {message_id} in: {process}")


def run_tool(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def finalized_at(record: Recorded) -> datetime:
    return datetime.fromisoformat(json.loads(record.value)["data"]["finalized_at"])


def test_the_live_worker_takes_in_version_1_and_version_2_payments(system: System) -> None:
    # When a worker of this release consumes the recorded topics from the beginning
    for order_id in (V1_ORDER, V2_ORDER):
        # Then both orders end as they did in release 0.1.0
        process = wait_terminal(WEB_PORT, order_id, timeout=60)
        assert process["state"] == "Completed", process
        assert "PaymentFinalized" in [h["message_type"] for h in process["history"]]
        expected = finalized_at(system.finalized[order_id])
        assert datetime.fromisoformat(process["payment_finalized_at"]) == expected

    # and each RecordOrderPayment it sent carries the finalization time of its record
    topic = system.settings.topic(COMMAND_TOPIC["RecordOrderPayment"])
    sent = [json.loads(v) for _, v in read_to_end(system.settings, topic)]
    times = {
        c["data"]["order_id"]: c["data"]["finalized_at"]
        for c in sent
        if c["type"] == "RecordOrderPayment"
    }
    for order_id in (V1_ORDER, V2_ORDER):
        assert datetime.fromisoformat(times[order_id]) == finalized_at(system.finalized[order_id])
    # and no record went to the dead letters
    assert read_to_end(system.settings, system.settings.topic(DEAD_LETTERS)) == []


def test_a_payment_finalized_of_a_future_version_is_dead_lettered(system: System) -> None:
    # Given a PaymentFinalized of schema_version 3, which no release knows yet
    record = system.finalized[V1_ORDER]
    future = json.loads(record.value)
    future |= {"message_id": "future-1", "schema_version": 3}
    future["data"] = {**future["data"], "settlement": {"at": future["data"]["settle_after"]}}
    topic = system.settings.topic("payments.events")
    producer = Producer(system.settings.producer_config())
    producer.produce(topic, key=record.key, value=json.dumps(future).encode())
    assert producer.flush(30) == 0

    # Then the worker dead-letters it, naming the version
    letters = read_all(system.settings, system.settings.topic(DEAD_LETTERS), 1, timeout=30)
    assert len(letters) == 1
    letter = json.loads(letters[0][1])
    assert letter["reason"] == (
        "unknown schema version: schema_version 3 of PaymentFinalized is newer than this "
        "release reads (up to 2)"
    )
    assert letter["source"]["topic"] == topic
    assert letter["key"] == V1_ORDER


def test_verify_folds_version_1_and_version_2_to_the_live_states(system: System) -> None:
    result = run_tool("streams.cli", system.env, "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["differences"] == []
    assert report["orders_folded"] == report["orders_live"] == report["matched"] == 2
    assert report["undecodable"] == 1  # the future version, skipped as the worker did


def test_replay_rebuilds_both_orders_from_version_1_and_version_2(system: System) -> None:
    system.worker.stop()
    result = run_tool("streams.cli", system.env, "replay", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["processes"] == 2
    assert report["undecodable"] == 1
    table = read_table(system.settings, system.settings.process_changelog_topic(2))
    for order_id in (V1_ORDER, V2_ORDER):
        value = table[order_id].value
        assert value is not None
        process = Process.model_validate_json(value)
        assert process.state == "Completed"
        assert process.payment_finalized_at == finalized_at(system.finalized[order_id])
