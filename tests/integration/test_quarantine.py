"""Quarantine on a real worker: a raising handler parks one process while the rest of its
partition completes; an operator skips one failing message and resumes another after a fix.

The bug is a test-only fault (``ORDERFLOW_FAULT=process_handler_error``): the worker's handler
raises for the ``PaymentFinalized`` of the orders whose id holds a marker. "Deploying the fix"
is restarting the worker without the fault, on the same data directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from tests.integration.flows import get_process, history_types, place_order, stock, wait_terminal
from tests.integration.harness import (
    REPO,
    Service,
    faust_worker,
    isolated_settings,
    same_partition_id,
    unique,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16091
TOKEN = "quarantine-operator"


def on_one_partition(partitions: int, *prefixes: str) -> list[str]:
    """One order id per prefix, all owning the same partition."""
    first = unique(prefixes[0])
    return [first, *(same_partition_id(prefix, first, partitions) for prefix in prefixes[1:])]


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"not true after {timeout}s: {check.__doc__ or check}")


def quarantine_of(order_id: str) -> dict[str, Any] | None:
    try:
        process = get_process(WEB_PORT, order_id)
    except OSError:  # the worker is starting or rebalancing
        return None
    return None if process is None else process.get("quarantine")


def operator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``orderflow ACTION ORDER --url ... --json`` against the worker, as an operator runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            *args,
            "--url",
            f"http://127.0.0.1:{WEB_PORT}",
            "--json",
        ],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def get(path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}{path}", timeout=10) as response:
        body: bytes = response.read()
        return body


def test_a_raising_handler_quarantines_one_process_and_skip_and_resume_release_it(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker whose handler raises for the PaymentFinalized of orders marked "broken",
    # and, on one partition, two such orders (settled at once) between three healthy ones
    isolated, env = isolated_settings(settings)
    marker = unique("broken")
    env |= {
        "PROCESS_TIMEOUT_ALL_S": "6",
        "PAYMENT_SETTLEMENT_DELAY_S": "60",
        "OPERATOR_TOKEN": TOKEN,
    }
    fault = {
        "ORDERFLOW_FAULT": "process_handler_error",
        "ORDERFLOW_FAULT_MATCH": marker,
        "ORDERFLOW_FAULT_TYPES": "PaymentFinalized",
    }
    fine_1, to_skip, fine_2, to_resume, fine_3 = on_one_partition(
        isolated.topic_partitions,
        unique("fine"),
        f"{marker}-skip",
        unique("fine"),
        f"{marker}-resume",
        unique("fine"),
    )
    sku = unique("sku")
    stock(isolated, {sku: 10})
    data_dir = tmp_path / "worker"
    worker = faust_worker("streams.process.worker", env | fault, data_dir, WEB_PORT)
    services.append(worker)
    worker.start()

    # When the orders are placed
    for order_id in (fine_1, to_skip, fine_2, to_resume, fine_3):
        method = "card_settles_immediately" if marker in order_id else "card_ok"
        place_order(isolated, order_id, method, [(sku, 1)])

    # Then the healthy orders of the partition complete
    for order_id in (fine_1, fine_2, fine_3):
        assert wait_terminal(WEB_PORT, order_id)["state"] == "Completed"
    # And each broken one is quarantined by its PaymentFinalized, with the exception's message
    # and the PaymentSettled parked behind it, and its state untouched
    for order_id in (to_skip, to_resume):
        held = eventually(lambda o=order_id: (q := quarantine_of(o)) and q["parked"] and q)
        assert held["message"]["type"] == "PaymentFinalized"
        assert held["reason"].startswith("InjectedFault: injected fault for PaymentFinalized")
        process = get_process(WEB_PORT, order_id)
        assert process is not None and process["state"] == "AwaitingPayment"
        assert [p["type"] for p in process["quarantine"]["parked"]] == ["PaymentSettled"]
    # And an operator finds them in the list, and in /metrics
    listed = json.loads(get("/processes/?quarantined=true"))
    assert {p["order_id"] for p in listed} == {to_skip, to_resume}
    eventually(lambda: b"processes_quarantined 2.0" in get("/metrics"), 30)

    # When an operator without the token tries, nothing is sent
    refused = operator({"OPERATOR_TOKEN": ""}, "skip", to_skip)
    assert refused.returncode == 1
    assert "Authorization: Bearer" in json.loads(refused.stdout)["error"]
    assert refused.stderr.strip().startswith("Error: 401: ")  # and one line for people
    # When an operator skips to_skip's failing message, with the bug still there
    skipped = operator({"OPERATOR_TOKEN": TOKEN}, "skip", to_skip)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert json.loads(skipped.stdout)["type"] == "SkipMessage"

    # Then the parked PaymentSettled is taken in, and with no payment finalized the process
    # times out, and its settled money is refunded
    process = wait_terminal(WEB_PORT, to_skip)
    assert process["state"] == "Cancelled", process["history"]
    assert process["cancellation_reason"] == "TimedOut"
    assert process["quarantine"] is None
    types = history_types(process)
    assert types[types.index("SkipMessage") :][:2] == ["SkipMessage", "PaymentSettled"]
    assert types[-1] == "PaymentRefunded"

    # When the fix is deployed (the worker restarts without the fault) and to_resume resumed
    worker.stop()
    fixed = faust_worker("streams.process.worker", env, data_dir, WEB_PORT)
    services.append(fixed)
    fixed.start()
    eventually(lambda: quarantine_of(to_resume))
    resumed = operator({"OPERATOR_TOKEN": TOKEN}, "resume", to_resume)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    # Then its failing and parked messages are taken in, in order, and the order completes
    process = wait_terminal(WEB_PORT, to_resume)
    assert process["state"] == "Completed", process["history"]
    types = history_types(process)
    assert types[types.index("ResumeProcess") :][:3] == [
        "ResumeProcess",
        "PaymentFinalized",
        "PaymentSettled",
    ]
    eventually(lambda: b"processes_quarantined 0.0" in get("/metrics"), 30)

    # And a fold of the log agrees with the live table, for all five orders
    verify = subprocess.run(
        [sys.executable, "-m", "streams.cli", "verify", "--json"],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(verify.stdout)
    assert report["differences"] == [], report
    assert verify.returncode == 0
