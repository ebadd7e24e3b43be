"""The HTML pages of the web view, rendered on the server from plain data.

Every value that reaches a page goes through ``html.escape`` (``_h``), and every order id in a
link through ``urllib.parse.quote``: order ids and reasons come from clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from process_manager import HistoryEntry, Process, State, is_terminal
from process_manager.diagram import to_mermaid
from streams.process.timeline import Timeline
from streams.process.ui import diagram
from streams.process.ui.assets import CANCEL_SCRIPT, STYLE
from streams.process.ui.timeline import at_control, timeline_table


@dataclass(frozen=True)
class Filters:
    """The filters the list page shows, as the request chose them."""

    state: State | None
    stalled: bool
    limit: int
    stalled_after_s: float
    quarantined: bool = False


def _h(value: object) -> str:
    return escape("" if value is None else str(value))


def process_href(order_id: str) -> str:
    return f"/ui/processes/{quote(order_id, safe='')}/"


def _time(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _badge(state: str) -> str:
    return f'<span class="badge {_h(state)}">{_h(state)}</span>'


def layout(title: str, body: str, script: str = "") -> str:
    scripts = f"<script>{script}</script>" if script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_h(title)} · orderflow</title><style>{STYLE}</style></head><body>"
        '<header><h1><a href="/ui/">orderflow processes</a></h1>'
        '<a href="/ui/">all</a><a href="/ui/?stalled=true">stalled</a>'
        '<a href="/processes/stats/">stats JSON</a></header>'
        f"{body}{scripts}</body></html>"
    )


def error_page(status: int, message: str) -> str:
    return layout(f"{status}", f"<h2>{status}</h2><p>{_h(message)}</p>")


# The list page


def index_page(
    rows: list[dict[str, Any]],
    states: Mapping[State, int],
    stalled: Mapping[State, int],
    filters: Filters,
) -> str:
    """Counts per state, the live state diagram, the filters and the matching processes."""
    body = (
        f"<h2>States</h2>{_counts(states, stalled)}{diagram.svg(states, stalled)}"
        "<details><summary>Mermaid source, generated from the transition table</summary>"
        f'<pre id="mermaid">{_h(to_mermaid())}</pre></details>'
        f"<h2>Processes</h2>{_filters(filters)}"
        f'<p class="muted">{len(rows)} shown (at most {filters.limit}), latest change first. '
        "Stalled: not terminal, and past its deadline or unmoved for "
        f"{filters.stalled_after_s:g} s.</p>"
        f"{_process_table(rows)}"
    )
    return layout("processes", body)


def _counts(states: Mapping[State, int], stalled: Mapping[State, int]) -> str:
    links = []
    for state in State:
        marked = ' class="has-stalled"' if stalled.get(state) else ""
        extra = f" · {stalled[state]} stalled" if stalled.get(state) else ""
        links.append(
            f'<a{marked} href="/ui/?state={_h(state)}" data-state="{_h(state)}">'
            f"{_h(state)} <b>{states.get(state, 0)}</b>{extra}</a>"
        )
    total = sum(states.values())
    total_html = f"<span>total <b>{total}</b></span>"
    return f'<div class="counts" id="counts">{total_html}{"".join(links)}</div>'


def _filters(filters: Filters) -> str:
    options = ['<option value="">any state</option>'] + [
        f'<option value="{_h(s)}"{" selected" if s == filters.state else ""}>{_h(s)}</option>'
        for s in State
    ]
    checked = " checked" if filters.stalled else ""
    held = " checked" if filters.quarantined else ""
    return (
        '<form class="filters" method="get" action="/ui/">'
        f'<label>state <select name="state">{"".join(options)}</select></label>'
        f'<label><input type="checkbox" name="stalled" value="true"{checked}> stalled only</label>'
        f'<label><input type="checkbox" name="quarantined" value="true"{held}> quarantined only'
        "</label>"
        f'<label>limit <input type="number" name="limit" min="1" value="{filters.limit}"></label>'
        f'<input type="hidden" name="stalled_after" value="{filters.stalled_after_s:g}">'
        "<button>filter</button></form>"
    )


def _process_table(rows: Iterable[dict[str, Any]]) -> str:
    head = (
        "<tr><th>order</th><th>state</th><th>last change (UTC)</th><th>deadline (UTC)</th>"
        "<th>payment</th><th>total</th><th>cancellation</th></tr>"
    )
    lines = [_process_row(row) for row in rows]
    empty = '<tr><td colspan="7" class="muted">no process matches</td></tr>'
    return f'<table id="processes">{head}{"".join(lines) or empty}</table>'


def _process_row(row: Mapping[str, Any]) -> str:
    stalled = ' <span class="badge warn">stalled</span>' if row["stalled"] else ""
    if row.get("quarantine"):
        stalled += ' <span class="badge warn">quarantined</span>'
    return (
        f'<tr class="{"stalled" if row["stalled"] else ""}" data-order="{_h(row["order_id"])}">'
        f'<td><a class="mono" href="{_h(process_href(row["order_id"]))}">'
        f"{_h(row['order_id'])}</a></td>"
        f"<td>{_badge(row['state'])}{stalled}</td>"
        f"<td>{_time(row['updated_at'])}</td><td>{_time(row['deadline'])}</td>"
        f"<td>{_h(row['payment_method'])}</td>"
        f"<td>{_h(row['total_price'])} {_h(row['currency'])}</td>"
        f"<td>{_h(row['cancellation_reason'] or '')}</td></tr>"
    )


# The process page


def process_page(
    process: Process,
    stalled: bool,
    operator: bool,
    timeline: Timeline | str | None = None,
    params: Mapping[str, str] | None = None,
) -> str:
    """One process: its record, its timeline, and the operator's cancel form.

    ``timeline``: read from the topics, or why it could not be (the record's history, which
    keeps its latest entries only, is shown instead).
    """
    warn = ' <span class="badge warn">stalled</span>' if stalled else ""
    json_href = f"/processes/{quote(process.order_id, safe='')}/"
    if isinstance(timeline, Timeline):
        shown = at_control(process.order_id, params or {}) + timeline_table(timeline)
    else:
        why = f'<p class="warn">{_h(timeline)}; the record\'s history instead:</p>'
        shown = (why if timeline else "") + _timeline(process.history)
    body = (
        f'<h1>Order <span class="mono">{_h(process.order_id)}</span> '
        f"{_badge(process.state)}{warn}</h1>"
        f"{_record(process)}"
        f"<h2>Timeline</h2>{shown}"
        f"<h2>Operator</h2>{_quarantine_help(process)}{_cancel_form(process, operator)}"
        f'<p><a href="{_h(json_href)}">the record as JSON</a></p>'
    )
    script = "" if is_terminal(process.state) or not operator else CANCEL_SCRIPT
    return layout(f"order {process.order_id}", body, script)


def _record(process: Process) -> str:
    items = ", ".join(
        f"{i.quantity} × {i.product_id} at {i.unit_price}" for i in process.product_items
    )
    fields = [
        ("state", process.state),
        ("deadline (UTC)", _time(process.deadline)),
        ("client", process.client_id),
        ("items", items),
        ("total", f"{process.total_price} {process.currency}"),
        ("payment method", process.payment_method),
        ("payment id", process.payment_id or "-"),
        ("payment settled", "yes" if process.payment_settled else "no"),
        ("cancellation reason", process.cancellation_reason or "-"),
    ]
    if process.escalation is not None:
        fields.append(("escalated to an operator", process.escalation))
    if process.quarantine is not None:
        held = process.quarantine
        parked = ", ".join(f"{p.type} {p.message_id}" for p in held.parked) or "none"
        fields += [
            ("quarantined by", f"{held.message.type} {held.message.message_id}"),
            ("quarantine reason", held.reason),
            ("parked behind it, in order", parked),
        ]
    return "<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in fields) + "</dl>"


def _timeline(history: Iterable[HistoryEntry]) -> str:
    head = (
        "<tr><th>time (UTC)</th><th>message</th><th>message id</th><th>from</th><th>to</th>"
        "<th>commands sent</th></tr>"
    )
    rows = [
        f"<tr><td>{_time(e.at)}</td><td>{_h(e.message_type)}</td>"
        f'<td class="mono">{_h(e.message_id)}</td>'
        f"<td>{_h(e.from_state or '(start)')}</td><td>{_badge(e.to_state)}</td>"
        f"<td>{_commands(e)}</td></tr>"
        for e in history
    ]
    return f'<table id="timeline">{head}{"".join(rows)}</table>'


def _commands(entry: HistoryEntry) -> str:
    return "<br>".join(
        f'{_h(c.type)} <span class="mono muted">{_h(c.message_id)}</span>' for c in entry.commands
    )


def _quarantine_help(process: Process) -> str:
    if process.quarantine is None:
        return ""
    order = _h(process.order_id)
    return (
        '<p class="warn">This process is quarantined: a message broke it, and later ones wait '
        "behind it. Once the cause is fixed, resume it (the failing and the parked messages "
        "are taken in again, in order), or skip the failing message:</p>"
        f'<pre class="mono">orderflow resume {order}\n'
        f"orderflow skip {order} --message-id "
        f"{_h(process.quarantine.message.message_id)}</pre>"
    )


def _cancel_form(process: Process, operator: bool) -> str:
    if is_terminal(process.state):
        return f'<p class="muted">The process is {_h(process.state)}: nothing to cancel.</p>'
    if not operator:
        return (
            '<p class="muted">Operator actions are disabled on this worker: '
            "no OPERATOR_TOKEN is configured.</p>"
        )
    action = f"/processes/{quote(process.order_id, safe='')}/cancel/"
    return (
        f'<form id="cancel" method="post" action="{_h(action)}">'
        '<label for="reason">reason</label>'
        '<input id="reason" name="reason" value="cancelled by an operator" required>'
        '<label for="requested_by">requested by</label>'
        '<input id="requested_by" name="requested_by" value="web-operator" required>'
        '<label for="token">operator token</label>'
        '<input id="token" name="token" type="password" autocomplete="off">'
        "<button>cancel the process</button></form>"
        '<p id="cancel-result" aria-live="polite"></p>'
    )
