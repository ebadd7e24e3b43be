"""What the command line prints: rich tables for people, JSON for machines, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=False)
F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.ClickException):
    """The request was declined (a worker's 4xx, a dead letter that may not go back): exit 1."""

    exit_code = 1


class Unreachable(click.ClickException):
    """Nothing to ask: no worker answers, no topic (exit 2, like a usage error)."""

    exit_code = 2


def json_option(command: F) -> F:
    """``--json``: print what a machine reads, instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")(
        command
    )


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    """A table; numbers right-aligned, ``None`` shown as empty."""
    rows = [list(row) for row in rows]
    shown = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        numeric = bool(rows) and all(isinstance(row[index], int | float) for row in rows)
        shown.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        shown.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(shown)


def fields(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> None:
    """A two-column table of named values, for one record."""
    shown = Table(title=title, title_justify="left", show_header=False, box=None)
    shown.add_column(style="bold")
    shown.add_column(overflow="fold")
    for name, value in pairs:
        shown.add_row(name, "" if value is None else str(value))
    console.print(shown)


def when(text: Any, *, millis: bool = False) -> str | None:
    """An ISO-8601 time as ``2026-12-03 08:24:29`` (UTC; ``.235`` with ``millis``)."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(str(text)).astimezone(UTC)
    except ValueError:
        return str(text)
    shown = at.strftime("%Y-%m-%d %H:%M:%S.%f")
    return shown[:-3] if millis else shown[:-7]
