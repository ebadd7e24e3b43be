"""dry-run and timeline on the real broker: a real worker runs orders, then the tools read them.

One worker runs three orders to their ends (completed, declined, timed out). ``orderflow
dry-run`` with a candidate that changes the row of a declined payment must name exactly the
declined order; ``orderflow timeline`` must show every input of an
order with its outcome, up to the end, a time or a record; and the worker's process page and
JSON route must show the same timeline.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aggregates.messages import CartFinalized, ProductItem
from process_manager import Process
from process_manager.process import MAX_HISTORY
from streams.kafka.routing import owner_of
from streams.settings import Settings
from streams.tools.history import read_table
from tests.integration.flows import get_process, place_order, stock, wait_terminal
from tests.integration.harness import (
    Service,
    faust_worker,
    isolated_settings,
    produce,
    unique,
    wire,
)
from tests.integration.test_replay_verify import run_tool

pytestmark = pytest.mark.integration

WEB_PORT = 16094
LOOPING_PORT = 16095
TIMING = {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "600"}


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    worker: Service
    orders: dict[str, str]
    """kind (ok, declined, timeout) -> order id"""


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    isolated, env = isolated_settings(settings)
    env |= TIMING
    worker = faust_worker(
        "streams.process.worker", env, tmp_path_factory.mktemp("inspect"), WEB_PORT
    )
    worker.start()
    try:
        sku = unique("sku")
        stock(isolated, {sku: 10})
        flows = {
            "ok": ("card_ok", "Completed"),
            "declined": ("card_declined", "Cancelled"),
            "timeout": ("card_no_response", "Cancelled"),
        }
        orders = {kind: unique(kind) for kind in flows}
        for kind, (method, _) in flows.items():
            place_order(isolated, orders[kind], method, [(sku, 1)])  # type: ignore[arg-type]
        for kind, (_, state) in flows.items():
            assert wait_terminal(WEB_PORT, orders[kind], timeout=60)["state"] == state
        yield System(isolated, env, worker, orders)
    finally:
        if worker.running():
            worker.stop()


def timeline(system: System, order_id: str, *args: str) -> dict[str, Any]:
    result = run_tool("timeline", system.env, order_id, "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def rows(found: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(message type, outcome, from, to, command types) of each entry."""
    return [
        (e["message_type"], e["outcome"], e["from"], e["to"], [c["type"] for c in e["commands"]])
        for e in found["entries"]
    ]


SKIPPED = "not a process input"
START = [
    ("CartOpened", "ignored", None, None, []),
    ("ProductAdded", "ignored", None, None, []),
    ("CartFinalized", "applied", None, "AwaitingOrder", ["InitOrder"]),
    ("OrderInitialized", "applied", "AwaitingOrder", "AwaitingPayment", ["RequestPayment"]),
    ("PaymentRequested", "ignored", None, None, []),
]
DECLINED = [
    *START,
    ("PaymentFailed", "applied", "AwaitingPayment", "CancellingOrder", ["CancelOrder"]),
    ("OrderCancelled", "applied", "CancellingOrder", "Cancelled", []),
]


# dry-run


def test_dry_run_of_a_candidate_that_changes_one_row_names_exactly_the_affected_order(
    system: System,
) -> None:
    # Given a candidate that cancels and discards a declined payment (one row changed)
    # When the dry run folds the log through today's table and the candidate
    result = run_tool("dry-run", system.env, "--candidate", "tests.candidates:DECLINED_DISCARDS")
    as_json = run_tool(
        "dry-run",
        system.env,
        "--candidate",
        "tests.candidates:DECLINED_DISCARDS",
        "--json",
    )

    # Then it exits 1 and names the declined order, and only that one
    assert result.returncode == 1, result.stdout + result.stderr
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["orders"] == 3
    assert report["differing_orders"] == 1
    assert report["kinds"] == {"final_state": 1, "transitions": 1, "commands": 1}
    [example] = report["examples"]
    assert example["order_id"] == system.orders["declined"]
    assert example["final_state"] == {"today": "Cancelled", "candidate": "DiscardingPayment"}
    assert example["diverges_at"]["message_type"] == "PaymentFailed"
    assert example["diverges_at"]["topic"] == "payments.events"
    partition = owner_of(example["order_id"].encode(), system.settings.topic_partitions)
    assert example["diverges_at"]["partition"] == partition
    assert example["today"].startswith("AwaitingPayment -> CancellingOrder, sends CancelOrder")
    assert example["candidate"].startswith("AwaitingPayment -> CancellingOrderWithPayment")
    # and the table for people says the same
    assert system.orders["declined"] in result.stdout
    assert system.orders["ok"] not in result.stdout
    assert "orders that differ" in result.stdout


def test_dry_run_of_todays_table_finds_no_difference(system: System) -> None:
    result = run_tool("dry-run", system.env, "--candidate", "tests.candidates:TODAY", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["orders"], report["differing_orders"], report["examples"]) == (3, 0, [])


def test_dry_run_of_a_bad_candidate_exits_2(system: System) -> None:
    result = run_tool("dry-run", system.env, "--candidate", "tests.candidates:NOT_A_TABLE")
    assert result.returncode == 2
    assert "not a dict" in result.stderr


# timeline


def test_timeline_shows_every_input_of_an_order_with_its_outcome(system: System) -> None:
    order_id = system.orders["ok"]
    found = timeline(system, order_id)
    assert found["until"] == "the end"
    assert found["state"] == "Completed"
    assert rows(found) == [
        *START,
        (
            "PaymentFinalized",
            "applied",
            "AwaitingPayment",
            "RecordingPayment",
            ["RecordOrderPayment"],
        ),
        (
            "OrderPaymentRecorded",
            "applied",
            "RecordingPayment",
            "AwaitingShipment",
            ["SendPackage"],
        ),
        ("PackageWasSent", "applied", "AwaitingShipment", "Completing", ["CompleteOrder"]),
        ("OrderCompleted", "applied", "Completing", "Completed", []),
    ]
    assert {e["reason"] for e in found["entries"] if e["outcome"] == "ignored"} == {SKIPPED}
    # and the table for people
    text = run_tool("timeline", system.env, order_id)
    assert text.returncode == 0, text.stderr
    assert "state: Completed" in text.stdout
    assert "AwaitingShipment -> Completing" in text.stdout


def test_timeline_of_a_timed_out_order_shows_the_timeout_and_the_compensation(
    system: System,
) -> None:
    found = timeline(system, system.orders["timeout"])
    assert found["state"] == "Cancelled"
    applied = [r for r in rows(found) if r[1] == "applied"]
    assert applied[2:] == [
        (
            "ProcessTimedOut",
            "applied",
            "AwaitingPayment",
            "CancellingOrderWithPayment",
            ["CancelOrder"],
        ),
        (
            "OrderCancelled",
            "applied",
            "CancellingOrderWithPayment",
            "DiscardingPayment",
            ["DiscardPayment"],
        ),
        ("PaymentDiscarded", "applied", "DiscardingPayment", "Cancelled", []),
    ]


def test_timeline_at_a_time_folds_only_what_was_written_until_then(system: System) -> None:
    order_id = system.orders["declined"]
    whole = timeline(system, order_id)
    initialized = whole["entries"][3]
    assert initialized["message_type"] == "OrderInitialized"

    found = timeline(system, order_id, "--at", initialized["written_at"])

    assert rows(found) == START[:4]
    assert found["state"] == "AwaitingPayment"
    assert found["until"] == initialized["written_at"]


def test_timeline_up_to_a_record_stops_at_that_record(system: System) -> None:
    order_id = system.orders["declined"]
    whole = timeline(system, order_id)
    initialized = whole["entries"][3]
    assert initialized["message_type"] == "OrderInitialized"

    found = timeline(system, order_id, "--offset", initialized["position"])

    assert rows(found) == START[:4]
    assert found["state"] == "AwaitingPayment"


def test_timeline_refuses_a_record_on_another_partition(system: System) -> None:
    order_id = system.orders["declined"]
    partition = timeline(system, order_id)["partition"]
    other = (partition + 1) % system.settings.topic_partitions
    result = run_tool("timeline", system.env, order_id, "--offset", f"orders.events:{other}:0")
    assert result.returncode == 2
    assert f"is on partition {partition}" in result.stderr


def test_timeline_of_an_order_without_input_exits_1(system: System) -> None:
    result = run_tool("timeline", system.env, unique("nobody"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "state: (no process)" in result.stdout


# The web view


def get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}{path}", timeout=20) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_timeline_route_answers_what_the_cli_prints(system: System) -> None:
    order_id = system.orders["declined"]
    status, body = get(f"/processes/{order_id}/timeline/")
    assert status == 200, body
    assert json.loads(body) == timeline(system, order_id)
    assert rows(json.loads(body)) == DECLINED


def test_the_process_page_shows_the_timeline_from_the_topics_with_ignored_messages(
    system: System,
) -> None:
    order_id = system.orders["declined"]
    status, page = get(f"/ui/processes/{order_id}/")
    assert status == 200, page
    assert 'id="timeline"' in page and 'id="at"' in page
    # PaymentRequested is ignored: it is in no record's history, only in the topics
    assert "PaymentRequested" in page and SKIPPED in page
    assert "state <b>Cancelled</b>" in page


def test_the_process_page_at_a_record_shows_the_state_then(system: System) -> None:
    order_id = system.orders["declined"]
    initialized = timeline(system, order_id)["entries"][3]["position"]
    status, page = get(f"/ui/processes/{order_id}/?offset={initialized}")
    assert status == 200, page
    assert "state <b>AwaitingPayment</b>" in page
    assert "PaymentFailed" not in page.split('id="timeline"')[1]
    assert get(f"/ui/processes/{order_id}/?at=yesterday")[0] == 400


def test_the_timeline_keeps_the_early_history_the_record_dropped(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a process that loops in CancellingOrder, a timeout every few tens of milliseconds
    # (no module answers its CancelOrder), until its record's history dropped the first entries
    isolated, env = isolated_settings(settings)
    env |= {
        "WORKER_RUNS_MODULES": "false",
        "PROCESS_TIMEOUT_ALL_S": "0.05",
        "TIMEOUT_CHECK_INTERVAL_S": "0.05",
    }
    worker = faust_worker("streams.process.worker", env, tmp_path, LOOPING_PORT)
    services.append(worker)
    worker.start()
    order_id = unique("looping")
    item = ProductItem(product_id="sku-1", quantity=1, unit_price=Decimal("10.00"))
    cart = CartFinalized(
        cart_id=order_id, client_id="client-1", product_items=(item,), total_price=Decimal("10")
    )
    produce(isolated, isolated.topic("carts.events"), [wire(cart)])
    deadline = time.monotonic() + 120
    record = get_process(LOOPING_PORT, order_id)
    while record is None or record["history"][0]["message_type"] == "CartFinalized":
        assert time.monotonic() < deadline, f"history not rolled over: {record}"
        time.sleep(0.5)
        record = get_process(LOOPING_PORT, order_id)
    with urllib.request.urlopen(
        f"http://127.0.0.1:{LOOPING_PORT}/ui/processes/{order_id}/", timeout=20
    ) as answer:
        page = answer.read().decode().split('id="timeline"')[1]
    worker.stop()

    # When the timeline reads the order from the topics
    found = timeline(System(isolated, env, worker, {}), order_id)

    # Then it starts with the cart, which the record no longer shows, and holds the record's
    # history as one run (timeouts the timer sent while the worker stopped may follow it)
    live = read_table(isolated, isolated.process_changelog_topic(1))[order_id].value
    assert live is not None
    history = [
        (h.message_id, h.from_state, h.to_state) for h in Process.model_validate_json(live).history
    ]
    assert len(history) == MAX_HISTORY
    applied = [e for e in found["entries"] if e["outcome"] == "applied"]
    assert applied[0]["message_type"] == "CartFinalized"
    assert applied[1]["to"] == "CancellingOrder"
    moves = [(e["message_id"], e["from"], e["to"]) for e in applied]
    first = moves.index(history[0])
    assert first > 0
    assert moves[first : first + MAX_HISTORY] == history
    # and the process page showed the cart too
    assert "CartFinalized" in page
