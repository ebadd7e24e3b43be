"""``orderflow processes list|show|stats``: the web view's data, as tables in the terminal."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import click

from process_manager import State
from streams.cli.output import emit_json, fields, json_option, table, when
from streams.cli.web import base_url, get, url_option


@click.group()
def processes() -> None:
    """The processes the workers hold: list, show one, count per state."""


@processes.command("list")
@click.option("--state", type=click.Choice([s.value for s in State]), help="only this state")
@click.option("--stalled", is_flag=True, help="only stalled processes")
@click.option("--quarantined", is_flag=True, help="only quarantined processes")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@url_option
@json_option
def list_processes(
    state: str | None, stalled: bool, quarantined: bool, limit: int, url: str | None, as_json: bool
) -> None:
    """Processes across all workers, latest change first."""
    query = {
        "limit": limit,
        "stalled": str(stalled).lower(),
        "quarantined": str(quarantined).lower(),
    }
    listed = get(
        base_url(url), "/processes/?" + urlencode(query | ({"state": state} if state else {}))
    )
    if as_json:
        emit_json(listed)
        return
    rows = [
        (
            p["order_id"],
            p["state"],
            when(p.get("updated_at")),
            when(p.get("deadline")),
            f"{p.get('total_price')} {p.get('currency')}",
            p.get("payment_method"),
            _note(p),
        )
        for p in listed
    ]
    table(("ORDER", "STATE", "UPDATED (UTC)", "DEADLINE (UTC)", "TOTAL", "PAYMENT", "NOTE"), rows)
    click.echo(f"{len(rows)} process(es)")


def _note(summary: dict[str, Any]) -> str:
    held = summary.get("quarantine")
    if held:
        return f"quarantined by {held['message_type']} ({held['parked']} parked): {held['reason']}"
    notes = [summary.get("cancellation_reason"), summary.get("escalation")]
    notes += ["stalled"] if summary.get("stalled") else []
    return ", ".join(str(n) for n in notes if n)


@processes.command("show")
@click.argument("order_id")
@url_option
@json_option
def show(order_id: str, url: str | None, as_json: bool) -> None:
    """One process: its record and its history of transitions."""
    process = get(base_url(url), f"/processes/{quote(order_id, safe='')}/")
    if as_json:
        emit_json(process)
        return
    quarantine = process.get("quarantine")
    fields(
        [
            ("order", process["order_id"]),
            ("state", process["state"]),
            ("deadline", when(process.get("deadline"))),
            ("client", process.get("client_id")),
            ("total", f"{process.get('total_price')} {process.get('currency')}"),
            ("payment", f"{process.get('payment_method')} {process.get('payment_id') or ''}"),
            ("cancellation", process.get("cancellation_reason")),
            ("escalation", process.get("escalation")),
            ("quarantine", _quarantine(quarantine) if quarantine else None),
        ]
    )
    rows = [
        (
            when(entry["at"], millis=True),
            entry["message_type"],
            entry.get("from_state") or "-",
            entry["to_state"],
            ", ".join(c["type"] for c in entry.get("commands", ())),
        )
        for entry in process.get("history", ())
    ]
    table(("AT (UTC)", "MESSAGE", "FROM", "TO", "COMMANDS SENT"), rows, title="history")


def _quarantine(quarantine: dict[str, Any]) -> str:
    message = quarantine["message"]
    return (
        f"{message['type']} {message['message_id']}: {quarantine['reason']} "
        f"({len(quarantine.get('parked', ()))} parked)"
    )


@processes.command("stats")
@click.option("--stalled", is_flag=True, help="count only stalled processes")
@url_option
@json_option
def stats(stalled: bool, url: str | None, as_json: bool) -> None:
    """The count of processes in each state, across all workers."""
    counts = get(base_url(url), "/processes/stats/" + ("?stalled=true" if stalled else ""))
    if as_json:
        emit_json(counts)
        return
    rows = [(state, count) for state, count in counts.items()]
    table(("STATE", "STALLED" if stalled else "PROCESSES"), rows)
    click.echo(f"total: {sum(counts.values())}")
