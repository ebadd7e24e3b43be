"""Carrying a chaos plan out: the conductor, and the journal of what it did.

The conductor runs in a thread of its own and is the only one that touches the processes and
the broker while the run lasts: it starts again every process that exits by itself (after
2 s, as ``deploy/workers.sh`` does), stops the broker (or kills a cluster node: see
``tests/chaos/brokers.py``) and starts it again when the plan says,
and SIGKILLs each victim when its time has come on its clock and it is ready (a kill waits
until then, and the journal says how late it was). Every fault and exit is printed as it
happens, with its time since the feed started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.chaos.brokers import ClusterNode, SingleBroker
from tests.chaos.members import Member
from tests.chaos.plan import Kill, Plan

RESPAWN_DELAY_S: Final = 2.0  # as deploy/workers.sh's supervisor waits


@dataclass
class Event:
    """A fault or an exit, at ``at_s`` since the feed started."""

    at_s: float
    kind: str  # "kill", "exit" or "broker"
    target: str
    planned: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    resumed_after_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "at_s": round(self.at_s, 1),
            "kind": self.kind,
            "target": self.target,
            "planned": self.planned,
            "resumed_after_s": None
            if self.resumed_after_s is None
            else round(self.resumed_after_s, 1),
            **self.detail,
        }


class Journal:
    """Every fault and exit, printed as it happens with its time since the feed started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[Event] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(f"[{self.now():7.1f}s] {text}", file=sys.stderr, flush=True)

    def record(self, event: Event, text: str) -> Event:
        self.events.append(event)
        self.say(text)
        return event


class Conductor:
    """Carries the plan out and supervises the processes, all from one thread: it starts
    again every process that exits by itself, stops and starts the broker, and kills each
    victim when its time has come on its clock and it is ready (a kill waits until then)."""

    def __init__(
        self,
        members: list[Member],
        plan: Plan,
        journal: Journal,
        run_dir: Path,
        fault: SingleBroker | ClusterNode,
    ) -> None:
        self.members = {m.name: m for m in members}
        self.fault = fault
        self.plan = plan
        self.pending: list[Kill] = list(plan.kills)
        self.journal = journal
        self.run_dir = run_dir
        self.broker = "up"  # up, stopping, down, starting, back
        self.broker_op: subprocess.Popen[bytes] | None = None
        self.stop_began: float | None = None
        self.down_at: float | None = None
        self.start_began: float | None = None
        self.back_at: float | None = None
        self.leaders_moved_at: float | None = None
        self.killed_wall: float | None = None
        """The time (``time.time()``) of the broker fault, to compare with record timestamps."""
        self.broker_starts = 0
        self.retry_at = 0.0
        self.waiting: dict[str, list[Event]] = {}
        self.respawn_at: dict[str, float] = {}
        self.deferred: set[Kill] = set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conductor", daemon=True)

    # Running

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def done(self) -> bool:
        """Every planned fault carried out, the broker back, and every process ready."""
        broker_done = self.plan.broker_stop_at_s is None or self.broker == "back"
        return not self.pending and broker_done and all(m.ready for m in self.members.values())

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(0.2)
        except BaseException as error:  # reported by the run, which then fails
            self.error = error
            self.journal.say(f"conductor failed: {error!r}")

    def step(self) -> None:
        now = self.journal.now()
        self._supervise(now)
        self._broker_step(now)
        self._kill_step(now)

    # Processes

    def _supervise(self, now: float) -> None:
        for member in self.members.values():
            code = member.exit_code()
            if code is not None and member.name not in self.respawn_at:
                how = "" if member.ready else ", before it was ready"
                detail = {
                    "exit_code": code,
                    "generation": member.generation,
                    "was_ready": member.ready,
                    "broker": self.broker,
                }
                event = Event(now, "exit", member.name, detail=detail)
                self.journal.record(
                    event,
                    f"{member.name} exited by itself with {code} (generation "
                    f"{member.generation}{how}); starting it again in {RESPAWN_DELAY_S:.0f} s",
                )
                self.waiting.setdefault(member.name, []).append(event)
                self.respawn_at[member.name] = now + RESPAWN_DELAY_S
                member.ready = False
            if member.name in self.respawn_at:
                if now >= self.respawn_at[member.name]:
                    del self.respawn_at[member.name]
                    member.spawn()
            elif member.running() and not member.ready and member.poll():
                waited = self.waiting.pop(member.name, [])
                for event in waited:
                    event.resumed_after_s = now - event.at_s
                since = (
                    f", {now - waited[0].at_s:.1f} s after the {waited[0].kind}" if waited else ""
                )
                self.journal.say(f"{member.name} ready (generation {member.generation}{since})")

    def _kill_step(self, now: float) -> None:
        if not self.pending:
            return
        kill = self.pending[0]
        clock = {"before": 0.0, "down": self.down_at, "after": self.back_at}[kill.phase]
        if clock is None or now < clock + kill.at_s:
            return
        victim = self.members[kill.victim]
        if not victim.ready:
            if kill not in self.deferred:
                self.deferred.add(kill)
                self.journal.say(f"{kill.describe()}: {victim.name} is not ready; the kill waits")
            return
        self.pending.pop(0)
        late = now - clock - kill.at_s
        generation = victim.generation
        victim.kill()
        event = Event(
            now,
            "kill",
            victim.name,
            planned=kill.describe(),
            detail={"generation": generation, "late_s": round(late, 1), "broker": self.broker},
        )
        later = f", {late:.1f} s late" if late >= 1 else ""
        self.journal.record(
            event,
            f"SIGKILL {victim.name} (generation {generation}; planned {kill.describe()}{later}; "
            f"broker {self.broker}); starting it again",
        )
        self.waiting.setdefault(victim.name, []).append(event)
        victim.spawn()

    # The broker

    def _broker_step(self, now: float) -> None:
        stop_at = self.plan.broker_stop_at_s
        if stop_at is None:
            return
        self._leaders_step(now)
        if self.broker == "up" and now >= stop_at:
            self.stop_began, self.broker = now, "stopping"
            self.killed_wall = time.time()
            self.broker_op = self.fault.stop()
            what = "killing" if isinstance(self.fault, ClusterNode) else "stopping"
            self.journal.say(
                f"{self.fault.name}: {what} (planned before+{stop_at:.1f}s) {self.fault.detail}"
            )
        elif self.broker == "stopping" and self._op_done() is not None:
            self.down_at, self.broker = now, "down"
            assert self.stop_began is not None
            self.journal.say(
                f"{self.fault.name}: stopped in {now - self.stop_began:.1f} s; "
                f"starting it again in {self.plan.down_s:.0f} s"
            )
        elif self.broker == "down":
            assert self.down_at is not None
            if now >= max(self.down_at + self.plan.down_s, self.retry_at):
                self._start_broker(now)
        elif self.broker == "starting":
            code = self._op_done()
            if code is None:
                return
            if code != 0:
                self.journal.say(f"{self.fault.name}: start failed with {code}; again in 5 s")
                self.broker, self.retry_at = "down", now + 5
                return
            # kafka.sh start returns at once when the broker process runs already (a retry
            # after its readiness limit): back is when a metadata request succeeds.
            if self.fault.answering():
                self._broker_back(now)

    def _leaders_step(self, now: float) -> None:
        """After a cluster node's kill: when no watched partition is led by it any more."""
        if (
            isinstance(self.fault, ClusterNode)
            and self.stop_began is not None
            and self.leaders_moved_at is None
            and self.fault.leaders_moved()
        ):
            self.leaders_moved_at = now
            self.journal.say(
                f"{self.fault.name}: its partitions have other leaders, "
                f"{now - self.stop_began:.1f} s after the kill"
            )

    def _start_broker(self, now: float) -> None:
        self._keep_console_log()
        self.broker = "starting"
        if self.start_began is None:
            self.start_began = now  # the first start: how long the broker was held down
        self.broker_starts += 1
        self.broker_op = self.fault.start()
        self.journal.say(f"{self.fault.name}: starting")

    def _broker_back(self, now: float) -> None:
        assert self.stop_began is not None and self.down_at is not None
        assert self.start_began is not None
        self.back_at, self.broker = now, "back"
        detail = {
            "stop_s": round(self.down_at - self.stop_began, 1),
            "held_down_s": round(self.start_began - self.down_at, 1),
            "start_s": round(now - self.start_began, 1),
            "unavailable_s": round(now - self.stop_began, 1),
            **self.fault.detail,
        }
        if self.leaders_moved_at is not None:
            detail["leaders_moved_s"] = round(self.leaders_moved_at - self.stop_began, 1)
        event = Event(self.stop_began, "broker", self.fault.name, detail=detail)
        event.resumed_after_s = now - self.stop_began
        self.journal.record(
            event,
            f"{self.fault.name}: answering again, {detail['unavailable_s']} s after the stop began "
            f"(stop {detail['stop_s']} s, held down {detail['held_down_s']} s, "
            f"start {detail['start_s']} s)",
        )

    def restore_broker(self) -> None:
        """Leave the broker (every cluster node) running, whatever state the plan left it in."""
        if self.broker_op is not None and self.broker_op.poll() is None:
            self.broker_op.wait(timeout=150)
        if self.broker in ("stopping", "down", "starting"):
            self.journal.say(f"{self.fault.name}: starting it again before leaving")
            self.fault.restore()
            self.broker = "back" if self.back_at is not None else "restored"

    def _op_done(self) -> int | None:
        assert self.broker_op is not None
        return self.broker_op.poll()

    def _keep_console_log(self) -> None:
        """kafka.sh and cluster.sh start truncate the broker's console log: keep a copy."""
        console = self.fault.console_log()
        if console.exists():
            shutil.copy(console, self.run_dir / f"broker-console.{self.broker_starts}.log")
