"""The README shows the state machine as the code has it."""

from __future__ import annotations

from process_manager.diagram import markdown_block
from tests.readme_diagram import README, current_block


def test_the_readme_diagram_is_the_one_generated_from_the_transition_table() -> None:
    # Given the README, when its diagram block is read, then it is the generated one
    assert current_block(README.read_text()) == markdown_block(), "run `make diagram`"
