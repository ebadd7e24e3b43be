"""``orderflow stock set|list``: the warehouse's stock, in the shipment module's PostgreSQL."""

from __future__ import annotations

import click

from streams.cli.output import emit_json, json_option, table
from streams.modules.shipment import store
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.settings import get_settings


@click.group()
def stock() -> None:
    """Set or list the stock of products (a product with no stock row has zero stock)."""


@stock.command("set")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
def set_stock(sku: str, quantity: int) -> None:
    """Set the stock of SKU to QUANTITY (never negative)."""
    url = get_settings().database_url
    migrate(url)
    with connect(url) as conn, conn.transaction():
        store.set_stock(conn, sku, quantity)
    click.echo(f"{sku}: {quantity}")


@stock.command("list")
@click.argument("skus", nargs=-1, metavar="[SKU]...")
@json_option
def list_stock(skus: tuple[str, ...], as_json: bool) -> None:
    """The stock of the given products, or of every product with a stock row."""
    url = get_settings().database_url
    migrate(url)
    with connect(url) as conn:
        levels = store.stock_levels(conn, list(skus) or None)
    shown = {sku: levels.get(sku, 0) for sku in skus} if skus else dict(levels)
    if as_json:
        emit_json(shown)
    elif shown:
        table(("SKU", "QUANTITY"), shown.items())
    else:
        click.echo("no stock (a product with no stock row has zero stock)")
