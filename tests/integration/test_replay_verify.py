"""Verify and replay on the real broker: a real worker runs orders, then the tools check them.

One worker of version 1 runs five orders to their ends (completed, declined, discarded after
out of stock, refunded, timed out). Then ``orderflow verify`` must find nothing wrong,
and must name an order whose live record was tampered with. Finally ``orderflow
replay`` rebuilds the table into version 2, and a worker of version 2 serves the
replayed processes without sending a single command of the past.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from process_manager import Process, State
from streams.kafka.topics import COMMAND_TOPICS
from streams.settings import Settings
from streams.tools.history import read_table, scan
from tests.integration.flows import get_process, place_order, stock, wait_terminal
from tests.integration.harness import (
    REPO,
    Service,
    faust_worker,
    isolated_settings,
    unique,
)

pytestmark = pytest.mark.integration

WEB_PORT_V1 = 16090
WEB_PORT_V2 = 16091
# Settlement far in the future: no payment settles while the module runs, so every record and
# every command topic stays still once the orders have ended.
TIMING = {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "600"}


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    data_dir: Path
    worker: Service
    outcomes: dict[str, tuple[str, str | None]]
    """order id -> (state, cancellation reason) the flow must end in."""


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    isolated, env = isolated_settings(settings)
    env |= TIMING
    data_dir = tmp_path_factory.mktemp("replay")
    worker = faust_worker("streams.process.worker", env, data_dir / "v1", WEB_PORT_V1)
    worker.start()
    try:
        sku, short = unique("sku"), unique("sku")
        stock(isolated, {sku: 10, short: 1})
        flows = {
            unique("ok"): ("card_ok", [(sku, 2)], ("Completed", None)),
            unique("declined"): ("card_declined", [(sku, 1)], ("Cancelled", "PaymentFailed")),
            unique("discard"): ("card_ok", [(short, 2)], ("Cancelled", "ProductWasOutOfStock")),
            unique("refund"): (
                "card_settles_immediately",
                [(short, 5)],
                ("Cancelled", "ProductWasOutOfStock"),
            ),
            unique("timeout"): ("card_no_response", [(sku, 1)], ("Cancelled", "TimedOut")),
        }
        for order_id, (method, items, _) in flows.items():
            place_order(isolated, order_id, method, items)  # type: ignore[arg-type]
        for order_id, (_, _, outcome) in flows.items():
            process = wait_terminal(WEB_PORT_V1, order_id, timeout=60)
            assert (process["state"], process["cancellation_reason"]) == outcome, process
        outcomes = {order_id: outcome for order_id, (_, _, outcome) in flows.items()}
        yield System(isolated, env, data_dir, worker, outcomes)
    finally:
        if worker.running():
            worker.stop()


def run_tool(command: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``orderflow COMMAND ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", command, *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_finds_no_difference_after_real_flows(system: System) -> None:
    # When verify folds every input of the worker and compares with its live table
    result = run_tool("verify", system.env, "--json")

    # Then nothing differs, and every order was checked
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["differences"] == []
    assert report["orders_folded"] == report["orders_live"] == len(system.outcomes)
    assert report["matched"] == len(system.outcomes)
    assert "events/s" in result.stderr  # the progress bar
    print(f"verify: {report['events']} events, {report['events_per_s']} events/s")


def test_verify_names_an_order_whose_live_state_was_tampered_with(system: System) -> None:
    # Given a bogus record for one order in the live table's changelog
    topic = system.settings.process_changelog_topic(1)
    order_id = next(o for o, (state, _) in system.outcomes.items() if state == "Cancelled")
    original = read_table(system.settings, topic)[order_id]
    assert original.value is not None
    real = Process.model_validate_json(original.value)
    bogus = real.model_copy(update={"state": State.Completed, "cancellation_reason": None})
    produce_to(system.settings, topic, original.partition, order_id, bogus)
    try:
        # When verify runs
        result = run_tool("verify", system.env)

        # Then it fails and names that order, and only that one
        assert result.returncode == 1, result.stdout + result.stderr
        assert "differences: 1" in result.stdout
        assert f"{order_id}: mismatch: state" in result.stdout
    finally:
        produce_to(system.settings, topic, original.partition, order_id, real)
    assert run_tool("verify", system.env).returncode == 0


def test_verify_limited_to_some_orders_checks_only_those(system: System) -> None:
    result = run_tool("verify", system.env, "--json", "--limit-orders", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["limited"] and report["orders_folded"] <= 2


TIMING_FIELDS = ("elapsed_s", "events_per_s")


def test_verify_with_two_jobs_reports_exactly_what_one_job_reports(system: System) -> None:
    # When verify runs with one job, then with two (each folding half of the partitions)
    reports = []
    for jobs in ("1", "2"):
        result = run_tool("verify", system.env, "--json", "--jobs", jobs)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "events/s" in result.stderr  # the progress bar, drawn by the parent
        reports.append(
            {k: v for k, v in json.loads(result.stdout).items() if k not in TIMING_FIELDS}
        )

    # Then both report the same, every order included
    one, two = reports
    assert two == one
    assert one["matched"] == len(system.outcomes) and one["events"] > 0


def test_replay_into_a_new_version_serves_the_same_processes_without_new_commands(
    system: System,
) -> None:
    # Given the live processes, and the workers of version 1 stopped (step 1 of the switch)
    before = {o: get_process(WEB_PORT_V1, o) for o in system.outcomes}
    system.worker.stop()
    commands_before = commands_sent(system.settings)

    # When the table is replayed into version 2
    result = run_tool("replay", system.env, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    app_id = system.env["APP_ID"]
    assert report["app_id"] == f"{app_id}-v2"
    assert report["changelog"] == f"{app_id}-v2-processes-changelog"
    assert report["processes"] == len(system.outcomes)
    print(f"replay: {report['events']} events, {report['events_per_s']} events/s")
    # and a worker of version 2 starts (step 2 of the switch)
    v2 = faust_worker(
        "streams.process.worker",
        {**system.env, "APP_VERSION": "2"},
        system.data_dir / "v2",
        WEB_PORT_V2,
    )
    v2.start()
    try:
        # Then it serves every process as version 1 left it, restored from the new changelog
        for order_id, (state, reason) in system.outcomes.items():
            after = wait_served(WEB_PORT_V2, order_id)
            assert (after["state"], after["cancellation_reason"]) == (state, reason)
            assert after["applied"] == before[order_id]["applied"]  # type: ignore[index]
            assert after["history"] == before[order_id]["history"]  # type: ignore[index]
        # and the switch sent no command at all
        time.sleep(3)
        assert commands_sent(system.settings) == commands_before
        # and version 2 goes on with new orders from where the replay stopped
        order_id = unique("after")
        place_order(system.settings, order_id, "card_declined", [("sku-x", 1)])
        assert wait_terminal(WEB_PORT_V2, order_id)["state"] == "Cancelled"
        # and its live table verifies against the inputs
        result = run_tool("verify", {**system.env, "APP_VERSION": "2"})
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        v2.stop()


def test_replay_refuses_a_version_that_is_in_use(system: System) -> None:
    result = run_tool("replay", system.env, "--to-version", "2")
    assert result.returncode == 2
    assert "replay refused" in result.stderr


def test_replay_with_two_jobs_writes_exactly_what_one_job_writes(system: System) -> None:
    # Given the workers stopped
    if system.worker.running():
        system.worker.stop()
    settings = system.settings

    # When the table is replayed with one job into version 3, and with two into version 4
    reports = {}
    for version, jobs in ((3, "1"), (4, "2")):
        result = run_tool(
            "replay", system.env, "--json", "--to-version", str(version), "--jobs", jobs
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        reports[version] = {
            k: v
            for k, v in report.items()
            if k not in (*TIMING_FIELDS, "version", "app_id", "changelog")
        }

    # Then both read the same events, wrote the same processes and committed the same offsets
    assert reports[4] == reports[3]
    assert reports[3]["processes"] >= len(system.outcomes)
    # and each changelog holds the same record for every order, on the same partition
    three = read_table(settings, settings.process_changelog_topic(3))
    four = read_table(settings, settings.process_changelog_topic(4))
    assert len(three) == reports[3]["processes"]
    assert four == three


def produce_to(settings: Settings, topic: str, partition: int, order_id: str, p: Process) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.producer_config())
    producer.produce(
        topic, key=order_id.encode(), value=p.model_dump_json().encode(), partition=partition
    )
    assert producer.flush(30) == 0


def commands_sent(settings: Settings) -> Counter[tuple[str, str]]:
    """Every command on the commands topics, by (type, message id)."""
    found: Counter[tuple[str, str]] = Counter()
    for part in scan(settings, COMMAND_TOPICS):
        for items in part.per_topic:
            found.update((i.envelope.type, i.envelope.message_id) for i in items)
    return found


def wait_served(web_port: int, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            process = get_process(web_port, order_id)
        except OSError:
            process = None
        if process is not None:
            return process
        time.sleep(0.25)
    raise AssertionError(f"{order_id} not served on {web_port} after {timeout}s")
