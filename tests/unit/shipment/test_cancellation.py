"""The shipment rule: an order is shipped or its shipment cancelled, never both."""

from aggregates.messages import CancelShipment, ShipmentCancellationRejected, ShipmentCancelled
from streams.modules.shipment.cancellation import Cancelled, Shipped, answer_cancel, package_refusal

CANCEL = CancelShipment(order_id="o-1", reason="TimedOut")


def test_a_cancel_before_any_package_cancels_the_shipment() -> None:
    # Given nothing known of the order, when its shipment is cancelled, then it is cancelled
    assert answer_cancel(None, CANCEL) == ShipmentCancelled(order_id="o-1", reason="TimedOut")


def test_a_cancel_after_the_package_was_sent_is_rejected_with_the_package() -> None:
    # Given a sent package, when the shipment is cancelled, then it is rejected naming it
    assert answer_cancel(Shipped("pkg-1"), CANCEL) == ShipmentCancellationRejected(
        order_id="o-1", package_id="pkg-1", reason="package pkg-1 was already sent"
    )


def test_a_cancel_of_a_cancelled_shipment_answers_the_same_with_the_first_reason() -> None:
    # Given a shipment cancelled by hand, when a cancel for a timeout follows
    answer = answer_cancel(Cancelled("ManualCancellation"), CANCEL)

    # Then the answer is the same cancellation, with the reason first recorded
    assert answer == ShipmentCancelled(order_id="o-1", reason="ManualCancellation")


def test_a_package_for_an_order_nothing_is_known_of_may_be_sent() -> None:
    assert package_refusal(None, "o-1") is None


def test_a_package_for_a_cancelled_shipment_is_refused() -> None:
    refusal = package_refusal(Cancelled("TimedOut"), "o-1")

    assert refusal == "the shipment of order o-1 was cancelled (TimedOut)"


def test_a_second_package_for_an_order_is_refused() -> None:
    assert package_refusal(Shipped("pkg-1"), "o-1") == "order o-1 already has package pkg-1"
