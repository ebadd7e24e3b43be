"""Chaos profiles, and the fault plan a seed makes of one (pure: no I/O, no clock).

A plan fixes, from the seed alone, when the broker stops, how long it stays down, and every
SIGKILL: its victim and its time. A kill's time counts on one of three clocks, so that the
plan keeps its shape however long the broker takes to stop and start again:

- ``before``: seconds after the feed started (the broker has not stopped yet);
- ``down``: seconds after the broker stopped (it is down for the profile's ``down_s``);
- ``after``: seconds after the broker answered again.

Without a broker outage every kill is on the ``before`` clock.

A profile's broker fault is one of two kinds: ``stop``, the single broker stopped and started
again (``deploy/kafka/kafka.sh``), or ``kill-leader``, on a cluster: the node that leads the
most partitions killed with SIGKILL, and started again ``down_s`` later
(``deploy/kafka/cluster.sh start``) while the other nodes go on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final, Literal

Phase = Literal["before", "down", "after"]
BrokerFault = Literal["stop", "kill-leader"]

BURST_SPAN_S: Final = (8.0, 2.0)
"""A profile's burst of carts is spread evenly from 8 s before the broker stop begins to 2 s
after: at the stop, its processes stand in every state of the way, shipment included."""
FIRST_KILL_S: Final = 5.0
"""No kill in the first seconds of the feed: the workers have just become ready."""
MIN_GAP_S: Final = 3.0
"""Kills on one clock are at least this far apart."""

SHIPMENT_AND_PAYMENT_STATES: Final = ("AwaitingPayment", "RecordingPayment", "AwaitingShipment")
"""The states whose timeouts a long outage must outlast: the payment and shipment waits."""


@dataclass(frozen=True)
class Outage:
    """The broker stops at a random time in ``at_s`` (after the feed started) and is started
    again ``down_s`` seconds after it stopped (0: at once, a plain restart)."""

    at_s: tuple[float, float]
    down_s: float


@dataclass(frozen=True)
class Profile:
    """One kind of chaos run: load, faults, and the timeouts the workers run with."""

    name: str
    orders: int
    rate: float
    """Carts per second, for all but the burst."""
    burst: int
    """Carts sent on top of ``rate`` around the broker stop (``BURST_SPAN_S``): processes
    caught mid-way, past their deadlines when the broker is back. Part of ``orders``."""
    worker_kills: int
    runner_kills: int
    separate_modules: bool
    """Module handlers in runners of their own (``python -m streams.modules.runner``) beside the
    workers, as ``make start`` runs them, rather than in threads of the workers."""
    outage: Outage | None
    kills_while_down: int
    after_span_s: float
    """The kills after the broker is back are spread over this many seconds."""
    max_seconds: float
    timeouts: dict[str, float] = field(default_factory=lambda: {"AwaitingPayment": 20.0})
    timeout_all_s: float = 120.0
    stall_exit_after_s: float = 60.0
    broker_fault: BrokerFault = "stop"
    """``stop``: the single broker; ``kill-leader``: the cluster node leading most partitions."""

    @property
    def on_cluster(self) -> bool:
        return self.broker_fault == "kill-leader"

    @property
    def feed_s(self) -> float:
        return (self.orders - self.burst) / self.rate

    def timeout_of(self, state: str) -> float:
        return self.timeouts.get(state, self.timeout_all_s)

    def outlasts_timeouts(self) -> bool:
        """Whether the broker stays down longer than every payment and shipment timeout."""
        if self.outage is None or self.on_cluster:
            return False  # on a cluster the other nodes go on while one is down
        return all(self.outage.down_s > self.timeout_of(s) for s in SHIPMENT_AND_PAYMENT_STATES)


# The shorter payment and shipment timeouts of the long outages: a broker down longer than
# them leaves processes past their deadline while packages sit in the outbox.
OUTAGE_TIMEOUTS: Final = {
    "AwaitingPayment": 20.0,
    "RecordingPayment": 30.0,
    "AwaitingShipment": 30.0,
}

PROFILES: Final = {
    p.name: p
    for p in (
        # What `make chaos` always ran: kills about every 8 s, one broker restart.
        Profile(
            name="classic",
            orders=5000,
            rate=60.0,
            burst=0,
            worker_kills=10,
            runner_kills=0,
            separate_modules=False,
            outage=Outage(at_s=(20.0, 30.0), down_s=0.0),
            kills_while_down=0,
            after_span_s=50.0,
            max_seconds=900.0,
        ),
        Profile(
            name="long-outage",
            orders=7000,
            rate=40.0,
            burst=600,
            worker_kills=10,
            runner_kills=4,
            separate_modules=True,
            outage=Outage(at_s=(30.0, 45.0), down_s=90.0),
            kills_while_down=3,
            after_span_s=45.0,
            max_seconds=900.0,
            timeouts=dict(OUTAGE_TIMEOUTS),
        ),
        # The short form CI runs (tests/chaos/test_chaos.py), about 3 minutes in all.
        Profile(
            name="long-outage-short",
            orders=920,
            rate=8.0,
            burst=120,
            worker_kills=8,
            runner_kills=3,
            separate_modules=True,
            outage=Outage(at_s=(12.0, 18.0), down_s=62.0),
            kills_while_down=3,
            after_span_s=20.0,
            max_seconds=240.0,
            timeouts=dict(OUTAGE_TIMEOUTS),
        ),
        # `make chaos BROKERS=3`: on the three-node cluster, the node that leads the most
        # partitions is killed with SIGKILL mid-run and started again 30 s later; workers and
        # runners are killed before, while it is down and after. At 45/s on this 2-core
        # machine the backlog grew to minutes and 90 % of the orders timed out in
        # AwaitingPayment: 25/s, and a payment timeout of 60 s, keep the mix's outcomes.
        Profile(
            name="cluster",
            orders=5000,
            rate=25.0,
            burst=0,
            worker_kills=8,
            runner_kills=3,
            separate_modules=True,
            outage=Outage(at_s=(60.0, 90.0), down_s=30.0),
            kills_while_down=3,
            after_span_s=40.0,
            max_seconds=900.0,
            timeouts={"AwaitingPayment": 60.0},
            broker_fault="kill-leader",
        ),
    )
}


@dataclass(frozen=True)
class Kill:
    """SIGKILL ``victim`` ``at_s`` seconds into ``phase``, then start it again at once."""

    phase: Phase
    at_s: float
    victim: str

    def describe(self) -> str:
        return f"{self.phase}+{self.at_s:.1f}s kill {self.victim}"


@dataclass(frozen=True)
class Plan:
    seed: int
    broker_stop_at_s: float | None
    down_s: float
    kills: tuple[Kill, ...]
    """In the order they are carried out: the ``before`` clock, then ``down``, then ``after``."""
    broker_fault: BrokerFault = "stop"

    def describe(self) -> list[str]:
        lines = []
        if self.broker_stop_at_s is not None and self.broker_fault == "kill-leader":
            lines.append(
                f"before+{self.broker_stop_at_s:.1f}s SIGKILL the node leading the most "
                f"partitions, started again {self.down_s:.0f} s after"
            )
        elif self.broker_stop_at_s is not None:
            lines.append(
                f"before+{self.broker_stop_at_s:.1f}s broker stop, started again "
                f"{self.down_s:.0f} s after it stopped"
            )
        return lines + [kill.describe() for kill in self.kills]


def spread(rng: random.Random, count: int, lo: float, hi: float, gap: float) -> list[float]:
    """``count`` random times in ``[lo, hi]``, sorted, at least ``gap`` apart."""
    if count == 0:
        return []
    room = hi - lo - (count - 1) * gap
    if room < 0:
        raise ValueError(f"{count} kills do not fit in {lo:.0f}..{hi:.0f} s, {gap:.0f} s apart")
    points = sorted(rng.uniform(0, room) for _ in range(count))
    return [lo + point + n * gap for n, point in enumerate(points)]


def make_plan(profile: Profile, seed: int, workers: list[str], runners: list[str]) -> Plan:
    """The faults of one run of ``profile``, every choice made by ``seed``."""
    rng = random.Random(f"{seed}:faults")
    kinds = ["worker"] * profile.worker_kills + ["runner"] * profile.runner_kills
    if profile.runner_kills and not runners:
        raise ValueError(f"profile {profile.name} kills runners, but there are none")
    rng.shuffle(kinds)
    victims = [rng.choice(workers if kind == "worker" else runners) for kind in kinds]
    outage = profile.outage
    if outage is None:
        times = spread(rng, len(kinds), FIRST_KILL_S, profile.feed_s, MIN_GAP_S)
        kills = tuple(Kill("before", t, v) for t, v in zip(times, victims, strict=True))
        return Plan(seed, None, 0.0, kills, profile.broker_fault)
    stop_at = rng.uniform(*outage.at_s)
    down = min(profile.kills_while_down, len(kinds)) if outage.down_s > 0 else 0
    rest = len(kinds) - down
    before_span = max(stop_at - 1 - FIRST_KILL_S, 0.0)
    before = round(rest * before_span / (before_span + profile.after_span_s))
    phases: list[tuple[Phase, list[float]]] = [
        ("before", spread(rng, before, FIRST_KILL_S, stop_at - 1, MIN_GAP_S)),
        ("down", spread(rng, down, MIN_GAP_S, outage.down_s - MIN_GAP_S, MIN_GAP_S)),
        ("after", spread(rng, rest - before, MIN_GAP_S, profile.after_span_s, MIN_GAP_S)),
    ]
    slots = [(phase, t) for phase, times in phases for t in times]
    kills = tuple(Kill(phase, t, v) for (phase, t), v in zip(slots, victims, strict=True))
    return Plan(seed, stop_at, outage.down_s, kills, profile.broker_fault)


def send_times(profile: Profile, plan: Plan) -> list[float]:
    """When each cart is sent, in seconds after the feed starts: ``rate`` per second, and the
    burst spread evenly over ``BURST_SPAN_S`` around the broker stop (no stop: the first 10 s)."""
    steady = [n / profile.rate for n in range(profile.orders - profile.burst)]
    before, after = BURST_SPAN_S
    stop_at = plan.broker_stop_at_s
    start = 0.0 if stop_at is None else max(stop_at - before, 0.0)
    end = before + after if stop_at is None else stop_at + after
    step = (end - start) / max(profile.burst, 1)
    return sorted(steady + [start + n * step for n in range(profile.burst)])
