"""A property test: the whole world, simulated purely, in any interleaving.

The world has the order and payment deciders from ``aggregates`` (each dropping message ids
it has seen and turning ``Rejected`` into ``CommandRejected``, as their edges do), a tiny
warehouse that follows the shipment module's rule (``streams.modules.shipment.cancellation``: a
package or a cancelled shipment, never both), an operator, a settlement timer and a timeout
timer. Every topic is a FIFO queue.
Hypothesis picks the steps: which queue delivers next, a crash between the process table
write and the sends (the message is then delivered again), old messages delivered again,
settlements, operator cancels, timeouts (due or not) and the passing of time. Then the world
drains: queues empty, and due timeouts fire, until the process ends.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates import order, payment
from aggregates.decider import Rejected
from aggregates.messages import (
    CancelProcess,
    CancelShipment,
    CartFinalized,
    CommandRejected,
    Envelope,
    Message,
    OrderCommand,
    PackageWasSent,
    PaymentCommand,
    PaymentMethod,
    ProcessTimedOut,
    ProductWasOutOfStock,
    SendPackage,
    SettlePayment,
)
from process_manager import Process, State, handle, is_terminal
from streams.modules.shipment.cancellation import (
    Cancelled,
    Known,
    Shipped,
    answer_cancel,
    package_refusal,
)
from tests.unit.process_manager.scenario import CLIENT, ITEMS, ORDER, T0, TIMEOUTS, TOTAL

SETTLEMENT_DELAY = timedelta(seconds=30)
PROCESS_INPUTS = ("carts", "orders", "payments", "shipments", "operators")
MODULE_OF = {
    "InitOrder": "order",
    "RecordOrderPayment": "order",
    "CompleteOrder": "order",
    "CancelOrder": "order",
    "RequestPayment": "payment",
    "SettlePayment": "payment",
    "DiscardPayment": "payment",
    "RefundPayment": "payment",
    "SendPackage": "shipment",
    "CancelShipment": "shipment",
}
EVENTS_TOPIC = {"order": "orders", "payment": "payments", "shipment": "shipments"}


@dataclass
class World:
    method: PaymentMethod
    in_stock: bool
    now: datetime = T0
    process: Process | None = None
    inbox: dict[str, deque[Envelope]] = field(
        default_factory=lambda: {topic: deque() for topic in PROCESS_INPUTS}
    )
    commands: dict[str, deque[Envelope]] = field(
        default_factory=lambda: {module: deque() for module in EVENTS_TOPIC}
    )
    delivered: list[Envelope] = field(default_factory=list)
    ran: list[Envelope] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    order: order.Order = order.initial_state
    payment: payment.Payment = payment.initial_state
    payment_events: list[Message] = field(default_factory=list)
    packages_sent: int = 0
    shipment: Known = None
    counter: int = 0

    def __post_init__(self) -> None:
        cart = CartFinalized(
            cart_id=ORDER,
            client_id=CLIENT,
            product_items=ITEMS,
            total_price=TOTAL,
            payment_method=self.method,
        )
        self.publish("carts", cart, causation_id=None)

    # Messages

    def publish(self, topic: str, message: Message, *, causation_id: str | None) -> None:
        self.counter += 1
        self.inbox[topic].append(
            Envelope.wrap(
                message,
                message_id=f"{topic}-{self.counter}",
                occurred_at=self.now,
                correlation_id=ORDER,
                causation_id=causation_id,
            )
        )

    def send(self, commands: tuple[Envelope, ...]) -> None:
        for command in commands:
            self.commands[MODULE_OF[command.type]].append(command)

    # The process manager

    def deliver(self, envelope: Envelope, *, crash: bool = False) -> None:
        outcome = handle(self.process, envelope, timeouts=TIMEOUTS)
        if outcome.kind == "applied":
            self.process = outcome.process
        if crash:  # the table write survived, the sends did not: redelivered next
            self.inbox[_topic_of(envelope)].appendleft(envelope)
            return
        self.delivered.append(envelope)
        self.send(outcome.commands)

    # The modules

    def run(self, command: Envelope) -> None:
        self.ran.append(command)
        if command.message_id in self.seen:
            return
        self.seen.add(command.message_id)
        module = MODULE_OF[command.type]
        try:
            events = self.decide(module, command.data)
        except Rejected as rejected:
            events = [
                CommandRejected(
                    command_type=command.type,
                    command_message_id=command.message_id,
                    reason=rejected.reason,
                    order_id=ORDER,
                )
            ]
        for event in events:
            self.publish(EVENTS_TOPIC[module], event, causation_id=command.message_id)

    def decide(self, module: str, command: Message) -> list[Message]:
        if module == "order":
            order_events = order.decide(cast(OrderCommand, command), self.order)
            for order_event in order_events:
                self.order = order.evolve(self.order, order_event)
            return list(order_events)
        if module == "payment":
            context = payment.Context(now=self.now, settlement_delay=SETTLEMENT_DELAY)
            payment_events = payment.decide(
                cast(PaymentCommand, command), self.payment, context=context
            )
            for payment_event in payment_events:
                self.payment = payment.evolve(self.payment, payment_event)
            self.payment_events.extend(payment_events)
            return list(payment_events)
        return self.ship(command)

    def ship(self, command: Message) -> list[Message]:
        if isinstance(command, CancelShipment):
            answer = answer_cancel(self.shipment, command)
            if self.shipment is None:
                self.shipment = Cancelled(command.reason)
            return [answer]
        assert isinstance(command, SendPackage)
        refusal = package_refusal(self.shipment, ORDER)
        if refusal is not None:
            raise Rejected(refusal)
        if not self.in_stock:
            return [
                ProductWasOutOfStock(order_id=ORDER, product_id="book", requested=2, available=0)
            ]
        self.packages_sent += 1
        self.shipment = Shipped(f"pkg-{self.packages_sent}")
        return [
            PackageWasSent(
                package_id=f"pkg-{self.packages_sent}", order_id=ORDER, product_items=ITEMS
            )
        ]

    # Timers and operators

    def settle(self) -> None:
        if isinstance(self.payment, payment.FinalizedPayment):
            settle = SettlePayment(payment_id=self.payment.payment_id, order_id=ORDER)
            self.counter += 1
            self.send((_envelope(settle, f"settle-{self.counter}", self.now),))

    def time_out(self) -> None:
        if self.process is not None and self.process.deadline is not None:
            self.publish(
                "operators",
                ProcessTimedOut(order_id=ORDER, deadline=self.process.deadline),
                causation_id=None,
            )

    def cancel(self) -> None:
        self.publish(
            "operators",
            CancelProcess(order_id=ORDER, reason="test", requested_by="ops"),
            causation_id=None,
        )

    # Steps

    def step(self, action: str, pick: int) -> None:
        inputs = [q for q in self.inbox.values() if q]
        modules = [q for q in self.commands.values() if q]
        match action:
            case "deliver" | "crash" if inputs:
                self.deliver(inputs[pick % len(inputs)].popleft(), crash=action == "crash")
            case "run" if modules:
                self.run(modules[pick % len(modules)].popleft())
            case "redeliver" if self.delivered:
                self.deliver(self.delivered[pick % len(self.delivered)])
            case "rerun" if self.ran:  # only what was consumed: a topic keeps its order
                self.run(self.ran[pick % len(self.ran)])
            case "settle":
                self.settle()
            case "cancel":
                self.cancel()
            case "time_out":  # mostly as the timer does, at the deadline; sometimes early
                if pick % 3 and self.process is not None and self.process.deadline is not None:
                    self.now = max(self.now, self.process.deadline)
                self.time_out()
            case "wait":
                self.now += timedelta(seconds=pick % 400)

    def drain(self) -> None:
        for _ in range(100):
            while any(self.inbox.values()) or any(self.commands.values()):
                for queue in self.commands.values():
                    while queue:
                        self.run(queue.popleft())
                for queue in self.inbox.values():
                    if queue:
                        self.deliver(queue.popleft())
            if self.process is not None and not is_terminal(self.process.state):
                assert self.process.deadline is not None
                self.now = max(self.now, self.process.deadline)
                self.time_out()
            elif payment.is_due_for_settlement(self.payment, self.now + SETTLEMENT_DELAY):
                self.now += SETTLEMENT_DELAY
                self.settle()
            else:
                return
        raise AssertionError(f"the world never settled down: {self.process}")


def _envelope(message: Message, message_id: str, at: datetime) -> Envelope:
    return Envelope.wrap(
        message, message_id=message_id, occurred_at=at, correlation_id=ORDER, causation_id=None
    )


def _topic_of(envelope: Envelope) -> str:
    return envelope.message_id.rsplit("-", 1)[0]


ACTIONS = st.sampled_from(
    ["deliver"] * 6
    + ["run"] * 6
    + ["crash", "redeliver", "rerun", "settle", "cancel", "time_out", "time_out", "wait"]
)
STEPS = st.lists(
    st.tuples(ACTIONS, st.integers(min_value=0, max_value=10_000)), min_size=10, max_size=80
)
METHODS = st.sampled_from(
    ["card_ok", "card_declined", "card_no_response", "card_settles_immediately"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=METHODS, in_stock=st.booleans(), steps=STEPS)
def test_every_process_ends_and_money_is_never_kept_for_a_cancelled_order(
    method: PaymentMethod, in_stock: bool, steps: list[tuple[str, int]]
) -> None:
    world = World(method, in_stock)
    for action, pick in steps:
        world.step(action, pick)

    world.drain()

    process = world.process
    assert process is not None and is_terminal(process.state)
    assert process.state != State.Escalated, "a package met a cancelled process"
    hypothesis.event(
        f"{method} ended {process.state} via {[e.to_state.value for e in process.history][-3:]}"
    )
    payments = Counter(event.type for event in world.payment_events)
    assert payments["PaymentRequested"] <= 1, "one payment request per order"
    assert world.packages_sent <= 1, "one package per order"
    assert payments["PaymentDiscarded"] + payments["PaymentRefunded"] <= 1
    if payments["PaymentRefunded"]:
        types = [event.type for event in world.payment_events]
        assert "PaymentSettled" in types[: types.index("PaymentRefunded")], "refunded unsettled"
    if process.state == State.Completed:
        assert isinstance(world.order, order.CompletedOrder)
        assert payments["PaymentFinalized"] == 1, "a completed order was paid once"
        assert world.packages_sent == 1, "a completed order was shipped once"
        assert payments["PaymentDiscarded"] == payments["PaymentRefunded"] == 0
        assert process.cancellation_reason is None, "a completed order was not cancelled"
    else:
        assert world.packages_sent == 0, "goods shipped for a cancelled order"
        assert isinstance(world.order, order.CancelledOrder | order.NoOrder)
        compensated = payments["PaymentDiscarded"] + payments["PaymentRefunded"]
        if payments["PaymentRequested"] and not payments["PaymentFailed"]:
            assert compensated == 1, "a requested payment was discarded or refunded once"
        assert isinstance(
            world.payment,
            payment.NoPayment
            | payment.FailedPayment
            | payment.DiscardedPayment
            | payment.RefundedPayment,
        ), "no money is held for a cancelled order"
