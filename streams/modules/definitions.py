"""The event-sourced modules (carts, orders, payments) as seen by the command processor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aggregates import cart, order, payment
from aggregates.messages import Envelope, Message, SettlePayment
from streams.kafka.topics import ACCEPTED_TYPES, commands_of, events_of


@dataclass(frozen=True)
class AggregateModule:
    """What the processor needs to know about one event-sourced module."""

    name: str
    command_types: frozenset[str]
    event_types: frozenset[str]
    initial_state: Any
    decide: Callable[[Envelope, Any], list[Message]]
    evolve: Callable[[Any, Any], Any]
    # A command a module owes itself once time has passed (the payment settlement timer):
    # when it falls due for a state, and what it is.
    due_at: Callable[[Any], datetime | None] = lambda state: None
    due_command: Callable[[Any], Message | None] = lambda state: None

    @property
    def commands_topic(self) -> str:
        return commands_of(self.name)

    @property
    def events_topic(self) -> str:
        return events_of(self.name)


def _settlement_due_at(state: Any) -> datetime | None:
    return state.settle_after if isinstance(state, payment.FinalizedPayment) else None


def _settlement(state: Any) -> Message | None:
    if isinstance(state, payment.FinalizedPayment):
        return SettlePayment(payment_id=state.payment_id, order_id=state.order_id)
    return None


def modules(settlement_delay: timedelta) -> list[AggregateModule]:
    def decide_payment(command: Envelope, state: Any) -> list[Message]:
        # The command's own time, never the clock: a retried command decides the same way.
        context = payment.Context(now=command.occurred_at, settlement_delay=settlement_delay)
        return list(payment.decide(command.data, state, context=context))  # type: ignore[arg-type]

    return [
        AggregateModule(
            name="carts",
            command_types=ACCEPTED_TYPES[commands_of("carts")],
            event_types=ACCEPTED_TYPES[events_of("carts")],
            initial_state=cart.initial_state,
            decide=lambda command, state: list(cart.decide(command.data, state)),  # type: ignore[arg-type]
            evolve=cart.evolve,
        ),
        AggregateModule(
            name="orders",
            command_types=ACCEPTED_TYPES[commands_of("orders")],
            event_types=ACCEPTED_TYPES[events_of("orders")],
            initial_state=order.initial_state,
            decide=lambda command, state: list(order.decide(command.data, state)),  # type: ignore[arg-type]
            evolve=order.evolve,
        ),
        AggregateModule(
            name="payments",
            command_types=ACCEPTED_TYPES[commands_of("payments")],
            event_types=ACCEPTED_TYPES[events_of("payments")],
            initial_state=payment.initial_state,
            decide=decide_payment,
            evolve=payment.evolve,
            due_at=_settlement_due_at,
            due_command=_settlement,
        ),
    ]
