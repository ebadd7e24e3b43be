"""Driving orders through a running system and watching them end, for end-to-end tests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

from aggregates.messages import (
    AddProduct,
    CancelProcess,
    CartFinalized,
    FinalizeCart,
    OpenCart,
    PaymentMethod,
    ProductItem,
)
from process_manager import TERMINAL_STATES
from streams.modules.shipment.store import set_stock, stock_levels
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import Settings
from tests.integration.harness import produce, wire

TERMINAL = frozenset(state.value for state in TERMINAL_STATES)


def place_order(
    settings: Settings,
    order_id: str,
    payment_method: PaymentMethod,
    items: list[tuple[str, int]],
    unit_price: str = "10.00",
) -> None:
    """Open a cart, add products, and finalize it, as the shop front end would."""
    commands = cart_commands(order_id, payment_method, items, unit_price)
    produce(settings, settings.topic("carts.commands"), commands)


def cart_commands(
    order_id: str,
    payment_method: PaymentMethod,
    items: list[tuple[str, int]],
    unit_price: str = "10.00",
) -> list[tuple[bytes, bytes]]:
    """The (key, value) records of a cart from opening to finalizing."""
    commands = [wire(OpenCart(cart_id=order_id, client_id="client-1"))]
    for product_id, quantity in items:
        add = AddProduct(
            cart_id=order_id,
            product_id=product_id,
            quantity=quantity,
            unit_price=Decimal(unit_price),
        )
        commands.append(wire(add))
    commands.append(wire(FinalizeCart(cart_id=order_id, payment_method=payment_method)))
    return commands


def get_process(web_port: int, order_id: str) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{web_port}/processes/{order_id}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def wait_terminal(web_port: int, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the web view until the process is terminal; fail with its last state otherwise."""
    deadline = time.monotonic() + timeout
    process = None
    while time.monotonic() < deadline:
        try:
            process = get_process(web_port, order_id)
        except (urllib.error.URLError, ConnectionError):
            process = None
        if process is not None and process["state"] in TERMINAL:
            return process
        time.sleep(0.25)
    raise AssertionError(f"process {order_id} not terminal after {timeout}s: {process}")


def history_types(process: dict[str, Any]) -> list[str]:
    return [entry["message_type"] for entry in process["history"]]


def stock(settings: Settings, levels: dict[str, int]) -> None:
    """Set warehouse stock, as `orderflow stock set` does."""
    migrate(settings.database_url)
    with connect(settings.database_url) as conn, conn.transaction():
        for sku, quantity in levels.items():
            set_stock(conn, sku, quantity)


def stock_of(settings: Settings, sku: str) -> int:
    with connect(settings.database_url) as conn:
        return stock_levels(conn, [sku]).get(sku, 0)


def cancel_process(settings: Settings, order_id: str) -> None:
    """An operator's CancelProcess on `processes.commands`."""
    command = CancelProcess(order_id=order_id, reason="customer called", requested_by="ops-1")
    produce(settings, settings.topic("processes.commands"), [wire(command)])


def cart_finalized(order_id: str) -> CartFinalized:
    """A cart of one product at 1.00, finalized: what starts a process."""
    items = (ProductItem(product_id="p", quantity=1, unit_price=Decimal("1.00")),)
    return CartFinalized(cart_id=order_id, client_id="c", product_items=items, total_price=1)
