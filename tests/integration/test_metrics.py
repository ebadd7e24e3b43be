"""Observability on a real worker: Prometheus counters and gauges, and JSON log lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.groups import members
from streams.settings import Settings
from tests.integration.flows import place_order, stock, wait_terminal
from tests.integration.harness import (
    Samples,
    Service,
    faust_worker,
    isolated_settings,
    produce_raw,
    read_to_end,
    scrape,
    total,
    unique,
)

pytestmark = pytest.mark.integration

METRICS_PORT = 16095
LOGS_PORT = 16096


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(web_port: int, check: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """Scrape until ``check`` holds (the gauges are cached for a few seconds)."""
    deadline = time.monotonic() + timeout
    samples = scrape(web_port)
    while not check(samples) and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = scrape(web_port)
    return samples


def test_metrics_count_transitions_outcomes_dead_letters_and_lag(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker on fresh topics, with short timeouts and no settlement during the test
    system, env = isolated_settings(settings)
    env |= {"PROCESS_TIMEOUT_ALL_S": "4", "PAYMENT_SETTLEMENT_DELAY_S": "600"}
    worker = faust_worker("streams.process.worker", env, tmp_path / "w", METRICS_PORT)
    services.append(worker)
    worker.start()
    sku = unique("sku")
    stock(system, {sku: 10})

    # When two orders complete, one payment is declined, one never answers,
    # and a malformed record lands on an events topic
    orders = {
        unique("ok"): "card_ok",
        unique("ok"): "card_ok",
        unique("declined"): "card_declined",
        unique("silent"): "card_no_response",
    }
    for order_id, method in orders.items():
        place_order(system, order_id, method, [(sku, 1)])  # type: ignore[arg-type]
    produce_raw(system, system.topic("orders.events"), [(b"broken", b"{not json")])
    ended = {order_id: wait_terminal(METRICS_PORT, order_id) for order_id in orders}
    states = [process["state"] for process in ended.values()]
    assert sorted(states) == ["Cancelled", "Cancelled", "Completed", "Completed"]

    # Then the gauges show the ended processes, and no group lags behind
    groups = members(system)
    samples = eventually(
        METRICS_PORT,
        lambda s: (
            value(s, "processes", state="Completed") == 2
            and value(s, "processes", state="Cancelled") == 2
            and value(s, "outbox_published_total") == 2
            and all(
                ("consumer_lag", frozenset({("group", g), ("topic", t)})) in s
                for g, topics in groups.items()
                for t in topics
            )
            and total(s, "consumer_lag") == 0
        ),
    )
    lag = {dict(labels)["group"]: v for (n, labels), v in samples.items() if n == "consumer_lag"}
    assert set(lag) == set(groups) and sum(lag.values()) == 0, lag
    assert value(samples, "processes", state="Completed") == 2
    assert value(samples, "processes", state="Cancelled") == 2
    assert total(samples, "processes") == 4

    # and the counters count exactly what happened
    assert value(samples, "transitions_total", from_state="none", to_state="AwaitingOrder") == 4
    assert value(samples, "transitions_total", from_state="Completing", to_state="Completed") == 2
    assert (
        value(
            samples,
            "transitions_total",
            from_state="AwaitingPayment",
            to_state="CancellingOrderWithPayment",
        )
        == 1
    )
    assert value(samples, "timeouts_fired_total") == 1
    applied = sum(len(process["history"]) for process in ended.values())
    assert total(samples, "messages_total", outcome="applied") == applied
    assert total(samples, "transitions_total") == applied
    assert value(samples, "messages_total", topic_kind="carts.events", outcome="applied") == 4
    assert total(samples, "messages_total", outcome="duplicate") == 0
    source = system.topic("orders.events")
    assert value(samples, "dead_letters_total", source_topic=source) == 1
    assert total(samples, "dead_letters_total") == 1
    assert value(samples, "outbox_published_total") == 2
    assert value(samples, "commands_decided_total", module="carts", result="accepted") == 12
    assert value(samples, "commands_decided_total", module="shipments", result="accepted") == 2
    sent = sum(
        len(read_to_end(system, system.topic(f"{module}.commands")))
        for module in ("carts", "orders", "payments", "shipments")
    )
    assert total(samples, "commands_decided_total") == sent
    assert total(samples, "commands_decided_total", result="duplicate") == 0


MESSAGE_KEYS = {"message_id", "message_type", "command"}
CONTEXT_KEYS = {"order_id", "correlation_id", "causation_id"}


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The structlog lines of a worker log: those that are a JSON object with an event."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "event" in obj:
            lines.append(obj)
    return lines


def test_every_json_log_line_about_a_message_carries_its_order_and_ids(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a worker logging JSON at debug level
    system, env = isolated_settings(settings)
    env |= {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "PAYMENT_SETTLEMENT_DELAY_S": "600"}
    worker = faust_worker("streams.process.worker", env, tmp_path / "w", LOGS_PORT)
    services.append(worker)
    worker.start()
    sku = unique("sku")
    stock(system, {sku: 1})

    # When one order runs to completion
    order_id = unique("order")
    place_order(system, order_id, "card_ok", [(sku, 1)])
    assert wait_terminal(LOGS_PORT, order_id)["state"] == "Completed"
    worker.stop()

    # Then every line about a message names its order, correlation and cause
    lines = json_lines(worker.log_path)
    about_messages = [line for line in lines if MESSAGE_KEYS & line.keys()]
    missing = [line for line in about_messages if CONTEXT_KEYS - line.keys()]
    assert not missing, missing[:5]
    ours = [line for line in about_messages if line["order_id"] == order_id]
    assert all(line["correlation_id"] == order_id for line in ours)
    # from the process manager, the command handlers, the shipment handler and the relay
    loggers = {line.get("logger_name") for line in ours}
    assert {
        "streams.process.worker",
        "streams.modules.processor",
        "streams.modules.shipment.handler",
        "streams.modules.shipment.outbox",
    } <= loggers, loggers
    # and external commands have no cause
    finalize = [line for line in ours if line.get("command") == "FinalizeCart"]
    assert finalize and all(line["causation_id"] is None for line in finalize)
