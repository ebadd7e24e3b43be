"""The metrics without Kafka: series names, labels, the groups the lag covers, the state gauge."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from process_manager import State
from streams.kafka import groups as kafka_groups
from streams.observability import lag, metrics
from streams.settings import Settings


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_transition_row_is_a_series_before_it_happens() -> None:
    found = samples()
    start = (
        "transitions_total",
        frozenset({("from_state", "none"), ("to_state", "AwaitingOrder")}),
    )
    assert start in found
    assert (
        "messages_total",
        frozenset({("topic_kind", "carts.events"), ("outcome", "ignored")}),
    ) in found


def test_a_transition_from_no_process_counts_as_from_none() -> None:
    key = ("transitions_total", frozenset({("from_state", "none"), ("to_state", "AwaitingOrder")}))
    before = samples()[key]
    metrics.transition(None, State.AwaitingOrder)
    assert samples()[key] == before + 1


def test_the_member_groups_and_the_topics_each_consumes() -> None:
    settings = Settings(app_id="shop", app_version=2, topic_prefix="p.")
    groups = kafka_groups.members(settings)
    assert groups["shop-v2"] == [
        "p.carts.events",
        "p.orders.events",
        "p.payments.events",
        "p.shipments.events",
        "p.processes.commands",
    ]
    assert groups["shop-aggregates"] == [
        "p.carts.commands",
        "p.orders.commands",
        "p.payments.commands",
    ]
    assert groups["shop-shipments"] == ["p.shipments.commands"]
    assert set(groups) == {
        "shop-v2",
        "shop-aggregates",
        "shop-shipments",
        "shop-read-model",
    }


def test_reads_of_one_partition_at_two_positions_go_in_separate_batches() -> None:
    reads = [("a", 0, 5), ("a", 0, 7), ("a", 1, 3)]
    assert list(lag._unique_partitions(reads)) == [[("a", 0, 5), ("a", 1, 3)], [("a", 0, 7)]]


def test_process_states_count_the_table_and_keep_the_last_count_while_rebalancing() -> None:
    app = SimpleNamespace(rebalancing=False, tables=SimpleNamespace(actives_ready=True))
    table = {
        b"o1": b'{"state": "Completed", "x": 1}',
        b"o2": b'{"state": "Cancelled"}',
        b"o3": b'{"state": "AwaitingPayment", "quarantine": {"reason": "Bug: x"}}',
    }
    gauge = metrics.ProcessStates(app, table, ttl=0)
    gauge.refresh()
    table[b"o4"] = b'{"state": "Completed"}'
    app.rebalancing = True
    gauge.refresh()
    family, quarantined = gauge.collect()
    counts = {s.labels["state"]: s.value for s in family.samples}
    assert counts["Completed"] == 1 and counts["Cancelled"] == 1
    assert counts.keys() == {state.value for state in State}
    assert [s.value for s in quarantined.samples] == [1]
