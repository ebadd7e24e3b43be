"""The state diagram of the order process, generated from ``TRANSITIONS``.

``python -m process_manager.diagram`` prints the fenced Mermaid block that the README keeps
between ``<!-- state-diagram:begin -->`` and ``<!-- state-diagram:end -->``.
"""

from __future__ import annotations

from process_manager.states import TERMINAL_STATES, State
from process_manager.table import TRANSITIONS


def to_mermaid() -> str:
    """A Mermaid ``stateDiagram-v2`` of every row of ``TRANSITIONS``, in table order.

    Each edge is labelled ``trigger / commands``; the terminal states lead to ``[*]``.
    """
    lines = ["stateDiagram-v2"]
    for (state, trigger), (next_state, commands) in TRANSITIONS.items():
        label = trigger if not commands else f"{trigger} / {', '.join(commands)}"
        lines.append(f"    {_node(state)} --> {_node(next_state)} : {label}")
    lines.extend(f"    {state} --> [*]" for state in State if state in TERMINAL_STATES)
    return "\n".join(lines) + "\n"


def markdown_block() -> str:
    """``to_mermaid()`` fenced as a Markdown ``mermaid`` code block, then the table itself."""
    return f"```mermaid\n{to_mermaid()}```\n\n{to_markdown_table()}"


def to_markdown_table() -> str:
    """``TRANSITIONS`` as a Markdown table: state, trigger, next state, commands sent."""
    lines = ["| state | message | next state | commands sent |", "|---|---|---|---|"]
    for (state, trigger), (next_state, commands) in TRANSITIONS.items():
        sent = ", ".join(commands) or "-"
        start = "(start)" if state is None else state.value
        lines.append(f"| {start} | {trigger} | {next_state.value} | {sent} |")
    return "\n".join(lines) + "\n"


def _node(state: State | None) -> str:
    return "[*]" if state is None else state.value


if __name__ == "__main__":
    print(markdown_block(), end="")
