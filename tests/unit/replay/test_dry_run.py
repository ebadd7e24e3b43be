"""The dry run's comparison: a candidate table that changes one row, against logged orders."""

from __future__ import annotations

import pytest

from process_manager import TRANSITIONS
from streams.tools.dry_run import BadCandidate, compare_order, load_candidate
from tests.candidates import DECLINED_DISCARDS
from tests.unit.process_manager.scenario import TIMEOUTS
from tests.unit.replay.log import logged

HAPPY = (
    "CartFinalized",
    "OrderInitialized",
    "PaymentFinalized",
    "OrderPaymentRecorded",
    "PackageWasSent",
    "OrderCompleted",
)
DECLINED = ("CartFinalized", "OrderInitialized", "PaymentFailed", "OrderCancelled")


def test_todays_table_as_candidate_differs_in_nothing() -> None:
    inputs = logged(*DECLINED)
    assert compare_order("cart-42", inputs, TIMEOUTS, dict(TRANSITIONS)) is None


def test_an_order_that_never_meets_the_changed_row_does_not_differ() -> None:
    assert compare_order("cart-42", logged(*HAPPY), TIMEOUTS, DECLINED_DISCARDS) is None


def test_an_order_that_meets_the_changed_row_differs_from_that_message_on() -> None:
    # Given a declined order, logged under today's table
    inputs = logged(*DECLINED)

    # When the candidate folds it
    divergence = compare_order("cart-42", inputs, TIMEOUTS, DECLINED_DISCARDS)

    # Then its end, its moves and its commands differ, from the PaymentFailed on
    assert divergence is not None
    assert divergence.kinds == ("final_state", "transitions", "commands")
    assert (divergence.today_state, divergence.candidate_state) == (
        "Cancelled",
        "DiscardingPayment",
    )
    assert divergence.at is inputs[2]
    assert divergence.today.startswith("AwaitingPayment -> CancellingOrder, sends CancelOrder")
    assert divergence.candidate.startswith(
        "AwaitingPayment -> CancellingOrderWithPayment, sends CancelOrder"
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("tests.candidates", "expected MODULE:ATTR"),
        ("tests.nowhere:TABLE", "cannot import tests.nowhere"),
        ("tests.candidates:MISSING", "has no attribute 'MISSING'"),
        ("tests.candidates:NOT_A_TABLE", "not a dict"),
        ("tests.candidates:UNKNOWN_COMMAND", "unknown commands ['ThankTheClient']"),
    ],
)
def test_a_bad_candidate_is_refused_with_its_reason(spec: str, says: str) -> None:
    with pytest.raises(BadCandidate, match=None) as refused:
        load_candidate(spec)
    assert says in refused.value.message
    assert refused.value.exit_code == 2


def test_a_candidate_file_is_loaded_by_path() -> None:
    table = load_candidate("tests/candidates.py:DECLINED_DISCARDS")
    assert table == DECLINED_DISCARDS
