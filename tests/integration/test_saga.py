"""COORDINATION=saga on the real broker: the article's stateless saga in place of the process
manager, on the same topics, with the real modules, and what it cannot do.

One worker runs the saga (and the module handlers) on fresh topics. Orders of every kind of
the demo go through it: a good card completes and an out-of-stock order discards its unsettled
payment, as with the process manager; a declined card and a silent gateway leave the order
initialized for good (no reaction, no timeout), and a payment that settled before the discard
is never refunded. No process table exists, and the process views say why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from streams.settings import Settings
from tests.integration.flows import place_order, stock
from tests.integration.harness import (
    REPO,
    faust_worker,
    isolated_settings,
    read_to_end,
    unique,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16096
# Timeouts of 2 s would cancel the silent and declined orders within the test if any timer
# ran; settlement late, so that an out-of-stock discard finds the card_ok payment unsettled.
ENV = {"COORDINATION": "saga", "PROCESS_TIMEOUT_ALL_S": "2", "PAYMENT_SETTLEMENT_DELAY_S": "60"}


@dataclass
class Saga:
    settings: Settings
    env: dict[str, str]
    orders: dict[str, str]
    """kind -> order id"""
    data_dir: Path


@pytest.fixture(scope="module")
def saga(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saga]:
    isolated, env = isolated_settings(settings.model_copy(update={"coordination": "saga"}))
    env |= ENV
    data_dir = tmp_path_factory.mktemp("saga")
    worker = faust_worker("streams.process.worker", env, data_dir, WEB_PORT)
    worker.start()
    try:
        sku, short = unique("sku"), unique("sku")
        stock(isolated, {sku: 10, short: 0})
        flows = {
            "completed": ("card_ok", sku),
            "discarded": ("card_ok", short),
            "settled": ("card_settles_immediately", short),
            "declined": ("card_declined", sku),
            "silent": ("card_no_response", sku),
        }
        orders = {kind: unique(kind) for kind in flows}
        for kind, (method, product) in flows.items():
            place_order(isolated, orders[kind], method, [(product, 1)])  # type: ignore[arg-type]
        yield Saga(isolated, env, orders, data_dir)
    finally:
        worker.stop()


def events(settings: Settings, order_id: str) -> list[str]:
    """The types of the order's and payment's events of ``order_id``, in order per topic."""
    found = []
    for topic in ("orders.events", "payments.events"):
        for key, value in read_to_end(settings, settings.topic(topic)):
            if key == order_id.encode():
                found.append(json.loads(value)["type"])
    return found


def wait_for(settings: Settings, order_id: str, wanted: str, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = events(settings, order_id)
        if wanted in seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{order_id}: no {wanted} after {timeout}s: {seen}")


def test_a_good_card_completes_the_order(saga: Saga) -> None:
    seen = wait_for(saga.settings, saga.orders["completed"], "OrderCompleted")
    assert "OrderCancelled" not in seen


def test_out_of_stock_cancels_and_discards_an_unsettled_payment(saga: Saga) -> None:
    seen = wait_for(saga.settings, saga.orders["discarded"], "PaymentDiscarded")
    assert "OrderCancelled" in seen


def test_what_the_saga_cannot_do(saga: Saga) -> None:
    # Given the settled payment's discard refused, and the other orders' last events in
    settled = wait_for(saga.settings, saga.orders["settled"], "PaymentDiscardRejected")
    declined = wait_for(saga.settings, saga.orders["declined"], "PaymentFailed")
    silent = wait_for(saga.settings, saga.orders["silent"], "PaymentRequested")

    # When well past every timeout the process manager would have (2 s here)
    time.sleep(8)

    # Then the settled payment was never refunded: the money is kept
    assert events(saga.settings, saga.orders["settled"]) == settled
    assert "PaymentRefunded" not in settled and "OrderCancelled" in settled
    # and the declined and the silent orders stay initialized for good
    for order_id, before in ((saga.orders["declined"], declined), (saga.orders["silent"], silent)):
        after = events(saga.settings, order_id)
        assert after == before
        assert "OrderCancelled" not in after and "OrderInitialized" in after


def test_no_process_table_exists(saga: Saga) -> None:
    # After the orders went through: no changelog topic, and no table store on disk
    wait_for(saga.settings, saga.orders["completed"], "OrderCompleted")
    admin = AdminClient(saga.settings.confluent_config())
    topics = admin.list_topics(timeout=10).topics
    assert saga.settings.topic("orders.events") in topics
    assert saga.settings.process_changelog_topic() not in topics
    assert not list(saga.data_dir.rglob("*processes*"))


def get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize(
    "path",
    ["/processes/", "/processes/stats/", "/processes/some-order/", "/ui/", "/ui/processes/x/"],
)
def test_the_process_views_say_saga_mode_keeps_no_process_state(saga: Saga, path: str) -> None:
    status, body = get(path)
    assert status == 404
    assert "COORDINATION=saga" in body and "keeps no process state" in body


def test_an_operator_cancel_is_answered_the_same(saga: Saga) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{WEB_PORT}/processes/{saga.orders['silent']}/cancel/",
        method="POST",
        data=b"{}",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 404
    assert "keeps no process state" in info.value.read().decode()


def test_metrics_are_served_without_process_gauges(saga: Saga) -> None:
    status, body = get("/metrics")
    assert status == 200
    assert "messages_total" in body
    assert "\nprocesses{" not in body


def test_the_demo_prints_the_outcome_table_of_the_saga(saga: Saga) -> None:
    # When the demo drives 100 carts of its mix through the saga
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.demo", "--orders", "100", "--rate", "100"]
        + ["--quiet", "12", "--timeout", "240"],
        cwd=REPO,
        env={**os.environ, **saga.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    # Then every order reached what the saga reaches, shown next to the contract's outcome
    assert result.returncode == 0, result.stdout + result.stderr
    table = {
        tuple(re.split(r"\s{2,}", line.strip())) for line in result.stdout.splitlines() if line
    }
    assert ("paid and shipped", "Completed", "80", "yes") in table
    assert (
        "card declined",
        "not ended: order initialized, payment failed",
        "7",
        "NO",
    ) in table
    assert (
        "gateway silent, timed out",
        "not ended: order initialized, payment requested",
        "4",
        "NO",
    ) in table
    assert (
        "out of stock, payment discarded",
        "Cancelled/ProductWasOutOfStock, payment discarded",
        "5",
        "yes",
    ) in table
    assert (
        "out of stock, payment refunded",
        "not ended: Cancelled/ProductWasOutOfStock, payment settled, discard rejected",
        "4",
        "NO",
    ) in table
    assert "saga: 15 orders did not end" in result.stdout
