"""The README's state diagram block, and a writer that regenerates it from the table."""

from __future__ import annotations

import sys
from pathlib import Path

from process_manager.diagram import markdown_block

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- state-diagram:begin -->\n", "<!-- state-diagram:end -->"


def current_block(text: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END, start)]


def write() -> None:
    text = README.read_text()
    README.write_text(text.replace(current_block(text), markdown_block()))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write()
