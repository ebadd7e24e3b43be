"""The progress bar of the offline tools and the demo (rich), on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, Task, TaskProgressColumn
from rich.progress import Progress as RichProgress
from rich.text import Text


class RateColumn(ProgressColumn):
    """Done per second since the start (not rich's windowed speed): the figure reports quote."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} {self.unit}/s")


class Progress:
    """``label ━━━━━━━━━━━━━━━━━━  50% 500/1000 events 250 events/s``, redrawn in place on a
    terminal; elsewhere (a log, a pipe) drawn once, when finished."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        *,
        unit: str = "events",
        rate_unit: str | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._bar = RichProgress(
            f"[bold]{label}",
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            unit,
            RateColumn(rate_unit or unit),
            console=Console(file=stream or sys.stderr),
            refresh_per_second=5,
        )
        self._task = self._bar.add_task(label, total=total)
        self._bar.start()

    def advance(self, count: int) -> None:
        self.update(self.done + count)

    def update(self, done: int) -> None:
        self.done = done
        self._bar.update(self._task, completed=done, total=max(self.total, done))

    def finish(self) -> float:
        """Draw the final bar and end its line; return the elapsed seconds."""
        self.total = max(self.total, self.done)
        self._bar.update(self._task, completed=self.done, total=self.total)
        self._bar.stop()
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0
