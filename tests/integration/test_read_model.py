"""The orders read model on the real broker and PostgreSQL, projected by a real worker.

The worker and the tools use a PostgreSQL schema of their own (``search_path``), so that
rebuilding the read model here truncates nobody else's rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from streams.kafka.topics import EVENT_TOPICS
from streams.postgres.db import connect
from streams.read_model.projection import OrderView
from streams.read_model.store import fetch
from streams.settings import Settings
from tests.integration.flows import cancel_process, get_process, place_order, stock, wait_terminal
from tests.integration.harness import (
    REPO,
    Service,
    faust_worker,
    isolated_settings,
    produce,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16092
TIMING = {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "600"}


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    worker: Service
    expected: dict[str, tuple[str, str | None, str | None]]
    """order id -> (state, payment status, cancellation reason) in the read model."""


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    schema = unique("rm").replace("-", "_")
    with connect(settings.database_url) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{settings.database_url}?options={quote(f'-csearch_path={schema}')}"
    isolated, env = isolated_settings(settings.model_copy(update={"database_url": database_url}))
    env |= TIMING | {"DATABASE_URL": database_url}
    worker = faust_worker("streams.process.worker", env, tmp_path_factory.mktemp("rm"), WEB_PORT)
    worker.start()
    try:
        yield System(isolated, env, worker, run_orders(isolated))
    finally:
        if worker.running():
            worker.stop()
        with connect(settings.database_url) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run_orders(settings: Settings) -> dict[str, tuple[str, str | None, str | None]]:
    sku, short = unique("sku"), unique("sku")
    stock(settings, {sku: 10, short: 1})
    flows = {
        unique("ok"): ("card_ok", [(sku, 2)], ("completed", "finalized", None)),
        unique("declined"): ("card_declined", [(sku, 1)], ("cancelled", "failed", "PaymentFailed")),
        unique("discard"): (
            "card_ok",
            [(short, 2)],
            ("cancelled", "discarded", "ProductWasOutOfStock"),
        ),
        unique("refund"): (
            "card_settles_immediately",
            [(short, 5)],
            ("cancelled", "refunded", "ProductWasOutOfStock"),
        ),
    }
    for order_id, (method, items, _) in flows.items():
        place_order(settings, order_id, method, items)  # type: ignore[arg-type]
    # and one cancelled by an operator while its payment never answers
    manual = unique("manual")
    place_order(settings, manual, "card_no_response", [(sku, 1)])
    eventually(lambda: (get_process(WEB_PORT, manual) or {}).get("state") == "AwaitingPayment")
    cancel_process(settings, manual)
    expected: dict[str, tuple[str, str | None, str | None]] = {
        order_id: outcome for order_id, (_, _, outcome) in flows.items()
    }
    expected[manual] = ("cancelled", "discarded", "ManualCancellation")
    for order_id in expected:
        wait_terminal(WEB_PORT, order_id, timeout=60)
    return expected


def rows(settings: Settings, order_ids: list[str]) -> dict[str, OrderView]:
    with connect(settings.database_url) as conn:
        return fetch(conn, order_ids)


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.25)


def settled(system: System) -> dict[str, OrderView]:
    """The rows of the orders, once the projector has caught up with their ends."""
    order_ids = list(system.expected)

    def caught_up() -> bool:
        found = rows(system.settings, order_ids)
        return all(
            o in found and (found[o].state, found[o].payment_status) == e[:2]
            for o, e in system.expected.items()
        )

    eventually(caught_up)
    return rows(system.settings, order_ids)


def replay(system: System, *options: str) -> subprocess.CompletedProcess[str]:
    """``orderflow replay OPTIONS --json`` against the system's topics and database."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", *options, "--json"],
        cwd=REPO,
        env={**os.environ, **system.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_read_model_shows_each_order_with_its_state_and_payment_status(
    system: System,
) -> None:
    found = settled(system)
    for order_id, (state, payment_status, reason) in system.expected.items():
        row = found[order_id]
        assert (row.state, row.payment_status, row.cancellation_reason) == (
            state,
            payment_status,
            reason,
        ), order_id
        assert row.client_id == "client-1"
        assert row.currency == "EUR"
        assert row.created_at is not None and row.updated_at is not None
        assert row.total_price is not None and row.total_price > 0
        assert (row.completed_at is not None) == (state == "completed")
        assert (row.cancelled_at is not None) == (state == "cancelled")
        assert row.payment_id is not None


def test_a_duplicated_event_changes_nothing_in_the_read_model(system: System) -> None:
    # Given the settled rows
    before = settled(system)
    order_id = next(o for o, e in system.expected.items() if e[1] == "refunded")

    # When every event of one order is published again (as an at-least-once relay may)
    for topic in EVENT_TOPICS:
        name = system.settings.topic(topic)
        again = [
            r
            for r in read_all(system.settings, name, 10_000, timeout=3)
            if r[0] == order_id.encode()
        ]
        produce(system.settings, name, again)
    # and a marker order shows the projector has read past the copies
    marker = unique("marker")
    place_order(system.settings, marker, "card_declined", [("sku-x", 1)])
    eventually(
        lambda: rows(system.settings, [marker]).get(marker, OrderView(marker)).state == "cancelled"
    )

    # Then every row is as it was
    assert rows(system.settings, list(system.expected)) == before


def test_projecting_again_from_scratch_gives_identical_rows(system: System) -> None:
    # Given the settled rows, and the worker stopped
    before = settled(system)
    system.worker.stop()

    # When the read model is rebuilt from the events topics
    result = replay(system, "--read-model-only")

    # Then the rows are identical
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(system.settings, list(system.expected)) == before
    with connect(system.settings.database_url) as conn:
        count = conn.execute("SELECT count(*) FROM orders_view").fetchone()
    assert count is not None and count[0] == len(system.expected) + 1  # and the marker


def test_a_replay_with_the_read_model_in_two_jobs_gives_identical_rows(system: System) -> None:
    # Given the settled rows, and the worker stopped
    before = settled(system)
    if system.worker.running():
        system.worker.stop()

    # When the table is replayed into a new version with the read model, by two jobs that
    # each project the events of their partitions
    result = replay(system, "--read-model", "--jobs", "2")

    # Then the rows are identical
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(system.settings, list(system.expected)) == before
