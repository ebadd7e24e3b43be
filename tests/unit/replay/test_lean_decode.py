"""The lean path of replay and verify against the full decode, on recorded records.

``codec.decode_if_reacting`` parses with orjson and decodes a type the process reacts to as
``decode`` does; any other type it checks as far as its envelope and skips. Differential:
the records release 0.1.0 wrote (schema_version 1, ``PaymentFinalized`` lifted by its
upcaster) and the same records as this release writes them must give the same envelopes, the
same verdicts on bad bytes, and the same folds.
"""

from __future__ import annotations

import json

import pytest

from process_manager import REACTS_TO
from streams.kafka.codec import DecodeError, decode, decode_if_reacting, encode
from streams.kafka.topics import ACCEPTED_TYPES, PROCESS_INPUTS
from streams.tools.history import Input, PartitionScan, Skipped, by_order, fold_order, merge
from streams.tools.jobs import shares
from tests.fixtures.recorded import Recorded, release_0_1_0
from tests.unit.process_manager.scenario import TIMEOUTS


def as_written_today(record: Recorded) -> Recorded:
    envelope = decode(record.key, record.value, ACCEPTED_TYPES[record.topic])
    return Recorded(record.topic, record.timestamp_ms, record.key, encode(envelope))


RECORDED = release_0_1_0()
BOTH_VERSIONS = [*RECORDED, *map(as_written_today, RECORDED)]


def lean(record: Recorded, value: bytes | None = None) -> object:
    """What the lean path makes of ``record`` (with ``value`` instead of its own): the
    envelope, ``None`` (skipped) or ``DecodeError``."""
    try:
        return decode_if_reacting(
            record.key,
            record.value if value is None else value,
            ACCEPTED_TYPES[record.topic],
            REACTS_TO,
        )
    except DecodeError:
        return DecodeError


def full(record: Recorded, value: bytes | None = None) -> object:
    try:
        return decode(
            record.key, record.value if value is None else value, ACCEPTED_TYPES[record.topic]
        )
    except DecodeError:
        return DecodeError


def test_the_recorded_log_has_types_on_both_paths() -> None:
    types = {r.type for r in RECORDED}
    assert types & REACTS_TO and types - REACTS_TO
    assert any(json.loads(r.value)["data"].get("settle_after") for r in RECORDED)  # v1


@pytest.mark.parametrize("record", BOTH_VERSIONS, ids=lambda r: f"{r.type}-{len(r.value)}")
def test_a_type_the_process_reacts_to_decodes_to_the_same_envelope(record: Recorded) -> None:
    if record.type not in REACTS_TO:
        assert lean(record) is None
        assert full(record) is not DecodeError  # skipped, and the full decode takes it too
    else:
        assert lean(record) == full(record)
        assert lean(record).schema_version == full(record).schema_version  # type: ignore[attr-defined]


def with_value(record: Recorded, change: dict[str, object]) -> bytes:
    obj = json.loads(record.value)
    for path, value in change.items():
        *where, last = path.split(".")
        target = obj
        for step in where:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(obj).encode()


DELETE = object()
SKIPPED = next(r for r in RECORDED if r.type == "PaymentRequested")
REACTING = next(r for r in RECORDED if r.type == "PaymentFinalized")


def bad_values(record: Recorded) -> dict[str, bytes]:
    other_topic = "CartOpened" if record.topic != "carts.events" else "OrderInitialized"
    return {
        "not JSON": b"\x00garbage{",
        "a JSON list": b"[1, 2]",
        "invalid UTF-8": b'{"type": "\xff"}',
        "an unknown type": with_value(record, {"type": "NoSuchMessage"}),
        "a type of another topic": with_value(
            record, {"type": other_topic, "data.type": other_topic}
        ),
        "data not an object": with_value(record, {"data": "text"}),
        "data of another type": with_value(record, {"data.type": "OrderCompleted"}),
        "a future schema version": with_value(record, {"schema_version": 9}),
        "schema version 0": with_value(record, {"schema_version": 0}),
        "a key that is not the order id": with_value(
            record, {"data.order_id": "someone-else", "correlation_id": "someone-else"}
        ),
    }


@pytest.mark.parametrize("record", [SKIPPED, REACTING], ids=lambda r: r.type)
@pytest.mark.parametrize("case", list(bad_values(SKIPPED)))
def test_bad_bytes_are_undecodable_on_both_paths(record: Recorded, case: str) -> None:
    value = bad_values(record)[case]
    assert full(record, value) is DecodeError
    assert lean(record, value) is DecodeError


def test_a_tombstone_and_an_oversized_value_are_undecodable_on_both_paths() -> None:
    for value in (None, b" " * (256 * 1024 + 1)):
        with pytest.raises(DecodeError):
            decode(SKIPPED.key, value, ACCEPTED_TYPES[SKIPPED.topic])
        with pytest.raises(DecodeError):
            decode_if_reacting(SKIPPED.key, value, ACCEPTED_TYPES[SKIPPED.topic], REACTS_TO)


def test_json_that_orjson_refuses_is_read_by_the_standard_parser_as_decode_does() -> None:
    # NaN and a 30-digit integer are JSON to Python's parser, not to orjson
    for change in ({"data.amount": float("nan")}, {"data.amount": 10**30}):
        for record in (SKIPPED, REACTING):
            value = with_value(record, change)
            expected = full(record, value)
            got = lean(record, value)
            if record.type in REACTS_TO:
                assert got == expected
            else:
                assert got is None


def test_a_skipped_type_is_not_validated_field_by_field() -> None:
    # The documented difference: a worker dead-letters it, the lean path skips it as the
    # worker skips its type (it cannot change a process)
    value = with_value(SKIPPED, {"data.amount": "not money"})
    assert full(SKIPPED, value) is DecodeError
    assert lean(SKIPPED, value) is None


def scans(records: list[Recorded]) -> tuple[PartitionScan, PartitionScan]:
    """The records as one partition of a full scan and of a lean scan."""
    full_scan = PartitionScan(0, [[] for _ in PROCESS_INPUTS], {})
    lean_scan = PartitionScan(0, [[] for _ in PROCESS_INPUTS], {})
    lean_scan.skipped = [[] for _ in PROCESS_INPUTS]
    offsets = dict.fromkeys(PROCESS_INPUTS, 0)
    for r in records:
        i, offset = PROCESS_INPUTS.index(r.topic), offsets[r.topic]
        offsets[r.topic] += 1
        envelope = decode(r.key, r.value, ACCEPTED_TYPES[r.topic])
        item = Input(r.timestamp_ms, i, offset, r.key.decode(), envelope)
        full_scan.per_topic[i].append(item)
        if lean(r) is None:
            lean_scan.skipped[i].append(Skipped(r.timestamp_ms, i, offset, r.key.decode()))
        else:
            lean_scan.per_topic[i].append(item)
    return full_scan, lean_scan


def test_a_lean_scan_folds_every_order_to_the_process_a_full_scan_folds_it_to() -> None:
    # Given both recorded orders, and an order with a CartOpened only (no process)
    opened = next(r for r in RECORDED if r.type == "CartOpened")
    value = with_value(opened, {"data.cart_id": "only-opened", "correlation_id": "only-opened"})
    alone = Recorded(opened.topic, opened.timestamp_ms - 1, b"only-opened", value)
    full_scan, lean_scan = scans([alone, *RECORDED])

    # Then the lean scan has the same orders in the same order, the same event count,
    # and every order folds to the same process
    expected = by_order(merge(full_scan.per_topic))
    got = lean_scan.orders()
    assert list(got) == list(expected) == ["only-opened", "v1-card-ok", "v1-settles-immediately"]
    assert lean_scan.events == full_scan.events == len(RECORDED) + 1
    assert sum(map(len, lean_scan.skipped)) > 0
    for order_id, items in expected.items():
        assert fold_order(got[order_id], TIMEOUTS) == fold_order(items, TIMEOUTS)
    assert fold_order(got["v1-card-ok"], TIMEOUTS).process is not None


def test_jobs_share_the_partitions_round_robin_and_no_job_is_empty() -> None:
    assert shares(8, 2) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert shares(3, 8) == [[0], [1], [2]]
    assert shares(8, 1) == [list(range(8))]
