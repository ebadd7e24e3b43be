"""The orderflow command line against the real services.

One worker, started with ``orderflow worker`` (so Faust's worker behind it), serves every
test; each command runs as an operator runs it, in a process of its own, and is judged by its
output, its exit code and what it did to Kafka and PostgreSQL. Resume and skip are in
``test_quarantine``, replay in ``test_replay_verify`` and ``test_read_model``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from aggregates.messages import AddProduct, FinalizeCart
from streams.cli.main import COMMANDS
from streams.kafka import dead_letters
from streams.kafka.consuming import Consumed
from streams.kafka.dead_letters import REDRIVE_COUNT_HEADER, REDRIVEN_FROM_HEADER
from streams.settings import Settings
from tests.integration.flows import cart_commands, get_process, place_order, stock, wait_terminal
from tests.integration.harness import (
    REPO,
    Service,
    isolated_settings,
    produce,
    read_to_end,
    unique,
    wire,
)

pytestmark = pytest.mark.integration

WEB_PORT = 16150
TOKEN = "cli-operator-token"


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    sku: str

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``orderflow ARGS`` as an operator runs it (``python -m streams.cli``)."""
        return self.command([sys.executable, "-m", "streams.cli", *args], **env)

    def command(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=REPO,
            env={**os.environ, **self.env, **env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    isolated, env = isolated_settings(settings)
    env |= {
        "OPERATOR_TOKEN": TOKEN,
        "PROCESS_TIMEOUT_ALL_S": "300",
        "PAYMENT_SETTLEMENT_DELAY_S": "1",
        "WEB_PORT": str(WEB_PORT),
        "COLUMNS": "250",  # rich's tables: wide enough for whole order ids
    }
    sku = unique("sku")
    stock(isolated, {sku: 100})
    argv = ["-m", "streams.cli", "worker", "--web-port", str(WEB_PORT), "--web-bind", "127.0.0.1"]
    worker = Service(argv, env, tmp_path_factory.mktemp("cli"), "orderflow-worker", b"Ready")
    worker.start()
    try:
        yield System(isolated, env, sku)
    finally:
        worker.stop()


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"not true after {timeout}s: {check.__doc__ or check}")


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# The command line itself


def test_orderflow_is_an_installed_console_script_that_names_every_command() -> None:
    # Given the console script make venv installs
    script = Path(sys.executable).with_name("orderflow")
    assert script.exists(), "make venv installs the orderflow console script"
    # When asked for help, then it names every command; an unknown one is a usage error (2)
    listed = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in COMMANDS)
    unknown = subprocess.run([str(script), "nonsense"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr


def test_stock_set_as_a_faust_command_is_what_orderflow_stock_list_shows(system: System) -> None:
    # When the stock of a product is set through Faust's CLI (faust -A ... stock set)
    sku = unique("mug")
    faust = [sys.executable, "-m", "faust", "-A", "streams.cli.faust_commands"]
    result = system.command([*faust, "stock", "set", sku, "7"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{sku}: 7" in result.stdout

    # Then orderflow lists it, as JSON and as a table; an unknown product has zero stock
    other = unique("none")
    assert system.json("stock", "list", sku, other) == {sku: 7, other: 0}
    table = system.run("stock", "list", sku)
    assert table.returncode == 0 and sku in table.stdout and "7" in table.stdout
    # And a negative quantity is a usage error, and nothing changes
    refused = system.run("stock", "set", sku, "--", "-1")
    assert refused.returncode == 2 and "-1" in refused.stderr
    assert system.json("stock", "list", sku) == {sku: 7}


def test_processes_list_show_and_stats_print_the_web_views_data(system: System) -> None:
    # Given an order that completed and one whose payment never answers
    completed, waiting = unique("done"), unique("wait")
    place_order(system.settings, completed, "card_ok", [(system.sku, 1)])
    place_order(system.settings, waiting, "card_no_response", [(system.sku, 1)])
    assert wait_terminal(WEB_PORT, completed)["state"] == "Completed"
    eventually(lambda: (get_process(WEB_PORT, waiting) or {}).get("state") == "AwaitingPayment")

    # When an operator lists them, then both are there, and a state filter picks one
    listed = {p["order_id"]: p["state"] for p in system.json("processes", "list")}
    assert listed[completed] == "Completed" and listed[waiting] == "AwaitingPayment"
    only = system.json("processes", "list", "--state", "AwaitingPayment")
    assert waiting in {p["order_id"] for p in only} and completed not in str(only)
    table = system.run("processes", "list")
    assert table.returncode == 0 and completed in table.stdout and waiting in table.stdout

    # When one is shown, then its record and its history are there
    shown = system.json("processes", "show", completed)
    assert shown["state"] == "Completed" and shown["history"][0]["message_type"] == "CartFinalized"
    page = system.run("processes", "show", completed)
    assert page.returncode == 0
    assert (
        "Completed" in page.stdout and "CartFinalized" in page.stdout and "history" in page.stdout
    )

    # And the stats count them per state
    counts = system.json("processes", "stats")
    assert counts["Completed"] >= 1 and counts["AwaitingPayment"] >= 1
    assert "AwaitingPayment" in system.run("processes", "stats").stdout

    # When the order is unknown, or no worker answers, then one line and exit 1 or 2
    unknown = system.run("processes", "show", unique("nobody"))
    assert unknown.returncode == 1 and "404" in one_line(unknown.stderr)
    away = system.run("processes", "stats", "--url", "http://127.0.0.1:9")
    assert away.returncode == 2 and "no worker at http://127.0.0.1:9" in one_line(away.stderr)


def test_cancel_sends_the_operators_cancel_and_a_refused_one_exits_1(system: System) -> None:
    # Given an order waiting for a payment that never answers
    order_id = unique("cancel")
    place_order(system.settings, order_id, "card_no_response", [(system.sku, 1)])
    eventually(lambda: (get_process(WEB_PORT, order_id) or {}).get("state") == "AwaitingPayment")

    # When an operator without the token cancels it, then it is refused, and nothing changes
    refused = system.run("cancel", order_id, OPERATOR_TOKEN="")
    assert refused.returncode == 1
    assert "401" in one_line(refused.stderr) and "OPERATOR_TOKEN" in refused.stderr
    # When an operator with the token cancels it
    cancelled = system.run("cancel", order_id, "--reason", "customer called", "--by", "ops-1")
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert cancelled.stdout.startswith(f"CancelProcess accepted for {order_id}")

    # Then the process is cancelled by hand, with its payment compensated
    process = wait_terminal(WEB_PORT, order_id)
    assert (process["state"], process["cancellation_reason"]) == ("Cancelled", "ManualCancellation")
    assert "CancelProcess" in [entry["message_type"] for entry in process["history"]]
    # And a second cancel is refused: one line, exit 1
    again = system.run("cancel", order_id)
    assert again.returncode == 1 and "409" in one_line(again.stderr)
    assert "already Cancelled" in again.stderr


# Dead letters


def letters_of(system: System, key: str) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = system.json("dead-letters", "list", "--limit", "10000")
    return [letter for letter in letters if letter["key"] == key]


def headers_at(settings: Settings, topic: str, partition: int, offset: int) -> dict[str, bytes]:
    consumer = Consumer(settings.confluent_config(**{"group.id": unique("headers")}))
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        record = consumer.poll(10)
        assert record is not None and record.error() is None and record.offset() == offset
        return {name: value for name, value in record.headers() or []}
    finally:
        consumer.close()


def test_a_redriven_record_still_bad_comes_back_counted_and_stops_at_the_limit(
    system: System,
) -> None:
    # Given an AddProduct with an ill-typed quantity: the cart module dead-letters it
    order_id = unique("bad")
    key, value = wire(
        AddProduct(cart_id=order_id, product_id=system.sku, quantity=1, unit_price=1)  # type: ignore[arg-type]
    )
    record = json.loads(value)
    record["data"]["quantity"] = "many"
    produce(
        system.settings,
        system.settings.topic("carts.commands"),
        [(key, json.dumps(record).encode())],
    )
    [first] = eventually(lambda: letters_of(system, order_id))
    assert first["source"]["topic"] == system.settings.topic("carts.commands")
    assert first["reason"].startswith("invalid message") and first["redrive_count"] == 0

    # When an operator looks at it, then the reason, the source and the value are shown
    shown = system.json("dead-letters", "show", first["id"])
    assert shown["reason"] == first["reason"] and shown["redrives"] == []
    page = system.run("dead-letters", "show", first["id"])
    assert page.returncode == 0 and '"many"' in page.stdout and first["reason"][:40] in page.stdout

    # When it is redriven
    redrive = ("dead-letters", "redrive", "--max-redrives", "2", "--by", "ops-2")
    done = system.json(*redrive, first["id"], "--note", "retry")
    [audit] = done["redriven"]
    sent = audit["sent_to"]
    assert sent["topic"] == system.settings.topic("carts.commands")
    # Then the record went back with the redrive headers
    headers = headers_at(system.settings, sent["topic"], sent["partition"], sent["offset"])
    assert headers == {REDRIVE_COUNT_HEADER: b"1", REDRIVEN_FROM_HEADER: first["id"].encode()}
    # And, still bad, it comes back as a new dead letter that carries the count
    second = eventually(
        lambda: [x for x in letters_of(system, order_id) if x["id"] != first["id"]]
    )[0]
    assert (second["redrive_count"], second["redriven_from"]) == (1, first["id"])
    # And the first letter cannot be redriven again
    twice = system.run(*redrive, first["id"])
    assert twice.returncode == 1 and "already redriven" in one_line(twice.stderr)

    # When the second is redriven, then a third comes back with count 2, and that one is refused
    system.json(*redrive, second["id"])
    third = eventually(
        lambda: [x for x in letters_of(system, order_id) if x["redrive_count"] == 2]
    )[0]
    assert third["redriven_from"] == second["id"]
    refused = system.run(*redrive, third["id"])
    assert refused.returncode == 1 and "redriven 2 times already" in one_line(refused.stderr)

    # And the audit names who redrove what, where to
    audits = [
        json.loads(v)
        for _, v in read_to_end(system.settings, system.settings.topic("dead-letters.redrives"))
    ]
    mine = sorted((a for a in audits if a["key"] == order_id), key=lambda a: a["redriven_at"])
    assert [(a["dead_letter"], a["requested_by"]) for a in mine] == [
        (first["id"], "ops-2"),
        (second["id"], "ops-2"),
    ]
    assert mine[0]["note"] == "retry" and mine[0]["redrive_count"] == 1
    listed = system.run("dead-letters", "list", "--source", "carts.commands")
    assert listed.returncode == 0 and first["id"] in listed.stdout and "yes" in listed.stdout


@pytest.mark.parametrize(
    "topic",
    ["carts.events", "shipments.commands"],
    ids=["the process manager (Faust)", "the shipment handler"],
)
def test_every_consumer_keeps_the_redrive_count_in_a_new_dead_letter(
    system: System, topic: str
) -> None:
    # Given a record that is not JSON, dead-lettered by the consumer of its topic
    order_id = unique("junk")
    produce(system.settings, system.settings.topic(topic), [(order_id.encode(), b"not json")])
    [letter] = eventually(lambda: letters_of(system, order_id))
    assert letter["source"]["topic"] == system.settings.topic(topic)
    assert letter["reason"].startswith("invalid JSON") and letter["redrive_count"] == 0

    # When it is redriven, still bad
    system.json("dead-letters", "redrive", letter["id"], "--by", "ops-4")

    # Then that consumer dead-letters it again, with the count and the letter it came from
    again = eventually(lambda: [x for x in letters_of(system, order_id) if x["redrive_count"]])
    assert [(x["redrive_count"], x["redriven_from"]) for x in again] == [(1, letter["id"])]


def test_a_redrive_chosen_by_reason_completes_an_order_once_its_cause_is_fixed(
    system: System,
) -> None:
    # Given a cart whose FinalizeCart is in dead-letters, as a consumer writes a letter
    # (streams.kafka.dead_letters.letter), for a cause since fixed
    order_id = unique("redrive")
    commands = cart_commands(order_id, "card_ok", [(system.sku, 1)])
    produce(system.settings, system.settings.topic("carts.commands"), commands[:-1])
    marker = unique("cause")
    key, value = commands[-1]
    assert json.loads(value)["type"] == FinalizeCart.__name__
    source = Consumed(system.settings.topic("carts.commands"), 0, 0, key, value)
    produce(
        system.settings,
        system.settings.topic("dead-letters"),
        [(key, dead_letters.letter(source, f"{marker}: the cart module was down"))],
    )
    eventually(lambda: letters_of(system, order_id))

    # When an operator redrives the letters of that reason
    done = system.json("dead-letters", "redrive", "--reason", marker, "--by", "ops-3")

    # Then the one letter went back, and the order completes
    assert [a["key"] for a in done["redriven"]] == [order_id] and done["left_out"] == 0
    assert wait_terminal(WEB_PORT, order_id)["state"] == "Completed"
    [letter] = system.json("dead-letters", "list", "--reason", marker)
    assert [r["requested_by"] for r in letter["redrives"]] == ["ops-3"]
    # And the same redrive again sends nothing: the letter was redriven
    again = system.run("dead-letters", "redrive", "--reason", marker)
    assert again.returncode == 0 and "0 dead letter(s) redriven, 1 left out" in again.stdout
    # And with neither ids nor filters, it is a usage error
    assert system.run("dead-letters", "redrive").returncode == 2


# Verify


def test_verify_finds_no_difference_and_draws_its_progress_bar(system: System) -> None:
    # When verify folds this system's topics against its live table (orders may be in flight
    # from the tests above; give them time to end)
    result = eventually(lambda: (r := system.run("verify")).returncode == 0 and r, timeout=90)
    # Then nothing differs, and the rich bar was drawn on stderr
    assert "differences: 0" in result.stdout or "0 differences" in result.stdout, result.stdout
    assert "events/s" in result.stderr
