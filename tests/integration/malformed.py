"""Each kind of bad record a consumer can meet, with the words its dead letter must give."""

from __future__ import annotations

import json
from decimal import Decimal

from aggregates.messages import CartFinalized, OpenCart, ProductItem
from tests.integration.harness import wire


def malformed_records(order_id: str) -> list[tuple[str, bytes | None, bytes | None]]:
    """(expected reason fragment, key, value) for every kind of malformed input."""
    key, good = wire(OpenCart(cart_id=order_id, client_id="c"))
    envelope = json.loads(good)
    wrong_type = {**envelope, "data": {**envelope["data"], "client_id": 42}}
    unknown = {**envelope, "type": "DeleteEverything"}
    missing = {k: v for k, v in envelope.items() if k != "message_id"}
    huge = {**envelope, "data": {**envelope["data"], "client_id": "x" * 300_000}}
    items = (ProductItem(product_id="p", quantity=1, unit_price=Decimal("1.00")),)
    event = CartFinalized(cart_id=order_id, client_id="c", product_items=items, total_price=1)
    _, wrong_topic = wire(event)
    return [
        ("invalid JSON", key, b"{not json"),
        ("client_id", key, json.dumps(wrong_type).encode()),
        ("unknown message type", key, json.dumps(unknown).encode()),
        ("message_id", key, json.dumps(missing).encode()),
        ("exceeds the limit", key, json.dumps(huge).encode()),
        ("is not the order id", b"someone-else", good),
        ("key missing", None, good),
        ("does not belong on this topic", key, wrong_topic),
        ("empty value", key, None),
    ]
