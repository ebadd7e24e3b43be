"""The transition table of an order's process: ``(state, trigger) -> (next state, commands)``.

A trigger is the wire type of the incoming message, except a ``CommandRejected``, whose
trigger names the refused command: ``CommandRejected(CancelOrder)``. ``None`` as the state is
the start, before any process exists. The commands are the wire types to send; their data
comes from the process record (see ``commands.py``). A pair with no row changes nothing.

The participant that acts decides. Compensation always asks for a discard first and refunds
only when the payment module answers ``PaymentDiscardRejected``: the module, not the process,
knows whether the payment settled by the time the discard reaches it. Likewise a process that
would cancel while its ``SendPackage`` may still be in flight or queued (a timeout or an
operator in ``AwaitingShipment``) never cancels the order itself: it asks the shipment module
(``CancelShipment``, in ``CancellingShipment``). ``ShipmentCancelled`` (no package, and none
will ever be sent) cancels the order and compensates the payment; ``PackageWasSent`` or
``ShipmentCancellationRejected`` (the package went out) completes the order, with no
cancellation reason. A timeout there sends ``CancelShipment`` again: a timeout alone never
decides whether goods shipped. Once the package is sent (``Completing``), the order can no
longer be cancelled: there is no command to take a package back.

A ``PackageWasSent`` that meets a process already cancelling its order or ``Cancelled`` is
never ignored: it moves the process to ``Escalated``, a terminal state left to an operator,
with the cause in ``Process.escalation`` and the cancellation reason kept. The protocol above
makes it unreachable (the shipment module refuses a ``SendPackage`` once it cancelled the
shipment); the rows make the rule explicit. A ``CancelShipment`` the module refuses (it
could not process it; see the shipment handler's poison commands) escalates too: nobody knows
whether the goods went out. A refused ``SendPackage`` is asked about like a timeout: the
module answers the ``CancelShipment`` (it recorded the order as not shipped, or it has a
package after all).
"""

# The table is aligned in columns so that it reads as a table; its lines may run long.
# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from aggregates.messages import CommandRejected, Message
from process_manager.states import State as S


class Transition(NamedTuple):
    """One row's outcome: the state to enter and the commands to send, in order."""

    next: S
    commands: tuple[str, ...]


Table = Mapping[tuple[S | None, str], Transition]
"""A transition table: ``TRANSITIONS``, or a candidate of the same shape (``orderflow dry-run``)."""


def _to(next_state: S, *commands: str) -> Transition:
    return Transition(next_state, commands)


# fmt: off
TRANSITIONS: Final[dict[tuple[S | None, str], Transition]] = {
    # Happy path
    (None, "CartFinalized"):                                        _to(S.AwaitingOrder, "InitOrder"),
    (S.AwaitingOrder, "OrderInitialized"):                          _to(S.AwaitingPayment, "RequestPayment"),
    (S.AwaitingPayment, "PaymentFinalized"):                        _to(S.RecordingPayment, "RecordOrderPayment"),
    (S.RecordingPayment, "OrderPaymentRecorded"):                   _to(S.AwaitingShipment, "SendPackage"),
    (S.AwaitingShipment, "PackageWasSent"):                         _to(S.Completing, "CompleteOrder"),
    (S.Completing, "OrderCompleted"):                               _to(S.Completed),
    # Failures, timeouts and operators: cancel the order first, then compensate the payment
    (S.AwaitingOrder, "ProcessTimedOut"):                           _to(S.CancellingOrder, "CancelOrder"),
    (S.AwaitingOrder, "CancelProcess"):                             _to(S.CancellingOrder, "CancelOrder"),
    (S.AwaitingPayment, "PaymentFailed"):                           _to(S.CancellingOrder, "CancelOrder"),
    (S.AwaitingPayment, "ProcessTimedOut"):                         _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.AwaitingPayment, "CancelProcess"):                           _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.RecordingPayment, "ProcessTimedOut"):                        _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.RecordingPayment, "CancelProcess"):                          _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.AwaitingShipment, "ProductWasOutOfStock"):                   _to(S.CancellingOrderWithPayment, "CancelOrder"),
    # A package may be on its way: the shipment module decides whether it went out
    (S.AwaitingShipment, "ProcessTimedOut"):                        _to(S.CancellingShipment, "CancelShipment"),
    (S.AwaitingShipment, "CancelProcess"):                          _to(S.CancellingShipment, "CancelShipment"),
    (S.AwaitingShipment, "CommandRejected(SendPackage)"):           _to(S.CancellingShipment, "CancelShipment"),
    (S.CancellingShipment, "ShipmentCancelled"):                    _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.CancellingShipment, "ProductWasOutOfStock"):                 _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.CancellingShipment, "PackageWasSent"):                       _to(S.Completing, "CompleteOrder"),
    (S.CancellingShipment, "ShipmentCancellationRejected"):         _to(S.Completing, "CompleteOrder"),
    # Compensation
    (S.CancellingOrder, "OrderCancelled"):                          _to(S.Cancelled),
    (S.CancellingOrder, "CommandRejected(CancelOrder)"):            _to(S.Cancelled),
    (S.CancellingOrderWithPayment, "OrderCancelled"):               _to(S.DiscardingPayment, "DiscardPayment"),
    (S.CancellingOrderWithPayment, "CommandRejected(CancelOrder)"): _to(S.DiscardingPayment, "DiscardPayment"),
    (S.CancellingOrderWithPayment, "PaymentFailed"):                _to(S.CancellingOrder),
    (S.DiscardingPayment, "PaymentDiscarded"):                      _to(S.Cancelled),
    (S.DiscardingPayment, "PaymentDiscardRejected"):                _to(S.RefundingPayment, "RefundPayment"),
    (S.DiscardingPayment, "CommandRejected(DiscardPayment)"):       _to(S.Cancelled),
    (S.DiscardingPayment, "PaymentFailed"):                         _to(S.Cancelled),
    (S.RefundingPayment, "PaymentRefunded"):                        _to(S.Cancelled),
    (S.RefundingPayment, "CommandRejected(RefundPayment)"):         _to(S.Cancelled),
    # Late success after cancellation: money is never kept
    (S.Cancelled, "PaymentFinalized"):                              _to(S.DiscardingPayment, "DiscardPayment"),
    (S.Cancelled, "PaymentSettled"):                                _to(S.RefundingPayment, "RefundPayment"),
    # A package sent to a process that is cancelling or cancelled: never ignored, an operator decides
    (S.CancellingOrder, "PackageWasSent"):                          _to(S.Escalated),
    (S.CancellingOrderWithPayment, "PackageWasSent"):               _to(S.Escalated),
    (S.DiscardingPayment, "PackageWasSent"):                        _to(S.Escalated),
    (S.RefundingPayment, "PackageWasSent"):                         _to(S.Escalated),
    (S.Cancelled, "PackageWasSent"):                                _to(S.Escalated),
    # The shipment module could not decide a cancellation: whether goods went out is unknown
    (S.CancellingShipment, "CommandRejected(CancelShipment)"):      _to(S.Escalated),
    # Timeouts past the point of no return, or while compensating: send the command again
    (S.Completing, "ProcessTimedOut"):                              _to(S.Completing, "CompleteOrder"),
    (S.CancellingShipment, "ProcessTimedOut"):                      _to(S.CancellingShipment, "CancelShipment"),
    (S.CancellingOrder, "ProcessTimedOut"):                         _to(S.CancellingOrder, "CancelOrder"),
    (S.CancellingOrderWithPayment, "ProcessTimedOut"):              _to(S.CancellingOrderWithPayment, "CancelOrder"),
    (S.DiscardingPayment, "ProcessTimedOut"):                       _to(S.DiscardingPayment, "DiscardPayment"),
    (S.RefundingPayment, "ProcessTimedOut"):                        _to(S.RefundingPayment, "RefundPayment"),
}
# fmt: on

NOTED: Final = frozenset({"PaymentSettled"})
"""Triggers that, with no row in the current state, still update the record (a fact, no move)."""


OPERATOR_ACTIONS: Final = frozenset({"ResumeProcess", "SkipMessage"})
"""An operator's answers to a quarantined process, taken in around the table
(``process_manager.quarantine``)."""

REACTS_TO: Final = (
    frozenset(trigger.partition("(")[0] for _, trigger in TRANSITIONS) | NOTED | OPERATOR_ACTIONS
)
"""The message types the process can react to; any other type never changes a process."""


def trigger_of(message: Message) -> str:
    """The trigger ``message`` stands for in ``TRANSITIONS``."""
    if isinstance(message, CommandRejected):
        return f"CommandRejected({message.command_type})"
    return message.type
