"""An order's log as the replay tools read it: envelopes on topics, at record timestamps."""

from __future__ import annotations

from datetime import timedelta

from process_manager import Process, handle
from streams.kafka.topics import PROCESS_INPUTS
from streams.tools.history import Input
from tests.unit.process_manager.scenario import ORDER, T0, TIMEOUTS, envelope

TOPIC_OF = {
    "CartFinalized": "carts.events",
    "OrderInitialized": "orders.events",
    "OrderPaymentRecorded": "orders.events",
    "OrderCompleted": "orders.events",
    "OrderCancelled": "orders.events",
    "PaymentFinalized": "payments.events",
    "PaymentFailed": "payments.events",
    "PaymentSettled": "payments.events",
    "PaymentDiscarded": "payments.events",
    "PaymentDiscardRejected": "payments.events",
    "PaymentRefunded": "payments.events",
    "PackageWasSent": "shipments.events",
    "ProductWasOutOfStock": "shipments.events",
    "CancelProcess": "processes.commands",
    "ProcessTimedOut": "processes.commands",
}


def logged(*triggers: str, order_id: str = ORDER) -> list[Input]:
    """The inputs of ``triggers`` as a worker applies them in turn, one second apart.

    Each message names the process it meets (its payment, its deadline), and a reply to a
    command this process sent carries that command's id as its causation id.
    """
    process: Process | None = None
    inputs: list[Input] = []
    offsets: dict[str, int] = {}
    for n, trigger in enumerate(triggers):
        at = T0 + timedelta(seconds=n)
        cause = envelope(process, trigger, message_id=f"{order_id}-{n}", at=at)
        if process is not None and process.owed:
            cause = cause.model_copy(update={"causation_id": process.owed[0].message_id})
        outcome = handle(process, cause, timeouts=TIMEOUTS)
        process = outcome.process
        topic = TOPIC_OF[trigger]
        offset = offsets[topic] = offsets.get(topic, -1) + 1
        stamp = int(cause.occurred_at.timestamp() * 1000)
        inputs.append(Input(stamp, PROCESS_INPUTS.index(topic), offset, order_id, cause))
    return inputs
