"""The Mermaid diagram is generated from the transition table, in table order."""

from __future__ import annotations

import subprocess
import sys

from process_manager import TRANSITIONS, State
from process_manager.diagram import markdown_block, to_markdown_table, to_mermaid


def test_the_diagram_has_one_edge_per_row_in_table_order() -> None:
    lines = to_mermaid().splitlines()

    assert lines[0] == "stateDiagram-v2"
    edges = [line for line in lines[1:] if " : " in line]
    assert len(edges) == len(TRANSITIONS)
    assert edges[0] == "    [*] --> AwaitingOrder : CartFinalized / InitOrder"
    assert (
        "    DiscardingPayment --> RefundingPayment : PaymentDiscardRejected / RefundPayment"
        in edges
    )


def test_the_diagram_shows_every_state_and_ends_in_the_terminal_states() -> None:
    diagram = to_mermaid()

    assert all(state.value in diagram for state in State)
    assert diagram.endswith("    Completed --> [*]\n    Cancelled --> [*]\n    Escalated --> [*]\n")


def test_the_table_has_one_row_per_transition_with_its_commands() -> None:
    rows = to_markdown_table().splitlines()[2:]
    assert len(rows) == len(TRANSITIONS)
    assert rows[0] == "| (start) | CartFinalized | AwaitingOrder | InitOrder |"
    assert "| Completing | OrderCompleted | Completed | - |" in rows


def test_the_diagram_script_prints_the_fenced_block() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "process_manager.diagram"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert printed.stdout == markdown_block()
    assert markdown_block() == f"```mermaid\n{to_mermaid()}```\n\n{to_markdown_table()}"
    assert printed.stderr == ""
