"""A carriage-return progress bar for the offline tools."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


def render_bar(label: str, done: int, total: int, elapsed: float, width: int = 30) -> str:
    """``label [#####-----]  50%  500/1000 events  250 events/s``."""
    fraction = 1.0 if total <= 0 else min(done / total, 1.0)
    filled = int(round(fraction * width))
    rate = done / elapsed if elapsed > 0 else 0.0
    return (
        f"{label} [{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  "
        f"{done:,}/{total:,} events  {rate:,.0f} events/s"
    )


@dataclass
class Progress:
    """A carriage-return progress bar on a stream (stderr), redrawn at most every 0.1 s."""

    label: str
    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _drawn: float = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def finish(self) -> float:
        """Draw the final bar and end its line; return the elapsed seconds."""
        now = time.monotonic()
        self.total = max(self.total, self.done)
        self._draw(now)
        self.stream.write("\n")
        self.stream.flush()
        return now - self.started

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + render_bar(self.label, self.done, self.total, now - self.started))
        self.stream.flush()
