"""A process's timeline at any point in time, read from the topics.

    orderflow timeline ORDER [--at TIME | --offset TOPIC:PARTITION:OFFSET] [--json]
    python -m streams.tools.timeline ORDER ...

Every input of the order, from the partition its key owns on each input topic, folded up to
the end, to ``--at`` (an ISO 8601 time, UTC without a zone: each topic's records written
until then) or to ``--offset`` (that record, and the other topics' records merged before it),
with its outcome: applied (from -> to), ignored with its reason, duplicate, quarantined,
and the commands sent (``streams.process.timeline``). Exit 0; 1 when the order has no input
up to that point; 2 on bad usage or when the topics cannot be read.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from streams.process.timeline import Position, Timeline, parse_time, read_timeline
from streams.settings import get_settings


def console() -> Console:
    """Rich's console; wide when the output is not a terminal (a file, a pipe, CI logs)."""
    return Console(width=None if sys.stdout.isatty() else 150)


class CannotRun(click.ClickException):
    exit_code = 2


def render(timeline: Timeline, console: Console) -> None:
    table = Table(
        title=f"order {timeline.order_id} (partition {timeline.partition}), up to {timeline.until}"
    )
    for column in ("#", "written (UTC)", "record", "message", "outcome", "commands sent"):
        table.add_column(column, overflow="fold")
    for n, entry in enumerate(timeline.entries, 1):
        table.add_row(
            str(n),
            entry.written_at.strftime("%H:%M:%S.%f")[:-3],
            entry.position,
            f"{entry.message_type} {entry.message_id[:8]}",
            entry.describe(),
            "\n".join(f"{t} {i[:8]}" for t, i in entry.commands),
        )
    console.print(table)
    console.print(f"state: {timeline.state or '(no process)'}")


@click.command("timeline")
@click.argument("order")
@click.option("--at", "at_text", metavar="TIME", help="fold up to this time (ISO 8601, UTC)")
@click.option(
    "--offset", "offset_text", metavar="TOPIC:PARTITION:OFFSET", help="fold up to this record"
)
@click.option("--json", "as_json", is_flag=True, help="print the timeline as JSON")
def command(order: str, at_text: str | None, offset_text: str | None, as_json: bool) -> None:
    """Fold one order's records from the topics and print every input with its outcome."""
    if at_text and offset_text:
        raise click.UsageError("give --at or --offset, not both")
    try:
        at = None if at_text is None else parse_time(at_text)
        position = None if offset_text is None else Position.parse(offset_text)
        timeline = read_timeline(get_settings(), order, at=at, position=position)
    except (ValueError, LookupError, TimeoutError) as error:
        raise CannotRun(str(error)) from None
    if as_json:
        click.echo(json.dumps(timeline.as_json(), indent=2))
    else:
        render(timeline, console())
    sys.exit(0 if timeline.entries else 1)


if __name__ == "__main__":
    command()
