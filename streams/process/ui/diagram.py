"""The state diagram as inline SVG, laid out from ``TRANSITIONS``, with live counts per state.

States sit in columns by their distance from the start (breadth first over the table, in table
order); an arrow joins two states when some row leads from one to the other. No layout engine
and no script: the page must render without a CDN.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from process_manager import TRANSITIONS, State, is_terminal

BOX_W, BOX_H = 204, 46
COL_W, ROW_H = 236, 66
MARGIN = 16


def layers() -> list[list[State]]:
    """The states by distance from the start; states the table never reaches come last."""
    depth: dict[State, int] = {}
    frontier = [nxt for (state, _), (nxt, _) in TRANSITIONS.items() if state is None]
    level = 0
    while frontier:
        for state in frontier:
            depth.setdefault(state, level)
        level += 1
        frontier = [
            nxt
            for (state, _), (nxt, _) in TRANSITIONS.items()
            if state in frontier and nxt not in depth
        ]
    unreached = [state for state in State if state not in depth]
    columns = [[s for s in depth if depth[s] == n] for n in range(level)]
    return [column for column in [*columns, unreached] if column]


def edges() -> list[tuple[State, State]]:
    """Each (from, to) pair some row joins, once, in table order; no self-loops."""
    pairs = [(s, nxt) for (s, _), (nxt, _) in TRANSITIONS.items() if s is not None and s != nxt]
    return list(dict.fromkeys(pairs))


def svg(counts: Mapping[State, int], stalled: Mapping[State, int]) -> str:
    """The diagram with each state's count; states holding stalled processes are marked."""
    columns = layers()
    place = {
        state: (MARGIN + col * COL_W, MARGIN + row * ROW_H)
        for col, column in enumerate(columns)
        for row, state in enumerate(column)
    }
    width = MARGIN * 2 + (len(columns) - 1) * COL_W + BOX_W
    height = MARGIN * 2 + (max(len(c) for c in columns) - 1) * ROW_H + BOX_H + 30  # back arrows
    arrows = [_arrow(place[a], place[b]) for a, b in edges()]
    boxes = [_box(s, place[s], counts.get(s, 0), stalled.get(s, 0)) for s in place]
    return (
        f'<svg class="diagram" role="img" aria-label="process state diagram" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#8a94a6"/></marker></defs>'
        f"{''.join(arrows)}{''.join(boxes)}</svg>"
    )


def _arrow(start: tuple[int, int], end: tuple[int, int]) -> str:
    (x1, y1), (x2, y2) = start, end
    if x2 > x1:  # forward: right side to left side
        a, b = (x1 + BOX_W, y1 + BOX_H // 2), (x2, y2 + BOX_H // 2)
        bend = (b[0] - a[0]) // 2
        path = f"M{a[0]},{a[1]} C{a[0] + bend},{a[1]} {b[0] - bend},{b[1]} {b[0]},{b[1]}"
    elif x2 == x1 and y2 > y1:  # down the column: bottom to top
        a, b = (x1 + BOX_W // 2, y1 + BOX_H), (x2 + BOX_W // 2, y2)
        path = f"M{a[0]},{a[1]} L{b[0]},{b[1]}"
    else:  # backward: bottom to bottom, under the boxes
        a, b = (x1 + BOX_W // 2, y1 + BOX_H), (x2 + BOX_W // 2 + 12, y2 + BOX_H)
        path = f"M{a[0]},{a[1]} C{a[0]},{a[1] + 30} {b[0]},{b[1] + 30} {b[0]},{b[1]}"
    return f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>'


def _box(state: State, at: tuple[int, int], count: int, stalled: int) -> str:
    x, y = at
    kind = "terminal" if is_terminal(state) else "stalled" if stalled else "state"
    label = f"{count} ({stalled} stalled)" if stalled else f"{count}"
    title = f"{state}: {count} process(es), {stalled} stalled"
    return (
        f'<g class="node {kind}" data-state="{escape(state)}"><title>{escape(title)}</title>'
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8"/>'
        f'<text x="{x + BOX_W // 2}" y="{y + 19}" class="name">{escape(state)}</text>'
        f'<text x="{x + BOX_W // 2}" y="{y + 36}" class="count">{escape(label)}</text></g>'
    )
