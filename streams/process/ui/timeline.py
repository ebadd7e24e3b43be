"""The process page's timeline: every input of the order, read from the topics, up to a point.

Each row is one input with its outcome (applied from -> to, ignored with its reason,
duplicate, quarantined, undecodable) and the commands it sent; the ``at`` control folds up to
a time or a record. Values go through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import quote

from streams.process.timeline import Entry, Timeline


def _h(value: object) -> str:
    return escape("" if value is None else str(value))


def at_control(order_id: str, params: Mapping[str, str]) -> str:
    """The form that shows the timeline (and the state) at a time or a record."""
    action = f"/ui/processes/{quote(order_id, safe='')}/"
    return (
        f'<form class="filters" id="at" method="get" action="{_h(action)}">'
        '<label>at <input name="at" placeholder="2026-12-03T08:00:00Z" '
        f'value="{_h(params.get("at", ""))}"></label>'
        '<label>or up to the record <input name="offset" placeholder="orders.events:3:42" '
        f'value="{_h(params.get("offset", ""))}"></label>'
        f'<button>show</button> <a href="{_h(action)}">now</a></form>'
    )


def timeline_table(timeline: Timeline) -> str:
    head = (
        "<tr><th>#</th><th>written (UTC)</th><th>record</th><th>message</th>"
        "<th>message id</th><th>outcome</th><th>from</th><th>to</th><th>commands sent</th></tr>"
    )
    rows = [_row(n, entry) for n, entry in enumerate(timeline.entries, 1)]
    empty = '<tr><td colspan="9" class="muted">no input up to this point</td></tr>'
    summary = (
        f'<p class="muted">Read from the topics (partition {timeline.partition}), up to '
        f"{_h(timeline.until)}: state <b>{_h(timeline.state or '(no process)')}</b>.</p>"
    )
    return f'{summary}<table id="timeline">{head}{"".join(rows) or empty}</table>'


def _row(n: int, entry: Entry) -> str:
    moved = entry.outcome == "applied" and entry.reason != "noted"
    outcome = "applied" if moved else entry.describe()
    commands = "<br>".join(
        f'{_h(t)} <span class="mono muted">{_h(i)}</span>' for t, i in entry.commands
    )
    return (
        f'<tr class="{_h(entry.outcome)}"><td>{n}</td>'
        f"<td>{entry.written_at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}</td>"
        f'<td class="mono">{_h(entry.position)}</td>'
        f"<td>{_h(entry.message_type)}</td>"
        f'<td class="mono">{_h(entry.message_id)}</td><td>{_h(outcome)}</td>'
        f"<td>{_h((entry.from_state or '(start)') if moved else '')}</td>"
        f"<td>{_h(entry.to_state or '')}</td><td>{commands}</td></tr>"
    )
